// The destinations Envoy must never reach by a name it resolved (issue 7 point 3):
// the agent rejects connections from Envoy's marked upstream sockets (serve
// --upstream-mark) to these, and to the host's own addresses. The same list as
// src/compile/specialAddresses.ts (a test keeps them equal); kept here because
// the agent never imports the server's modules.
import { type Cidr, type IpFamily, mustParseCidr } from '../net/ip.js';

export const SPECIAL_RANGES: readonly { readonly cidr: string; readonly what: string }[] = [
  { cidr: '0.0.0.0/8', what: '"this network"' },
  { cidr: '127.0.0.0/8', what: 'loopback' },
  { cidr: '169.254.0.0/16', what: 'link-local (metadata service)' },
  { cidr: '10.0.0.0/8', what: 'RFC 1918' },
  { cidr: '172.16.0.0/12', what: 'RFC 1918' },
  { cidr: '192.168.0.0/16', what: 'RFC 1918' },
  { cidr: '100.64.0.0/10', what: 'CGNAT' },
  { cidr: '::1/128', what: 'IPv6 loopback' },
  { cidr: '::/128', what: 'IPv6 unspecified' },
  { cidr: 'fc00::/7', what: 'IPv6 unique-local' },
  { cidr: 'fe80::/10', what: 'IPv6 link-local' },
  { cidr: '::ffff:0:0/96', what: 'IPv4-mapped IPv6' },
];

export const specialRanges = (family: IpFamily): { cidr: Cidr; what: string }[] =>
  SPECIAL_RANGES.map((r) => ({ cidr: mustParseCidr(r.cidr), what: r.what })).filter((r) => r.cidr.family === family);
