// One source's route configuration on the forward proxy's HTTP listener: what
// forwardRoute.ts intends, written as Envoy's virtual hosts (src/envoy/routeMatch.ts).
//
//   ignore_port_in_host_matching: the port is cut off the Host/authority for the virtual
//   host lookup only (the dynamic forward proxy still dials host:port), and each route
//   checks the port with a header matcher, so a refusal can say "wrong port" rather than
//   "not allowed".
//   - "names": the allowed server-name patterns as domains ("a.b.c" exact, "*.b.c" a
//     suffix wildcard: any depth below, never the apex, as in allow.sni). CONNECT on the
//     name ports (":443" suffix) and plain HTTP on 80 (no port, or ":80") go to the
//     dynamic forward proxy; anything else there is 403 "port".
//   - "addresses|PORTS": the allowed ranges as domains: an IPv4 range becomes the exact
//     addresses (a /25 to /32) or the "a.b.c.*" prefixes (octet-aligned) covering it, the
//     more specific range's piece winning (it carries the ports of every range around it),
//     so Envoy's longest-prefix-wildcard rule picks the right port set; an IPv6 /128 its
//     bracketed canonical form. Routes allow the group's ports for a dotted-quad or
//     bracketed literal; the rest is 403.
//   - "*": everything else, 403 naming allow.cidrs for an address-like host, allow.sni else.
//   Every virtual host starts with the loop guard ("refuse loop ..." routes: the authority's
//   port is one of the proxy's own, 403 whatever the host) and, for a source an audit
//   policy selects, ends its forwarding routes with "would-deny ..." routes that forward
//   what the refusals after them would refuse (a CONNECT naming no port stays refused).
//   The access loggers (forwardProxy.ts) tell these apart by route name: "refuse loop ",
//   "refuse ", "would-deny " prefixes; every other route forwards an allowed request.
// Names never end in a digit (policy validation), so these domains never collide.
// Each configuration depends only on the allowlist, so sources with the same allowlist
// share the same object (built once per compile and memoised across compiles).
import { markImmutable } from '../envoy/fastEncode.js';
import type { DirectResponseJson, HeaderMatcherJson, RouteConfigurationJson, RouteJson, VirtualHostJson } from '../envoy/routeConfig.js';
import { formatIp, mustParseCidr, type Cidr } from '../net/ip.js';
import type { Policy } from '../policy/model.js';
import { FORWARD_ROUTE_CONFIG_NAME } from './forwardNames.js';
import { inspectName } from './forwardInspect.js';
import { auditPolicies } from './audit.js';
import { reachableByLiteral, type NamePorts } from './forwardRoute.js';
import { NAME_UPSTREAM_CLUSTER } from './names.js';
import { sortServerNames } from './serverNames.js';
import { cidrGroupsOf, type CidrGroup } from './sourcePlans.js';
import { BoundedMemo } from './boundedMemo.js';

/** A dotted quad or a bracketed IPv6 literal; kept tiny for RE2's program-size limit (100 by default). */
const LITERAL = '(?:[0-9]{1,3}(?:\\.[0-9]{1,3}){3}|\\[[0-9a-f:.]+\\])';
/** Anything that looks like an address literal, with any port text: a refusal naming allow.cidrs. */
const ADDRESS_LIKE = '[0-9.]+(?::.*)?|\\[[^\\]]*\\](?::.*)?';

const authority = (regex: string): HeaderMatcherJson => ({ name: ':authority', stringMatch: { safeRegex: { regex } } });
const authoritySuffix = (suffix: string): HeaderMatcherJson => ({ name: ':authority', stringMatch: { suffix } });
const noPort: HeaderMatcherJson = { name: ':authority', stringMatch: { contains: ':' }, invertMatch: true };

const CONNECT_ROUTE = { cluster: NAME_UPSTREAM_CLUSTER, upgradeConfigs: [{ upgradeType: 'CONNECT', connectConfig: {} }], timeout: '0s' };
const HTTP_ROUTE = { cluster: NAME_UPSTREAM_CLUSTER, timeout: '0s' };

