// --xds-tls-cert / --xds-tls-key / --xds-client-ca → PEM material, checked at
// start so a wrong file is named by its flag instead of failing at handshake;
// --node-identity / --node-identity-prefix → where the node id must appear in
// the client certificate.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { DEFAULT_NODE_IDENTITY_PREFIX, NODE_IDENTITY_KINDS, type NodeIdentityRule } from '../xds/nodeIdentity.js';
import type { XdsTls } from '../xds/server.js';
import { UsageError } from './flags.js';

async function readPem(flag: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new UsageError(`${flag}: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
}

function checkCertificates(flag: string, path: string, pem: Buffer): void {
  try {
    new X509Certificate(pem);
  } catch {
    throw new UsageError(`${flag}: ${path} holds no PEM certificate`);
  }
}

export async function loadXdsTls(values: { cert?: string; key?: string; clientCa?: string }): Promise<XdsTls | undefined> {
  const { cert, key, clientCa } = values;
  if (cert === undefined && key === undefined) {
    if (clientCa !== undefined) throw new UsageError('--xds-client-ca needs --xds-tls-cert and --xds-tls-key (mTLS is TLS first)');
    return undefined;
  }
  if (cert === undefined || key === undefined) throw new UsageError('--xds-tls-cert and --xds-tls-key go together');
  const certChain = await readPem('--xds-tls-cert', cert);
  checkCertificates('--xds-tls-cert', cert, certChain);
  const privateKey = await readPem('--xds-tls-key', key);
  try {
    createPrivateKey(privateKey);
  } catch {
    throw new UsageError(`--xds-tls-key: ${key} holds no PEM private key`);
  }
  if (!new X509Certificate(certChain).checkPrivateKey(createPrivateKey(privateKey))) {
    throw new UsageError(`--xds-tls-key: ${key} is not the key of the certificate in ${cert}`);
  }
  if (clientCa === undefined) return { certChain, privateKey };
  const ca = await readPem('--xds-client-ca', clientCa);
  checkCertificates('--xds-client-ca', clientCa, ca);
  return { certChain, privateKey, clientCa: ca };
}

/**
 * --node-identity / --node-identity-prefix → the rule the ADS server checks.
 * Default with --xds-client-ca: uri-san with the default SPIFFE-style prefix;
 * without client certificates there is nothing to check, and asking for a
 * rule is an error rather than a silent no-op.
 */
export function parseNodeIdentity(values: { identity?: string; prefix?: string }, mtls: boolean): NodeIdentityRule {
  const kind = values.identity ?? (mtls ? 'uri-san' : 'none');
  if (!(NODE_IDENTITY_KINDS as readonly string[]).includes(kind)) {
    throw new UsageError(`--node-identity must be one of ${NODE_IDENTITY_KINDS.join(', ')}, got "${kind}"`);
  }
  if (values.prefix !== undefined && kind !== 'uri-san') throw new UsageError('--node-identity-prefix goes with --node-identity uri-san');
  if (kind !== 'none' && !mtls) throw new UsageError(`--node-identity ${kind} needs --xds-client-ca (client certificates to check the node id against)`);
  switch (kind) {
    case 'uri-san': {
      const prefix = values.prefix ?? DEFAULT_NODE_IDENTITY_PREFIX;
      // A prefix must end the authority/path part, or "spiffe://fleet/node/a" would also match node id "a" under ".../nodea".
      if (!/^[a-z][a-z0-9+.-]*:\S*[/:]$/i.test(prefix)) {
        throw new UsageError(`--node-identity-prefix must be a URI prefix ending in "/" or ":" (e.g. spiffe://fleet/node/), got "${prefix}"`);
      }
      return { kind, prefix };
    }
    case 'dns-san':
    case 'cn':
      return { kind };
    default:
      return { kind: 'none' };
  }
}
