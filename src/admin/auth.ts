// Admin API authentication: one bearer token. Off loopback it is mandatory
// (the server refuses to start without it); once configured it is required on
// every request, loopback included, except the two probes (/healthz, /readyz),
// which change nothing and tell nothing beyond one bit. Tokens are compared as
// SHA-256 digests with timingSafeEqual (constant time, and equal lengths
// whatever was sent) and never logged; the history records a short fingerprint.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { Result } from '../policy/model.js';
import type { Logger } from '../log.js';

export const TOKEN_ENV = 'EGRESS_XDS_ADMIN_TOKEN';
export const MIN_TOKEN_LENGTH = 16;

/** True for addresses only this host can reach: 127.0.0.0/8, ::1, "localhost". */
export function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (bare === 'localhost') return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  if (isIP(bare) === 6) {
    const lower = bare.toLowerCase();
    return lower === '::1' || lower === '0:0:0:0:0:0:0:1' || (lower.startsWith('::ffff:127.') && isIP(lower.slice(7)) === 4);
  }
  return false; // 0.0.0.0, ::, and any name that could resolve anywhere
}

/**
 * The rule serve applies before listening: a non-loopback admin address needs
 * a token. The error names the flag and the environment variable to set.
 */
export function requireTokenUnlessLoopback(host: string, token: string | undefined): Result<undefined> {
  if (token !== undefined || isLoopbackHost(host)) return { ok: true, value: undefined };
  return {
    ok: false,
    error: {
      field: '--admin-address',
      message: `the admin API on ${host} is reachable from other hosts and needs a token: set --admin-token-file FILE or ${TOKEN_ENV}, or listen on 127.0.0.1`,
    },
  };
}

/**
 * The token from --admin-token-file (which wins) or EGRESS_XDS_ADMIN_TOKEN;
 * undefined when neither is set. Surrounding whitespace (a trailing newline) is dropped.
 */
export async function loadAdminToken(options: {
  file?: string;
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
}): Promise<Result<string | undefined>> {
  const field = options.file !== undefined ? '--admin-token-file' : TOKEN_ENV;
  let token: string | undefined;
  if (options.file !== undefined) {
    try {
      token = (await readFile(options.file, 'utf8')).trim();
      const mode = (await stat(options.file)).mode;
      if ((mode & 0o077) !== 0) {
        options.logger?.warn('admin token file is readable by other users; chmod 600 it', { path: options.file });
      }
    } catch (error) {
      return { ok: false, error: { field, message: `cannot read ${options.file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}` } };
    }
    if (token === '') return { ok: false, error: { field, message: `${options.file} is empty` } };
  } else {
    token = (options.env ?? process.env)[TOKEN_ENV]?.trim() || undefined;
    if (token === undefined) return { ok: true, value: undefined };
  }
  if (token.length < MIN_TOKEN_LENGTH) {
    return { ok: false, error: { field, message: `the token is ${token.length} characters; use at least ${MIN_TOKEN_LENGTH} (e.g. openssl rand -hex 32)` } };
  }
  if (/\s/.test(token)) return { ok: false, error: { field, message: 'the token must not contain whitespace' } };
  return { ok: true, value: token };
}

const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/** A short, non-reversible name for a token, for the history and logs. */
export const tokenFingerprint = (token: string): string => digest(token).toString('hex').slice(0, 12);

export interface TokenCheck {
  /** True when the request may proceed: no token configured, or the header carries it. */
  allows(authorization: string | undefined): boolean;
  /** "token:FINGERPRINT" when a token is configured (for the history), else undefined. */
  readonly identity: string | undefined;
}

export function createTokenCheck(token: string | undefined): TokenCheck {
  if (token === undefined) return { allows: () => true, identity: undefined };
  const expected = digest(token);
  return {
    identity: `token:${tokenFingerprint(token)}`,
    allows(authorization) {
      const match = /^Bearer[ ]+(\S+)[ ]*$/i.exec(authorization ?? '');
      // Always compare, even with nothing sent, so timing does not say which case it was.
      const sent = digest(match?.[1] ?? '');
      return timingSafeEqual(sent, expected) && match !== null;
    },
  };
}
