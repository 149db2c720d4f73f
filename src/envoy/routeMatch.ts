// Envoy's HTTP route selection, as a pure function, for the route configurations
// egress-xds generates (the forward proxy's, the port-80 HTTP path's). Written from
// source/common/router/config_impl.cc (RouteMatcher, VirtualHostImpl,
// *RouteEntryImpl::matches), source/common/http/header_utility.cc and
// source/common/http/conn_manager_impl.cc / filter_manager.cc (CONNECT upgrades):
//
// 1. Virtual host (RouteMatcher::findVirtualHost): the Host/:authority, its port cut at
//    the last ':' not inside "[...]" when ignore_port_in_host_matching is set
//    (HeaderUtility::getPortStart), lower-cased, is looked up
//      a. among the exact domains;
//      b. among suffix wildcards ("*.x", "*-x": a leading '*'), longest wildcard first,
//         a wildcard of length L (without the '*') only for hosts longer than L, so the
//         '*' never matches the empty string;
//      c. among prefix wildcards ("x*"), the same way, longest first;
//      d. else the one "*" virtual host, if any; else none (404, no route).
//    Domains are lower-cased when loaded; a duplicate (after lower-casing, within its
//    kind) or a second "*" makes Envoy reject the whole route configuration.
//    Fast path: with no exact and no wildcard domains, the "*" host is taken whatever the
//    Host header (even a missing one).
// 2. Route (VirtualHostImpl::getRouteFromRoutes): the first route in order whose match
//    holds. A request without :path (HTTP/1 and HTTP/2 CONNECT) only meets connect_matcher
//    routes (supportsPathlessHeaders); connect_matcher matches CONNECT (and CONNECT-UDP)
//    only; prefix/path compare the path (case-sensitively unless case_sensitive: false);
//    every header matcher must hold (HeaderUtility::matchHeaders), safe_regex being a full
//    match (RE2::FullMatch). No route: 404 (NR).
// 3. A CONNECT (FilterManager::createFilterChain → createUpgradeFilterChain) is let through
//    when the route's own upgrade_configs has CONNECT enabled, or, without a route-level
//    entry, when the connection manager's upgrade_configs has it enabled; a route-level
//    `enabled: false` refuses it. A direct_response route has no route entry, so only the
//    connection manager's setting counts there. Refused: 403 (upgrade_failed).
//
// Not modelled (egress-xds writes none of them): runtime fractions, query/dynamic-metadata
// matchers, the generic `matcher` on a virtual host, require_tls, weighted clusters, VHDS.
import type { HeaderMatcherJson, RouteConfigurationJson, RouteJson, StringMatcherJson, UpgradeConfigJson, VirtualHostJson } from './routeConfig.js';

export interface HttpRequestInput {
  /** ":method", e.g. "CONNECT" or "GET". */
  readonly method: string;
  /** Host / :authority as the codec leaves it (for CONNECT: the authority-form target); undefined when absent. */
  readonly authority: string | undefined;
  /** ":path"; absent for CONNECT. */
  readonly path?: string;
  /** Other request headers, lower-case names. */
  readonly headers?: Readonly<Record<string, string>>;
}

export type RouteOutcome =
  | { readonly kind: 'cluster'; readonly cluster: string; readonly connect: 'none' | 'proxied' | 'terminated' }
  | { readonly kind: 'direct-response'; readonly status: number; readonly body: string }
  | { readonly kind: 'no-route'; readonly status: 404 }
  | { readonly kind: 'upgrade-refused'; readonly status: 403 };

export interface RouteSelection {
  /** The virtual host's name; undefined when none matched. */
  readonly virtualHost: string | undefined;
  /** How the virtual host was found: "exact", "suffix *x", "prefix x*", "default *", or "none". */
  readonly domainMatch: string;
  /** Index of the route taken in the virtual host's routes; -1 when none. */
  readonly routeIndex: number;
  readonly route: RouteJson | undefined;
  readonly outcome: RouteOutcome;
}

