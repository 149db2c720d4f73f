// Where the etcd store lives and how to reach it: the etcd://HOST:PORT[,...]
// location an operator writes, TLS files, user/password, and the etcd3 client
// built from them. Every unary call gets a deadline: without one a write to an
// etcd that lost quorum would hang the admin request instead of answering 503.
import { readFile } from 'node:fs/promises';
import { Etcd3, isRecoverableError, type IOptions } from 'etcd3';
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

/** The only part of a cockatiel policy etcd3 calls. */
interface ExecuteOnly {
  execute<T>(fn: (context: { signal: AbortSignal; attempt: number }) => PromiseLike<T> | T): Promise<T>;
}
const neverAborted = new AbortController().signal;
const PASS_THROUGH: ExecuteOnly = { execute: async (fn) => fn({ signal: neverAborted, attempt: 0 }) };

/**
 * A call that failed in a way worth retrying (unavailable, deadline) is tried
 * again, on a member chosen at random, once per member. Retrying a write is
 * safe here: every store write is a txn guarded by mod revisions, so a replay
 * of one that did commit fails its compare and is planned again as a no-op.
 */
function retryOnOtherMembers(members: number): ExecuteOnly {
  return {
    async execute(fn) {
      for (let attempt = 0; ; attempt++) {
        try {
          return await fn({ signal: neverAborted, attempt });
        } catch (error) {
          if (attempt + 1 >= Math.max(members, 1) || !(error instanceof Error) || !isRecoverableError(error)) throw error;
        }
      }
    },
  };
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
  const hosts = options.endpoints.map((e) => `${secure ? 'https' : 'http'}://${e}`);
  const clientOptions: IOptions = {
    hosts,
    dialTimeout: Math.min(callTimeoutMs, 3000),
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
    faultHandling: {
      // No per-member circuit breaker: etcd3's opens after three slow calls and
      // then refuses every call for 5 s, so one busy moment (a burst, a slow
      // fsync) would turn into 503s on an etcd that is fine. A dead member
      // refuses connections at once; the retry below moves to another.
      host: () => PASS_THROUGH as never,
      global: retryOnOtherMembers(hosts.length) as never,
    },
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
