// serve's flags for seed 000's explicit forward proxy and the DNS cache it shares with
// the transparent listener's name upstream:
//   --forward-proxy [--forward-proxy-ports 10000,10001] [--forward-proxy-address ADDR]
//   --transparent=false          only the forward proxy's listeners
//   --dns-resolver ADDR ...      repeatable: IP, IP:PORT or [IPv6]:PORT (default: the host's resolv.conf)
//   --dns-lookup-family FAMILY   V4_ONLY (seed 000's, the default), V6_ONLY, AUTO, V4_PREFERRED, ALL
// A bad value is a usage error naming the flag; nothing starts.
import { isIP } from 'node:net';
import { FORWARD_ADDRESS, FORWARD_HTTP_PORT, FORWARD_TLS_PORT, type CompileOptions } from '../compile/index.js';
import { DEFAULT_DNS_LOOKUP_FAMILY, type DnsLookupFamily } from '../compile/nameUpstream.js';
import { UsageError } from './flags.js';

export const FORWARD_FLAGS = {
  'forward-proxy': { type: 'boolean', default: false },
  'forward-proxy-ports': { type: 'string' },
  'forward-proxy-address': { type: 'string' },
  'forward-proxy-inspect-connect': { type: 'boolean', default: false },
  transparent: { type: 'string' },
  'dns-resolver': { type: 'string', multiple: true },
  'dns-lookup-family': { type: 'string' },
} as const;

const FAMILIES: readonly DnsLookupFamily[] = ['V4_ONLY', 'V6_ONLY', 'AUTO', 'V4_PREFERRED', 'ALL'];

export const FORWARD_USAGE = `  --forward-proxy      also give every node seed 000's explicit forward proxy on the same
                       allowlists: HTTP CONNECT / absolute-form HTTP (http_proxy, https_proxy)
                       and TLS by SNI (for nft DNAT of port 443)
  --forward-proxy-ports HTTP,TLS
                       its two ports (default ${FORWARD_HTTP_PORT},${FORWARD_TLS_PORT})
  --forward-proxy-address ADDR
                       the address both listen on (default ${FORWARD_ADDRESS})
  --forward-proxy-inspect-connect
                       check the TLS inside an allowed CONNECT to 443: its SNI must be a name the
                       client's allowlist allows, else closed (domain fronting); needs Envoy >= 1.25
                       and a bootstrap from \`egress-xds bootstrap --forward-proxy-inspect-connect\`
  --transparent=false  no transparent (TPROXY) listener: only the forward proxy's (needs --forward-proxy)
  --dns-resolver ADDR  a resolver for names Envoy dials (IP, IP:PORT, [IPv6]:PORT); repeatable;
                       default: the host's resolv.conf. Seed 000: --dns-resolver 127.0.0.11
  --dns-lookup-family  ${FAMILIES.join(', ')} (default ${DEFAULT_DNS_LOOKUP_FAMILY}, seed 000's)`;

export interface ForwardFlagValues {
  'forward-proxy'?: boolean;
  'forward-proxy-ports'?: string;
  'forward-proxy-address'?: string;
  'forward-proxy-inspect-connect'?: boolean;
  transparent?: string;
  'dns-resolver'?: string[];
  'dns-lookup-family'?: string;
}

function port(text: string, flag: string): number {
  const value = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(value >= 1 && value <= 65535)) throw new UsageError(`${flag} must be two ports from 1 to 65535 ("HTTP,TLS"), got "${text}"`);
  return value;
}

/** "IP", "IP:PORT", "[IPv6]:PORT" or a bare IPv6 address; the form nameUpstream.ts reads. */
export function checkResolver(text: string): string | undefined {
  const bracketed = /^\[(.+)\]:(\d{1,5})$/.exec(text);
  const v4Port = /^(\d+\.\d+\.\d+\.\d+):(\d{1,5})$/.exec(text);
  const [ip, portText] = bracketed ? [bracketed[1]!, bracketed[2]!] : v4Port ? [v4Port[1]!, v4Port[2]!] : [text, '53'];
  const family = isIP(ip);
  if (family === 0 || (bracketed && family !== 6)) return 'must be an IP address, IP:PORT or [IPv6]:PORT (a resolver, not a name)';
  const p = Number(portText);
  if (!(p >= 1 && p <= 65535)) return `port ${portText} must be from 1 to 65535`;
  return undefined;
}

export function parseForwardFlags(values: ForwardFlagValues, listenerPort?: number): Pick<CompileOptions, 'forwardProxy' | 'transparent' | 'dnsCache'> {
  const enabled = values['forward-proxy'] === true;
  for (const flag of ['forward-proxy-ports', 'forward-proxy-address'] as const) {
    if (values[flag] !== undefined && !enabled) throw new UsageError(`--${flag} needs --forward-proxy`);
  }
  const inspectConnect = values['forward-proxy-inspect-connect'] === true;
  if (inspectConnect && !enabled) throw new UsageError('--forward-proxy-inspect-connect needs --forward-proxy');
  const transparentText = values.transparent ?? 'true';
  if (transparentText !== 'true' && transparentText !== 'false') throw new UsageError(`--transparent must be true or false, got "${transparentText}"`);
  const transparent = transparentText === 'true';
  if (!transparent && !enabled) throw new UsageError('--transparent=false leaves no listener: add --forward-proxy');

  const resolvers = values['dns-resolver'] ?? [];
  for (const resolver of resolvers) {
    const problem = checkResolver(resolver);
    if (problem) throw new UsageError(`--dns-resolver ${problem}, got "${resolver}"`);
  }
  const family = values['dns-lookup-family'] ?? DEFAULT_DNS_LOOKUP_FAMILY;
  if (!(FAMILIES as readonly string[]).includes(family)) throw new UsageError(`--dns-lookup-family must be one of ${FAMILIES.join(', ')}, got "${family}"`);
  const dnsCache = { ...(resolvers.length > 0 && { resolvers }), lookupFamily: family as DnsLookupFamily };

  if (!enabled) return { dnsCache };
  const portsText = values['forward-proxy-ports'] ?? `${FORWARD_HTTP_PORT},${FORWARD_TLS_PORT}`;
  const parts = portsText.split(',');
  if (parts.length !== 2) throw new UsageError(`--forward-proxy-ports must be two ports "HTTP,TLS", got "${portsText}"`);
  const [httpPort, tlsPort] = parts.map((p) => port(p, '--forward-proxy-ports')) as [number, number];
  if (httpPort === tlsPort) throw new UsageError(`--forward-proxy-ports must be two different ports, got "${portsText}"`);
  if (transparent && listenerPort !== undefined && (httpPort === listenerPort || tlsPort === listenerPort)) {
    throw new UsageError(`--forward-proxy-ports ${portsText} collides with the transparent listener's --listener-port ${listenerPort}`);
  }
  const address = values['forward-proxy-address'] ?? FORWARD_ADDRESS;
  if (isIP(address) === 0) throw new UsageError(`--forward-proxy-address must be an IP address to listen on, got "${address}"`);
  return { forwardProxy: { address, httpPort, tlsPort, ...(inspectConnect && { inspectConnect }) }, transparent, dnsCache };
}