/** The host string Envoy looks virtual hosts up with. */
export function hostForMatching(authority: string, ignorePort: boolean): string {
  let host = authority;
  if (ignorePort) {
    const colon = host.lastIndexOf(':');
    const bracket = host.lastIndexOf(']');
    if (colon !== -1 && (bracket === -1 || bracket < colon)) host = host.slice(0, colon);
  }
  // absl::AsciiStrToLower: ASCII letters only.
  return host.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

const asciiLower = (text: string): string => text.replace(/[A-Z]/g, (c) => c.toLowerCase());

interface DomainIndex {
  readonly exact: Map<string, VirtualHostJson>;
  /** Wildcard length → (suffix → host), iterated longest first. */
  readonly suffixes: [number, Map<string, VirtualHostJson>][];
  readonly prefixes: [number, Map<string, VirtualHostJson>][];
  readonly fallback: VirtualHostJson | undefined;
  readonly problems: string[];
}

const indexCache = new WeakMap<RouteConfigurationJson, DomainIndex>();

function domainIndex(config: RouteConfigurationJson): DomainIndex {
  const cached = indexCache.get(config);
  if (cached) return cached;
  const exact = new Map<string, VirtualHostJson>();
  const suffixes = new Map<number, Map<string, VirtualHostJson>>();
  const prefixes = new Map<number, Map<string, VirtualHostJson>>();
  let fallback: VirtualHostJson | undefined;
  const problems: string[] = [];
  const add = (maps: Map<number, Map<string, VirtualHostJson>>, length: number, key: string, vh: VirtualHostJson): boolean => {
    let map = maps.get(length);
    if (!map) maps.set(length, (map = new Map()));
    if (map.has(key)) return false;
    map.set(key, vh);
    return true;
  };
  for (const vh of config.virtualHosts) {
    for (const name of vh.domains) {
      const domain = asciiLower(name);
      let unique = true;
      if (domain === '*') {
        if (fallback) problems.push(`only a single wildcard domain is permitted (virtual host "${vh.name}")`);
        else fallback = vh;
        continue;
      } else if (domain.length > 0 && domain[0] === '*') {
        unique = add(suffixes, domain.length - 1, domain.slice(1), vh);
      } else if (domain.length > 0 && domain[domain.length - 1] === '*') {
        unique = add(prefixes, domain.length - 1, domain.slice(0, -1), vh);
      } else if (exact.has(domain)) {
        unique = false;
      } else {
        exact.set(domain, vh);
      }
      if (!unique) problems.push(`duplicate entry of domain ${domain} (virtual host "${vh.name}")`);
    }
  }
  const longestFirst = (m: Map<number, Map<string, VirtualHostJson>>) => [...m].sort((a, b) => b[0] - a[0]);
  const index = { exact, suffixes: longestFirst(suffixes), prefixes: longestFirst(prefixes), fallback, problems };
  indexCache.set(config, index);
  return index;
}

/** Why Envoy would reject this route configuration (duplicate domains, a second "*"); empty when it would load. */
export function findRouteConfigProblems(config: RouteConfigurationJson): string[] {
  const problems = [...domainIndex(config).problems];
  for (const vh of config.virtualHosts) {
    if (vh.domains.length === 0) problems.push(`virtual host "${vh.name}" has no domains`);
    vh.routes.forEach((route, i) => {
      const specifiers = ['prefix', 'path', 'safeRegex', 'pathSeparatedPrefix', 'connectMatcher'].filter((k) => (route.match as Record<string, unknown>)[k] !== undefined);
      if (specifiers.length !== 1) problems.push(`virtual host "${vh.name}" route ${i}: exactly one path specifier is required`);
      if ((route.route === undefined) === (route.directResponse === undefined)) problems.push(`virtual host "${vh.name}" route ${i}: exactly one action is required`);
    });
  }
  return problems;
}

function wildcardLookup(host: string, maps: readonly [number, Map<string, VirtualHostJson>][], part: (h: string, l: number) => string): { vh: VirtualHostJson; key: string } | undefined {
  for (const [length, map] of maps) {
    // ">=" because "*.foo.com" must not match ".foo.com".
    if (length >= host.length) continue;
    const key = part(host, length);
    const vh = map.get(key);
    if (vh) return { vh, key };
  }
  return undefined;
}

/** RouteMatcher::findVirtualHost. */
export function selectVirtualHost(config: RouteConfigurationJson, authority: string | undefined): { virtualHost: VirtualHostJson | undefined; domainMatch: string } {
  const index = domainIndex(config);
  if (index.exact.size === 0 && index.suffixes.length === 0 && index.prefixes.length === 0) {
    return { virtualHost: index.fallback, domainMatch: index.fallback ? 'default *' : 'none' };
  }
  if (authority === undefined) return { virtualHost: undefined, domainMatch: 'none' };
  const host = hostForMatching(authority, config.ignorePortInHostMatching === true);
  const exact = index.exact.get(host);
  if (exact) return { virtualHost: exact, domainMatch: `exact ${host}` };
  const suffix = wildcardLookup(host, index.suffixes, (h, l) => h.slice(h.length - l));
  if (suffix) return { virtualHost: suffix.vh, domainMatch: `suffix *${suffix.key}` };
  const prefix = wildcardLookup(host, index.prefixes, (h, l) => h.slice(0, l));
  if (prefix) return { virtualHost: prefix.vh, domainMatch: `prefix ${prefix.key}*` };
  return { virtualHost: index.fallback, domainMatch: index.fallback ? 'default *' : 'none' };
}

const regexCache = new Map<string, RegExp>();
/** RE2 full match; the generated expressions use the syntax RE2 and JavaScript share. */
function fullMatch(regex: string, value: string): boolean {
  let compiled = regexCache.get(regex);
  if (!compiled) {
    if (regexCache.size > 10_000) regexCache.clear();
    compiled = new RegExp(`^(?:${regex})$`, 'su');
    regexCache.set(regex, compiled);
  }
  return compiled.test(value);
}

function stringMatches(matcher: StringMatcherJson, raw: string): boolean {
  const fold = matcher.ignoreCase === true;
  const value = fold ? raw.toLowerCase() : raw;
  const pattern = (text: string) => (fold ? text.toLowerCase() : text);
  if (matcher.exact !== undefined) return value === pattern(matcher.exact);
  if (matcher.prefix !== undefined) return value.startsWith(pattern(matcher.prefix));
  if (matcher.suffix !== undefined) return value.endsWith(pattern(matcher.suffix));
  if (matcher.contains !== undefined) return value.includes(pattern(matcher.contains));
  // ignore_case does not apply to safe_regex.
  if (matcher.safeRegex !== undefined) return fullMatch(matcher.safeRegex.regex, raw);
  return false;
}

function headerValue(request: HttpRequestInput, name: string): string | undefined {
  const lower = name.toLowerCase();
  if (lower === ':authority' || lower === 'host') return request.authority;
  if (lower === ':method') return request.method;
  if (lower === ':path') return request.path;
  return request.headers?.[lower];
}

/** HeaderUtility::matchHeaders for one matcher. */
export function headerMatches(matcher: HeaderMatcherJson, request: HttpRequestInput): boolean {
  const found = headerValue(request, matcher.name);
  const invert = matcher.invertMatch === true;
  if (found === undefined && !matcher.treatMissingHeaderAsEmpty) {
    // A missing header matches only "present_match: false" (or an inverted present_match: true).
    if (matcher.presentMatch !== undefined) return (matcher.presentMatch === false) !== invert;
    return false;
  }
  const value = found ?? '';
  let matches: boolean;
  if (matcher.presentMatch !== undefined) matches = matcher.presentMatch;
  else if (matcher.exactMatch !== undefined) matches = value === matcher.exactMatch;
  else if (matcher.safeRegexMatch !== undefined) matches = fullMatch(matcher.safeRegexMatch.regex, value);
  else if (matcher.prefixMatch !== undefined) matches = value.startsWith(matcher.prefixMatch);
  else if (matcher.suffixMatch !== undefined) matches = value.endsWith(matcher.suffixMatch);
  else if (matcher.containsMatch !== undefined) matches = value.includes(matcher.containsMatch);
  else if (matcher.stringMatch !== undefined) matches = stringMatches(matcher.stringMatch, value);
  else matches = true; // no match specifier: presence
  return matches !== invert;
}

const isConnect = (method: string): boolean => method === 'CONNECT';

/** *RouteEntryImpl::matches for the specifiers egress-xds writes. */
export function routeMatches(route: RouteJson, request: HttpRequestInput): boolean {
  const match = route.match;
  if (match.connectMatcher !== undefined) {
    if (!isConnect(request.method)) return false;
  } else {
    // getRouteFromRoutes skips routes that need a path when there is none.
    if (request.path === undefined) return false;
    const caseSensitive = match.caseSensitive !== false;
    const path = caseSensitive ? request.path : request.path.toLowerCase();
    const cased = (text: string) => (caseSensitive ? text : text.toLowerCase());
    if (match.prefix !== undefined) {
      if (!path.startsWith(cased(match.prefix))) return false;
    } else if (match.path !== undefined) {
      if (path.split('?')[0] !== cased(match.path)) return false;
    } else if (match.safeRegex !== undefined) {
      if (!fullMatch(match.safeRegex.regex, request.path.split('?')[0]!)) return false;
    } else if (match.pathSeparatedPrefix !== undefined) {
      const bare = path.split('?')[0]!;
      const p = cased(match.pathSeparatedPrefix);
      if (!(bare.startsWith(p) && (bare.length === p.length || bare[p.length] === '/'))) return false;
    } else {
      return false;
    }
  }
  return (match.headers ?? []).every((h) => headerMatches(h, request));
}

function upgradeEntry(configs: readonly UpgradeConfigJson[] | undefined, type: string): UpgradeConfigJson | undefined {
  return configs?.find((c) => c.upgradeType.toLowerCase() === type.toLowerCase());
}

/**
 * Whether Envoy lets a CONNECT through to the route: the route's own CONNECT entry decides
 * when it has one (enabled unless `enabled: false`); otherwise the connection manager's.
 */
export function connectAllowed(route: RouteJson | undefined, hcmUpgradeConfigs: readonly UpgradeConfigJson[] | undefined): boolean {
  const routeEntry = route?.route ? upgradeEntry(route.route.upgradeConfigs, 'CONNECT') : undefined;
  if (routeEntry) return routeEntry.enabled !== false;
  const hcm = upgradeEntry(hcmUpgradeConfigs, 'CONNECT');
  return hcm !== undefined && hcm.enabled !== false;
}

/** The route Envoy takes for one request, and what it does with it. */
export function selectRoute(config: RouteConfigurationJson, request: HttpRequestInput, hcmUpgradeConfigs?: readonly UpgradeConfigJson[]): RouteSelection {
  const { virtualHost, domainMatch } = selectVirtualHost(config, request.authority);
  const routeIndex = virtualHost ? virtualHost.routes.findIndex((r) => routeMatches(r, request)) : -1;
  const route = routeIndex === -1 ? undefined : virtualHost!.routes[routeIndex];
  const base = { virtualHost: virtualHost?.name, domainMatch, routeIndex, route };
  if (isConnect(request.method) && !connectAllowed(route, hcmUpgradeConfigs)) {
    return { ...base, outcome: { kind: 'upgrade-refused', status: 403 } };
  }
  if (!route) return { ...base, outcome: { kind: 'no-route', status: 404 } };
  if (route.directResponse) {
    return { ...base, outcome: { kind: 'direct-response', status: route.directResponse.status, body: route.directResponse.body?.inlineString ?? '' } };
  }
  const action = route.route!;
  const entry = upgradeEntry(action.upgradeConfigs, 'CONNECT');
  const connect = !isConnect(request.method) ? 'none' : entry?.connectConfig !== undefined ? 'terminated' : 'proxied';
  return { ...base, outcome: { kind: 'cluster', cluster: action.cluster, connect } };
}

/** An HttpConnectionManager's route_specifier, as ProtoJSON: inline, or by name over RDS. */
export interface RouteSpecifierJson {
  readonly routeConfig?: RouteConfigurationJson;
  readonly rds?: { readonly routeConfigName: string };
}

const rdsIndexes = new WeakMap<readonly RouteConfigurationJson[], Map<string, RouteConfigurationJson>>();

/**
 * The route table a connection manager routes with (http_connection_manager config.cc,
 * route_specifier): its inline route_config, or with `rds` the RouteConfiguration of
 * route_config_name among those Envoy received over RDS. Undefined when RDS has not
 * delivered that name: Envoy then keeps a new listener warming until it arrives (or its
 * initial_fetch_timeout passes, after which every request gets a 404, no route).
 */
export function routeConfigOf(hcm: RouteSpecifierJson, rdsRoutes: readonly RouteConfigurationJson[] = []): RouteConfigurationJson | undefined {
  if (hcm.routeConfig) return hcm.routeConfig;
  if (!hcm.rds) return undefined;
  let index = rdsIndexes.get(rdsRoutes);
  if (!index) rdsIndexes.set(rdsRoutes, (index = new Map(rdsRoutes.map((r) => [r.name ?? '', r]))));
  return index.get(hcm.rds.routeConfigName);
}
