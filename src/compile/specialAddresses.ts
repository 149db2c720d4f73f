// Never to special addresses by name. Envoy's DNS cache (in the protos this project
// builds against) has no deny list for resolved addresses, so the dynamic forward proxy
// cluster's upstream sockets carry a firewall mark, and the host agent rejects marked
// connections to the ranges below (and to the host's own addresses). A guest that may
// reach one of these ranges must be allowed it by address (allow.cidrs): such connections
// go to the original destination through original_dst_cluster, which carries no mark.
import type { SocketOptionJson } from '../envoy/resources.js';

/** The default SO_MARK of sockets that dial a name; `serve --upstream-mark` changes it, 0 turns it off. */
export const DEFAULT_UPSTREAM_MARK = 0x20000;

/** setsockopt(SOL_SOCKET, SO_MARK) on Linux. */
export const SOL_SOCKET = 1;
export const SO_MARK = 36;

/** The destinations a name must never resolve to (plus the host's own addresses, which only the agent knows). */
export const SPECIAL_RANGES: readonly { readonly cidr: string; readonly what: string }[] = [
  { cidr: '0.0.0.0/8', what: '"this network" (0.0.0.0 reaches the host)' },
  { cidr: '127.0.0.0/8', what: 'loopback' },
  { cidr: '169.254.0.0/16', what: 'link-local, the 169.254.169.254 metadata service included' },
  { cidr: '10.0.0.0/8', what: 'RFC 1918 private' },
  { cidr: '172.16.0.0/12', what: 'RFC 1918 private' },
  { cidr: '192.168.0.0/16', what: 'RFC 1918 private' },
  { cidr: '100.64.0.0/10', what: 'CGNAT shared address space' },
  { cidr: '::1/128', what: 'IPv6 loopback' },
  { cidr: '::/128', what: 'IPv6 unspecified' },
  { cidr: 'fc00::/7', what: 'IPv6 unique-local' },
  { cidr: 'fe80::/10', what: 'IPv6 link-local' },
  { cidr: '::ffff:0:0/96', what: 'IPv4-mapped IPv6 (would reach any IPv4 address, special ones included)' },
];

/** The mark must fit SO_MARK's 32 bits. */
export function checkUpstreamMark(mark: number): string | undefined {
  return Number.isInteger(mark) && mark >= 0 && mark <= 0xffffffff ? undefined : 'must be an integer 0 to 4294967295 (0 disables the mark)';
}

/** The upstream socket option that marks a name-dialled connection before it connects (STATE_PREBIND). */
export function upstreamMarkSocketOption(mark: number): SocketOptionJson {
  return {
    description: 'egress-xds: dialled by name; the host refuses marked connections to special addresses',
    level: String(SOL_SOCKET),
    name: String(SO_MARK),
    intValue: String(mark),
    state: 'STATE_PREBIND',
  };
}