const connectTo = (name: string, headers: HeaderMatcherJson[], cluster: string = NAME_UPSTREAM_CLUSTER): RouteJson => ({
  name,
  match: { connectMatcher: {}, headers },
  route: { ...CONNECT_ROUTE, cluster, upgradeConfigs: [...CONNECT_ROUTE.upgradeConfigs] },
});
const httpTo = (name: string, headers: HeaderMatcherJson[]): RouteJson => ({ name, match: { prefix: '/', headers }, route: { ...HTTP_ROUTE } });
const refuse = (body: string): DirectResponseJson => ({ status: 403, body: { inlineString: body } });

/** Route-name prefixes the access-log filters test (xds.route_name). */
export const ROUTE_PREFIX = { loop: 'refuse loop ', refuse: 'refuse ', wouldDeny: 'would-deny ' } as const;

/** The loop guard: routes refusing any authority on the proxy's own ports. */
function loopRoutes(loopPorts: readonly number[]): RouteJson[] {
  if (loopPorts.length === 0) return [];
  const onOwnPort = authority(`.*:(?:${loopPorts.join('|')})`);
  return [
    { name: `${ROUTE_PREFIX.loop}connect`, match: { connectMatcher: {}, headers: [onOwnPort] }, directResponse: refuse(REFUSAL_TEXT.loop) },
    { name: `${ROUTE_PREFIX.loop}http`, match: { prefix: '', headers: [onOwnPort] }, directResponse: refuse(REFUSAL_TEXT.loop) },
    // Plain HTTP without a port goes to 80.
    ...(loopPorts.includes(80) ? [{ name: `${ROUTE_PREFIX.loop}http default port`, match: { prefix: '', headers: [noPort] }, directResponse: refuse(REFUSAL_TEXT.loop) }] : []),
  ];
}

/** Audit: forward what the refusals would refuse (a CONNECT needs a port to be dialled). */
const WOULD_DENY_ROUTES: readonly RouteJson[] = [
  connectTo(`${ROUTE_PREFIX.wouldDeny}connect`, [authority('.*:[0-9]+')]),
  { name: `${ROUTE_PREFIX.wouldDeny}http`, match: { prefix: '' }, route: { ...HTTP_ROUTE } },
];

/** The virtual host with the loop guard first and, when audited, the would-deny routes before its refusals. */
function guarded(host: VirtualHostJson, loopPorts: readonly number[], audited: boolean): VirtualHostJson {
  if (loopPorts.length === 0 && !audited) return host;
  const firstRefusal = host.routes.findIndex((r) => r.directResponse !== undefined);
  const routes = audited ? [...host.routes.slice(0, firstRefusal), ...WOULD_DENY_ROUTES, ...host.routes.slice(firstRefusal)] : host.routes;
  return { ...host, routes: [...loopRoutes(loopPorts), ...routes] };
}

/** The texts after "egress-xds: HOST refused for SOURCE: " (the connection manager's local reply format adds those). */
export const REFUSAL_TEXT = {
  nameNoPolicy: 'no policy selecting this source allows this name (allow.sni)\n',
  addressNoPolicy: 'no policy selecting this source allows this address (allow.cidrs)\n',
  namePort: (ports: NamePorts) =>
    `names in allow.sni are reachable with CONNECT on port ${ports.connect.join(', ')} and plain HTTP on port ${ports.http.join(', ')} only; allow other ports by address with allow.cidrs[].ports\n`,
  addressNoPort: 'this address is allowed on every port, but CONNECT must name one (HOST:PORT) (allow.cidrs)\n',
  addressPort: (ports: readonly number[]) => `this address is allowed on port ${ports.join(', ')} only; add the port to allow.cidrs[].ports\n`,
  loop: "this port is the egress proxy's own (a loop); no policy can allow it\n",
} as const;

