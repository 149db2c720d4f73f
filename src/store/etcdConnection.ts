// Where the etcd store lives and how to reach it: the etcd://HOST:PORT[,...]
// location an operator writes, TLS files, user/password, and the etcd3 client
// built from them. Every unary call gets a deadline: without one a write to an
// etcd that lost quorum would hang the admin request instead of answering 503.
import { readFile } from 'node:fs/promises';
import { Etcd3, type IOptions } from 'etcd3';
import { StoreError } from './storeError.js';

export const DEFAULT_ETCD_PREFIX = '/egress-xds/';

export interface EtcdLocation {
  /** host:port of each member (or of a load balancer in front of them). */
  readonly endpoints: readonly string[];
}

export interface EtcdConnectionOptions extends EtcdLocation {
  /** Every key lives under it; ends with "/". */
  readonly prefix: string;
  readonly tls?: { readonly caFile?: string; readonly certFile?: string; readonly keyFile?: string };
  /** A file holding "user:password" (one line). */
  readonly authFile?: string;
  /** Deadline of each unary call (default 5 s). */
  readonly callTimeoutMs?: number;
}

/** "etcd://h1:2379,h2:2379" → endpoints; a reason naming what is wrong otherwise. */
export function parseEtcdUrl(text: string): { ok: true; value: EtcdLocation } | { ok: false; message: string } {
  const match = /^etcd:\/\/([^/?#]+)\/?$/.exec(text);
  if (!match) return { ok: false, message: `must be etcd://HOST:PORT[,HOST:PORT...], got "${text}"` };
  const endpoints = match[1]!.split(',');
  for (const endpoint of endpoints) {
    const hostPort = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(endpoint);
    if (!hostPort || Number(hostPort[3]) < 1 || Number(hostPort[3]) > 65535) {
      return { ok: false, message: `"${endpoint}" is not HOST:PORT (in ${text})` };
    }
  }
  return { ok: true, value: { endpoints } };
}

/** A prefix as given ("egress-xds", "/a/b/") → "/a/b/": always rooted and "/"-terminated, so prefixes never overlap by accident. */
export function normalisePrefix(prefix: string): { ok: true; value: string } | { ok: false; message: string } {
  if (!/^[A-Za-z0-9._/-]{1,200}$/.test(prefix)) return { ok: false, message: `must be 1 to 200 of letters, digits and . _ - /, got "${prefix}"` };
  const rooted = prefix.startsWith('/') ? prefix : `/${prefix}`;
  return { ok: true, value: rooted.endsWith('/') ? rooted : `${rooted}/` };
}

export const describeEtcd = (options: EtcdLocation & { prefix: string }): string => `etcd://${options.endpoints.join(',')}${options.prefix}`;

async function readOption(what: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new StoreError(`cannot read ${what} ${path}: ${(error as Error).message}`, path, { cause: error });
  }
}

/** The etcd3 client; reads the TLS and auth files (a missing file is a StoreError naming it). */
export async function connectEtcd(options: EtcdConnectionOptions): Promise<Etcd3> {
  const callTimeoutMs = options.callTimeoutMs ?? 5000;
  const secure = options.tls !== undefined && (options.tls.caFile !== undefined || options.tls.certFile !== undefined);
  const clientOptions: IOptions = {
    hosts: options.endpoints.map((e) => `${secure ? 'https' : 'http'}://${e}`),
    dialTimeout: Math.min(callTimeoutMs, 3000),
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
  };
  if (secure) {
    const tls = options.tls!;
    clientOptions.credentials = {
      rootCertificate: tls.caFile ? await readOption('--etcd-ca', tls.caFile) : (undefined as unknown as Buffer),
      ...(tls.certFile ? { certChain: await readOption('--etcd-cert', tls.certFile) } : {}),
      ...(tls.keyFile ? { privateKey: await readOption('--etcd-key', tls.keyFile) } : {}),
    };
  }
  if (options.authFile) {
    const text = (await readOption('--etcd-auth-file', options.authFile)).toString('utf8').trim();
    const colon = text.indexOf(':');
    if (colon <= 0 || text.includes('\n')) {
      throw new StoreError(`--etcd-auth-file ${options.authFile} must hold one line "user:password"`, options.authFile);
    }
    clientOptions.auth = { username: text.slice(0, colon), password: text.slice(colon + 1) };
  }
  return new Etcd3(clientOptions);
}

/** A one-line reason for an etcd call that failed, naming etcd (what the 503 says). */
export function describeEtcdError(where: string, error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return `etcd at ${where} is unavailable (${text.split('\n')[0]!.slice(0, 300)})`;
}
