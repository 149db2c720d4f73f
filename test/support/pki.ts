// A throwaway PKI made with openssl for TLS tests: a CA, a server certificate
// for 127.0.0.1/localhost, a client certificate, and a client certificate from
// another CA.
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Pki {
  readonly dir: string;
  readonly files: Record<'ca' | 'serverCert' | 'serverKey' | 'clientCert' | 'clientKey' | 'rogueCert' | 'rogueKey', string>;
  read(file: keyof Pki['files']): Promise<Buffer>;
  /** A client certificate signed by the CA with these SANs (and CN, default the name), as bootstrap's docs issue them. */
  issueClient(name: string, options: { uri?: string[]; dns?: string[]; cn?: string }): Promise<{ cert: string; key: string }>;
  remove(): Promise<void>;
}

const openssl = (cwd: string, ...args: string[]) => execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });

function ca(dir: string, name: string): void {
  openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.pem`);
}

async function leaf(dir: string, name: string, signer: string, extensions: string, cn = name): Promise<void> {
  await writeFile(join(dir, `${name}.ext`), extensions);
  openssl(dir, 'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
  openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${signer}.pem`, '-CAkey', `${signer}.key`, '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`);
}

export async function makePki(): Promise<Pki> {
  const dir = await mkdtemp(join(tmpdir(), 'egress-xds-pki-'));
  ca(dir, 'ca');
  ca(dir, 'rogue-ca');
  await leaf(dir, 'server', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await leaf(dir, 'client', 'ca', 'extendedKeyUsage=clientAuth\n');
  await leaf(dir, 'rogue', 'rogue-ca', 'extendedKeyUsage=clientAuth\n');
  const files = {
    ca: join(dir, 'ca.pem'),
    serverCert: join(dir, 'server.pem'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.pem'),
    clientKey: join(dir, 'client.key'),
    rogueCert: join(dir, 'rogue.pem'),
    rogueKey: join(dir, 'rogue.key'),
  };
  const issueClient: Pki['issueClient'] = async (name, options) => {
    const sans = [...(options.uri ?? []).map((u) => `URI:${u}`), ...(options.dns ?? []).map((d) => `DNS:${d}`)];
    await leaf(dir, name, 'ca', `${sans.length ? `subjectAltName=${sans.join(',')}\n` : ''}extendedKeyUsage=clientAuth\n`, options.cn ?? name);
    return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  };
  return { dir, files, read: (file) => readFile(files[file]), issueClient, remove: () => rm(dir, { recursive: true, force: true }) };
}