/** The refusals closing every non-"names" virtual host, in this order. */
function refusals(addressBody: string, nameBody: string): RouteJson[] {
  return [
    { name: 'refuse connect address', match: { connectMatcher: {}, headers: [authority(ADDRESS_LIKE)] }, directResponse: refuse(addressBody) },
    { name: 'refuse connect name', match: { connectMatcher: {} }, directResponse: refuse(nameBody) },
    { name: 'refuse http address', match: { prefix: '', headers: [authority(ADDRESS_LIKE)] }, directResponse: refuse(addressBody) },
    { name: 'refuse http name', match: { prefix: '' }, directResponse: refuse(nameBody) },
  ];
}

/** inspect: CONNECT to an allowed name goes to the internal listener checking the inner SNI (forwardInspect.ts). */
function namesHost(patterns: readonly string[], ports: NamePorts, inspect: boolean, audit: readonly string[]): VirtualHostJson {
  const body = REFUSAL_TEXT.namePort(ports);
  const connectCluster = (p: number): string => (inspect ? inspectName(patterns, p, audit) : NAME_UPSTREAM_CLUSTER);
  return {
    name: 'names',
    domains: [...patterns],
    routes: [
      ...ports.connect.map((p) => connectTo(`connect name:${p}`, [authoritySuffix(`:${p}`)], connectCluster(p))),
      ...(ports.http.includes(80) ? [httpTo('http name', [noPort])] : []),
      ...ports.http.map((p) => httpTo(`http name:${p}`, [authoritySuffix(`:${p}`)])),
      { name: 'refuse connect port', match: { connectMatcher: {} }, directResponse: refuse(body) },
      { name: 'refuse http port', match: { prefix: '' }, directResponse: refuse(body) },
    ],
  };
}

function addressesHost(domains: string[], ports: readonly number[] | undefined): VirtualHostJson {
  const label = ports === undefined ? '*' : ports.join(',');
  const allow: RouteJson[] =
    ports === undefined
      ? [connectTo('connect address', [authority(`${LITERAL}:[0-9]{1,5}`)]), httpTo('http address', [authority(`${LITERAL}(?::[0-9]{1,5})?`)])]
      : [
          ...ports.map((p) => connectTo(`connect address:${p}`, [authority(`${LITERAL}:${p}`)])),
          ...(ports.includes(80) ? [httpTo('http address', [authority(LITERAL)])] : []),
          ...ports.map((p) => httpTo(`http address:${p}`, [authority(`${LITERAL}:${p}`)])),
        ];
  const portBody = ports === undefined ? REFUSAL_TEXT.addressNoPort : REFUSAL_TEXT.addressPort(ports);
  return { name: `addresses|${label}`, domains, routes: [...allow, ...refusals(portBody, REFUSAL_TEXT.nameNoPolicy)] };
}

/** The domains standing for an IPv4 range: exact addresses or "a.b.*" prefixes, octet-aligned. */
function ipv4Pieces(cidr: Cidr): string[] {
  const aligned = Math.ceil(cidr.prefixLength / 8) * 8;
  const count = 1 << (aligned - cidr.prefixLength);
  const pieces: string[] = [];
  for (let i = 0; i < count; i++) {
    const value = cidr.network + (BigInt(i) << BigInt(32 - aligned));
    const octets = formatIp({ family: 4, value }).split('.');
    pieces.push(aligned === 32 ? octets.join('.') : `${octets.slice(0, aligned / 8).join('.')}.*`);
  }
  return pieces;
}

function addressHosts(groups: readonly CidrGroup[]): VirtualHostJson[] {
  // piece → the group of the most specific range it came from.
  const owner = new Map<string, { group: number; prefixLength: number }>();
  groups.forEach((group, g) => {
    for (const text of group.cidrs) {
      const cidr = mustParseCidr(text);
      const pieces = cidr.family === 4 ? ipv4Pieces(cidr) : cidr.prefixLength === 128 ? [`[${formatIp({ family: 6, value: cidr.network })}]`] : [];
      for (const piece of pieces) {
        const current = owner.get(piece);
        if (!current || current.prefixLength < cidr.prefixLength) owner.set(piece, { group: g, prefixLength: cidr.prefixLength });
      }
    }
  });
  const domains = groups.map((): string[] => []);
  for (const [piece, { group }] of owner) domains[group]!.push(piece);
  return groups.flatMap((group, g) => (domains[g]!.length === 0 ? [] : [addressesHost(domains[g]!.sort(), group.ports)]));
}

