// The route the policies intend for one request to the forward proxy's HTTP listener:
// the specification forwardRoutes.ts must reproduce through Envoy's route selection
// (src/envoy/routeMatch.ts).
//   - The authority (CONNECT's target, or the Host of an absolute-form request) is an
//     address when it is an IPv4 literal in canonical dotted-decimal form or a bracketed
//     IPv6 literal in canonical (RFC 5952) form; otherwise a name. A port is decimal
//     without leading zeros; CONNECT needs one, plain HTTP defaults to 80.
//   - A name is allowed when a policy selecting the source allows it in allow.sni and
//     the port is one of the name ports (CONNECT: 443 by default; plain HTTP: 80).
//   - An address is allowed when a cidr rule of a policy selecting the source holds it
//     with the port (a rule without ports: any port). IPv6: only rules naming a single
//     address (/128) are reachable through the forward proxy (README, "Forward proxy").
//   - Otherwise refused, saying why: "no-policy" (nothing allows that host) or "port"
//     (the host is allowed, not on that port), and which policy field would allow it.
//   - Before all of that, the loop guard (issue 7 point 4, as on the transparent
//     listener): a request to one of the proxy's own ports (the forward ports, the
//     transparent listener's, the DNS listener's), on any host, is refused ("loop"),
//     whatever a broad cidr rule allows; audit mode never lets a loop through.
//   - Audit mode: when an audit policy selects the source, a request that would be refused
//     (no-policy or port) is forwarded anyway and logged as would-deny, except a CONNECT
//     naming no port (nothing could be dialled): it stays refused.
// Every allowed request is dialled by its authority through the dynamic forward proxy.
import { cidrContainsIp, formatIp, mustParseCidr, parseIp, type IpAddress } from '../net/ip.js';
import type { Policy } from '../policy/model.js';
import { sniPatternMatches } from '../policy/verdict.js';
import { DEFAULT_NAME_CONNECT_PORTS, DEFAULT_NAME_HTTP_PORTS } from './forwardNames.js';

export interface ForwardRequest {
  readonly sourceIp: string;
  /** "CONNECT", or the method of an absolute-form request. */
  readonly method: string;
  /** "github.com:443", "10.1.2.3:8080", "[2001:db8::1]:443", "example.com". */
  readonly authority: string;
}

export type ForwardRefusal = 'no-policy' | 'port';
export type ForwardField = 'allow.sni' | 'allow.cidrs';

export type ForwardRoute =
  | { readonly verdict: 'allow'; readonly policy: string; readonly by: 'sni' | 'cidr'; readonly host: string; readonly port: number }
  | { readonly verdict: 'deny'; readonly reason: ForwardRefusal; readonly field: ForwardField }
  /** To the proxy's own port: no policy field can allow it. */
  | { readonly verdict: 'deny'; readonly reason: 'loop' }
  /** Refused by the policies, forwarded because audit policies select the source. */
  | { readonly verdict: 'would-deny'; readonly reason: 'no-policy' | 'port'; readonly field: ForwardField; readonly policies: readonly string[] };

/** CONNECT names a port (digits after the last ':'): what an audited CONNECT needs to be dialled. */
export const CONNECT_PORT_TEXT = /:[0-9]+$/;

export interface NamePorts {
  readonly connect: readonly number[];
  readonly http: readonly number[];
}

export const DEFAULT_NAME_PORTS: NamePorts = { connect: DEFAULT_NAME_CONNECT_PORTS, http: DEFAULT_NAME_HTTP_PORTS };

export interface ParsedAuthority {
  readonly kind: 'ipv4' | 'ipv6' | 'name';
  /** Lower-case; an IPv6 address without its brackets. */
  readonly host: string;
  readonly address?: IpAddress;
  /** Undefined when absent; NaN when not a canonical port number. */
  readonly port: number | undefined;
}

function parsePortText(text: string): number {
  return /^(?:0|[1-9][0-9]{0,4})$/.test(text) && Number(text) <= 65535 ? Number(text) : NaN;
}

