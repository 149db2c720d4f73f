// DNS rebinding and cross-site requests. A web page in a local browser can
// make its own name resolve to 127.0.0.1 and then talk to a tokenless loopback
// admin API as "same origin": the only trace is the Host header, which carries
// the page's name. So a request whose Host is not a name or address this API
// serves is refused (421 Misdirected Request), unless the operator allowed the
// name (--admin-allowed-host). IP literals are not a rebinding vector (a page
// at http://IP/ is the server at that IP), so they pass when the API listens
// on every address; on one address, only that address (and "localhost" for
// loopback) passes. The port is not compared: a port-forward (kubectl,
// ssh -L) legitimately changes it, and a rebinding page cannot change its name.
// A browser's Origin header, when sent, must pass the same check (403): a
// cross-site POST needs no preflight, and the API grants no CORS at all.
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { isLoopbackHost } from './auth.js';
import { errorReply, type Reply } from './httpIo.js';

const WILDCARDS = new Set(['0.0.0.0', '::', '']);

/** "Example.COM.:8080" → "example.com"; "[::1]:80" → "::1"; undefined when unparsable. */
export function hostName(header: string): string | undefined {
  const text = header.trim().toLowerCase();
  let name: string;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end < 0) return undefined;
    name = text.slice(1, end);
    const rest = text.slice(end + 1);
    if (rest !== '' && !/^:\d{1,5}$/.test(rest)) return undefined;
  } else {
    const match = /^([^:]*)(?::\d{1,5})?$/.exec(text);
    if (!match) return isIP(text) === 6 ? text : undefined; // a bare IPv6 literal, as some clients send
    name = match[1]!;
  }
  if (name.endsWith('.')) name = name.slice(0, -1);
  return name === '' ? undefined : name;
}

export interface HostCheck {
  /** Undefined when the request may proceed; otherwise the reply that refuses it. */
  refuse(host: string | undefined, origin: string | undefined): Reply | undefined;
}

/**
 * `listenHost`: the address the API listens on; `allowed`: extra names
 * (--admin-allowed-host), "*" allowing any Host.
 */
export function createHostCheck(listenHost: string, allowed: readonly string[] = []): HostCheck {
  const bare = listenHost.replace(/^\[|\]$/g, '').toLowerCase();
  const wildcard = WILDCARDS.has(bare);
  const any = allowed.includes('*');
  const names = new Set(allowed.map((name) => hostName(name) ?? name.toLowerCase()));
  if (wildcard) names.add(hostname().toLowerCase());
  if (wildcard || isLoopbackHost(bare)) names.add('localhost');
  const served = wildcard ? 'every address' : bare;

  const allows = (name: string): boolean => {
    if (any || names.has(name)) return true;
    if (isIP(name) !== 0) return wildcard || name === bare || (isLoopbackHost(bare) && isLoopbackHost(name));
    return false;
  };
  const hint = (name: string) =>
    `if you reach the admin API by that name (a proxy, a port-forward, a DNS name), start serve with --admin-allowed-host ${name}`;

  return {
    refuse(host, origin) {
      if (any) return undefined;
      // HTTP/1.0 clients may omit Host; browsers never do.
      if (host !== undefined) {
        const name = hostName(host);
        if (name === undefined || !allows(name)) {
          return errorReply(
            421,
            `Host "${host.slice(0, 200)}" is not an address this admin API serves (it listens on ${served}); ` +
              `requests by other names are refused against DNS rebinding; ${hint(name ?? 'NAME')}`,
            'Host',
          );
        }
      }
      if (origin !== undefined) {
        let name: string | undefined;
        try {
          name = origin === 'null' ? undefined : hostName(new URL(origin).host);
        } catch {
          name = undefined;
        }
        if (name === undefined || !allows(name)) {
          return errorReply(
            403,
            `requests from web pages of other origins are refused (Origin "${origin.slice(0, 200)}"); the admin API grants no CORS; ${hint(name ?? 'NAME')}`,
            'Origin',
          );
        }
      }
      return undefined;
    },
  };
}