/** A policy's cidr rules as the forward proxy can reach them by literal. */
function reachable(policy: Policy): Policy {
  const cidrs = policy.allow.cidrs;
  if (!cidrs || cidrs.every((rule) => reachableByLiteral(rule.cidr))) return policy;
  return { ...policy, allow: { ...policy.allow, cidrs: cidrs.filter((rule) => reachableByLiteral(rule.cidr)) } };
}

const sortedNames = new WeakMap<Policy, readonly string[]>();

/**
 * Every server-name pattern the policies allow, in Envoy's order (sortServerNames). Where a
 * name's connections go does not matter here: the forward proxy always dials the authority.
 * A policy's own list is sorted once (policies are immutable values).
 */
export function allowedNames(policies: readonly Policy[]): readonly string[] {
  const own = (policy: Policy): readonly string[] => {
    let names = sortedNames.get(policy);
    if (!names) sortedNames.set(policy, (names = sortServerNames(policy.allow.sni)));
    return names;
  };
  if (policies.length === 1) return own(policies[0]!);
  return sortServerNames(policies.flatMap((p) => p.allow.sni));
}

const MAX_CONFIGS = 20_000;
const configs = new BoundedMemo<RouteConfigurationJson>(MAX_CONFIGS);
/** The last configuration built for a lone policy (the usual microVM), found without building its key. */
const byLonePolicy = new WeakMap<Policy, { ports: NamePorts; loopPorts: readonly number[]; inspect: boolean; config: RouteConfigurationJson }>();

/** The route configuration for a source selected by `policies` (memoised on the allowlist it depends on). */
export function forwardRouteConfig(policies: readonly Policy[], namePorts: NamePorts, loopPorts: readonly number[] = [], inspect = false): RouteConfigurationJson {
  const lone = policies.length === 1 ? byLonePolicy.get(policies[0]!) : undefined;
  if (lone && lone.ports === namePorts && lone.loopPorts === loopPorts && lone.inspect === inspect) return lone.config;
  const config = contentRouteConfig(policies, namePorts, loopPorts, inspect);
  if (policies.length === 1) byLonePolicy.set(policies[0]!, { ports: namePorts, loopPorts, inspect, config });
  return config;
}

function contentRouteConfig(policies: readonly Policy[], namePorts: NamePorts, loopPorts: readonly number[], inspect: boolean): RouteConfigurationJson {
  const audit = auditPolicies(policies);
  const audited = audit.length > 0;
  const names = allowedNames(policies);
  // No port is the listener's own here: -1 keeps every rule's ports.
  const groups = policies.some((p) => (p.allow.cidrs?.length ?? 0) > 0) ? cidrGroupsOf(policies.map(reachable), -1) : [];
  const key = `${names.join(',')}|${groups.map((g) => `${g.cidrs.join(',')}:${g.ports?.join(',') ?? '*'}`).join(';')}|${namePorts.connect.join(',')}|${namePorts.http.join(',')}|${loopPorts.join(',')}|${audit.join(',')}|${inspect}`;
  // Shared and never changed again: the fast encoder may keep its bytes.
  return configs.get(key, () => markImmutable<RouteConfigurationJson>({
    name: FORWARD_ROUTE_CONFIG_NAME,
    ignorePortInHostMatching: true,
    virtualHosts: [
      ...(names.length > 0 ? [namesHost(names, namePorts, inspect, audit)] : []),
      ...addressHosts(groups),
      { name: 'refused', domains: ['*'], routes: refusals(REFUSAL_TEXT.addressNoPolicy, REFUSAL_TEXT.nameNoPolicy) },
    ].map((host) => guarded(host, loopPorts, audited)),
  }));
}