export function parseAuthority(authority: string): ParsedAuthority {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    const inner = end === -1 ? '' : authority.slice(1, end);
    const rest = end === -1 ? '' : authority.slice(end + 1);
    const address = parseIp(inner);
    const port = rest === '' ? undefined : rest.startsWith(':') ? parsePortText(rest.slice(1)) : NaN;
    if (address?.family === 6 && formatIp(address) === inner) return { kind: 'ipv6', host: inner, address, port };
    return { kind: 'name', host: authority.toLowerCase(), port };
  }
  const colon = authority.lastIndexOf(':');
  const host = colon === -1 ? authority : authority.slice(0, colon);
  const port = colon === -1 ? undefined : parsePortText(authority.slice(colon + 1));
  const address = parseIp(host);
  if (address?.family === 4 && formatIp(address) === host) return { kind: 'ipv4', host, address, port };
  return { kind: 'name', host: host.toLowerCase(), port };
}

const byName = (a: Policy, b: Policy): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

function selects(policy: Policy, sourceIp: string): boolean {
  if (policy.sources === undefined) return true;
  const ip = parseIp(sourceIp);
  return ip !== undefined && policy.sources.some((cidr) => cidrContainsIp(mustParseCidr(cidr), ip));
}

/** Only /128 IPv6 rules are reachable by literal (the virtual host domains can name no wider IPv6 range). */
export function reachableByLiteral(cidr: string): boolean {
  const parsed = mustParseCidr(cidr);
  return parsed.family === 4 || parsed.prefixLength === 128;
}

export function intendedForwardRoute(
  policies: readonly Policy[],
  request: ForwardRequest,
  namePorts: NamePorts = DEFAULT_NAME_PORTS,
  /** The proxy's own ports (forwardLoopPorts): refused on any host. */
  loopPorts: readonly number[] = [],
): ForwardRoute {
  const connect = request.method === 'CONNECT';
  const parsed = parseAuthority(request.authority);
  const port = parsed.port ?? (connect ? NaN : 80);
  if (loopPorts.includes(port)) return { verdict: 'deny', reason: 'loop' };
  const selecting = policies.filter((p) => selects(p, request.sourceIp)).sort(byName);
  const route = policyRoute(selecting, parsed, port, connect, namePorts);
  if (route.verdict === 'allow') return route;
  const audit = selecting.filter((p) => p.mode === 'audit').map((p) => p.name);
  if (audit.length === 0 || (connect && !CONNECT_PORT_TEXT.test(request.authority))) return route;
  return { verdict: 'would-deny', reason: route.reason, field: route.field, policies: audit };
}

function policyRoute(
  selecting: readonly Policy[],
  parsed: ParsedAuthority,
  port: number,
  connect: boolean,
  namePorts: NamePorts,
): Extract<ForwardRoute, { verdict: 'allow' }> | { readonly verdict: 'deny'; readonly reason: 'no-policy' | 'port'; readonly field: ForwardField } {
  if (parsed.kind === 'name') {
    const allowing = selecting.filter((p) => p.allow.sni.some((pattern) => sniPatternMatches(pattern, parsed.host)));
    if (allowing.length === 0) return { verdict: 'deny', reason: 'no-policy', field: 'allow.sni' };
    if (!(connect ? namePorts.connect : namePorts.http).includes(port)) return { verdict: 'deny', reason: 'port', field: 'allow.sni' };
    return { verdict: 'allow', policy: allowing[0]!.name, by: 'sni', host: parsed.host, port };
  }
  const address = parsed.address!;
  let covered = false;
  for (const policy of selecting) {
    for (const rule of policy.allow.cidrs ?? []) {
      if (!reachableByLiteral(rule.cidr) || !cidrContainsIp(mustParseCidr(rule.cidr), address)) continue;
      covered = true;
      if (!Number.isNaN(port) && (rule.ports === undefined || rule.ports.includes(port))) {
        return { verdict: 'allow', policy: policy.name, by: 'cidr', host: parsed.host, port };
      }
    }
  }
  return { verdict: 'deny', reason: covered ? 'port' : 'no-policy', field: 'allow.cidrs' };
}
