// --xds-tls-cert / --xds-tls-key / --xds-client-ca → PEM material, checked at
// start so a wrong file is named by its flag instead of failing at handshake.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
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
