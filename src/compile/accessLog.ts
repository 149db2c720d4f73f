// Access logs: Envoy's own gRPC access loggers on the egress chains, streaming to the
// control plane's Access Log Service (the ADS cluster of the bootstrap, same address and
// TLS). What the entries carry is the contract in src/denials/record.ts (branch "denials"):
// log_name "egress-xds", LITERAL custom tags egress.verdict / egress.reason /
// egress.listener / egress.chain / egress.policy, and the server name in the filter state
// object "egress.sni". The constants are repeated here (compile may not import the denials
// room); test/compile/accessLog.test.ts checks them against record.ts when it is present.
//
// Tags are literal, so they are fixed per chain; everything that varies per connection
// (source, original destination, SNI) comes from the entry itself. The store revision is
// never a tag: it would change every chain on every commit, and Envoy drains a chain whose
// proto changes (the server stamps the revision in force when the record arrives).
//
// Which entries a chain emits:
//   reject, reject_loop         every connection: denied, no-policy / loop
//   would_deny|SOURCE           every connection: would-deny, no-policy, the audit policies
//   name|S, original_dst|S      a connection the per-source cap closed (connection_limit sets
//                               no response flag and tcp_proxy never dials: no upstream
//                               address, no flag): denied, per-source-limit;
//                               name|S only: an upstream connect failure (UF) to a special
//                               address (the host refuses the marked socket): denied,
//                               forbidden-address;
//                               with a "log": "all" policy on the source, every other
//                               connection: allowed.
// The per-connection conditions are CEL access-log filters
// (envoy.access_loggers.extension_filters.cel, Envoy ≥ 1.26), because Envoy's other filters
// cannot test "no upstream host" or an address range.
import { markImmutable } from '../envoy/fastEncode.js';
import type { FilterChainJson, TypedExtensionJson } from '../envoy/resources.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import type { Policy } from '../policy/model.js';
import { AUDIT_CHAIN_PREFIX, auditPolicies } from './audit.js';
import { ANY_SOURCE, policiesBySource } from './sourcePlans.js';
import { SPECIAL_RANGES } from './specialAddresses.js';
import {
  ANY_SOURCE_LABEL,
  LOOP_REJECT_FILTER_CHAIN,
  NAME_CHAIN_PREFIX,
  ORIGINAL_DST_CHAIN_PREFIX,
  REJECT_FILTER_CHAIN,
  SET_FILTER_STATE_FILTER,
  TCP_PROXY_FILTER,
} from './names.js';
import { ALS_LOG_NAME, SNI_FILTER_STATE_KEY, TAG } from './accessLogContract.js';

export { ALS_LOG_NAME, SNI_FILTER_STATE_KEY, TAG };

/** The bootstrap's static cluster that reaches the control plane (src/bootstrap XDS_CLUSTER); the ALS is served beside ADS. */
export const DEFAULT_ALS_CLUSTER = 'xds_cluster';
export const TCP_GRPC_ACCESS_LOGGER = 'envoy.access_loggers.tcp_grpc';
export const HTTP_GRPC_ACCESS_LOGGER = 'envoy.access_loggers.http_grpc';
export const CEL_ACCESS_LOG_FILTER = 'envoy.access_loggers.extension_filters.cel';


export type LogVerdict = 'denied' | 'would-deny' | 'allowed';
/** The reasons the listener side emits (a subset of record.ts DENIAL_REASONS). */
export type LogReason = 'no-policy' | 'forbidden-address' | 'per-source-limit' | 'loop' | 'http-host';

export interface AccessLogOptions {
  /** The cluster the ALS is reached through; default "xds_cluster". */
  readonly alsCluster?: string;
}

/** What one access logger says about the connections it logs. */
export interface LogTags {
  readonly verdict: LogVerdict;
  readonly reason?: LogReason;
  readonly listener: string;
  readonly chain?: string;
  /** Policy names, joined with "," in the tag. */
  readonly policies?: readonly string[];
}

export type AccessLogFilterJson = Record<string, unknown>;

export interface AccessLogJson {
  name: string;
  filter?: AccessLogFilterJson;
  typedConfig: { '@type': string; [field: string]: unknown };
}

const literal = (tag: string, value: string) => ({ tag, literal: { value } });

function customTags(tags: LogTags): Record<string, unknown>[] {
  const policy = tags.policies && tags.policies.length > 0 ? tags.policies.join(',') : undefined;
  return [
    literal(TAG.verdict, tags.verdict),
    ...(tags.reason ? [literal(TAG.reason, tags.reason)] : []),
    literal(TAG.listener, tags.listener),
    ...(tags.chain ? [literal(TAG.chain, tags.chain)] : []),
    ...(policy ? [literal(TAG.policy, policy)] : []),
  ];
}

// Parts every logger repeats, built once and marked immutable: the encoder keeps their
// bytes, so a cold compile encodes them once instead of once per chain.
const grpcServices = new Map<string, Record<string, unknown>>();
function grpcServiceOf(cluster: string): Record<string, unknown> {
  let service = grpcServices.get(cluster);
  if (!service) {
    if (grpcServices.size > 64) grpcServices.clear();
    grpcServices.set(cluster, (service = markImmutable({ envoyGrpc: { clusterName: cluster } })));
  }
  return service;
}
const FILTER_STATE_OBJECTS: readonly string[] = [SNI_FILTER_STATE_KEY];

function commonConfig(tags: LogTags, options: AccessLogOptions): Record<string, unknown> {
  return {
    logName: ALS_LOG_NAME,
    grpcService: grpcServiceOf(options.alsCluster ?? DEFAULT_ALS_CLUSTER),
    transportApiVersion: 'V3',
    filterStateObjectsToLog: FILTER_STATE_OBJECTS,
    customTags: customTags(tags),
  };
}

/** envoy.access_loggers.tcp_grpc for a tcp_proxy (or a listener). */
export function tcpGrpcAccessLog(tags: LogTags, filter: AccessLogFilterJson | undefined, options: AccessLogOptions = {}): AccessLogJson {
  return {
    name: TCP_GRPC_ACCESS_LOGGER,
    ...(filter && { filter }),
    typedConfig: { '@type': TypeUrl.TcpGrpcAccessLogConfig, commonConfig: commonConfig(tags, options) },
  };
}

/** envoy.access_loggers.http_grpc for an HTTP connection manager. */
export function httpGrpcAccessLog(tags: LogTags, filter: AccessLogFilterJson | undefined, options: AccessLogOptions = {}): AccessLogJson {
  return {
    name: HTTP_GRPC_ACCESS_LOGGER,
    ...(filter && { filter }),
    typedConfig: { '@type': TypeUrl.HttpGrpcAccessLogConfig, commonConfig: commonConfig(tags, options) },
  };
}

export const celFilter = (expression: string): AccessLogFilterJson => ({
  extensionFilter: { name: CEL_ACCESS_LOG_FILTER, typedConfig: { '@type': TypeUrl.CelExpressionFilter, expression } },
});

// ---------------------------------------------------------------------------
// The CEL conditions (Envoy's attributes: upstream.address is "IP:PORT" or "[IPv6]:PORT",
// absent when no upstream host was chosen; response.flags is the response-flag bit set).

/** The per-source cap closed it: tcp_proxy never chose an upstream host, and nothing set a flag. */
export const LIMITED_CEL = '!has(upstream.address) && response.flags == 0';

/**
 * One test per special range on Envoy's text of the upstream address ("IP:PORT", or
 * "[IPv6]:PORT" in RFC 5952 form, IPv4-mapped as "[::ffff:a.b.c.d]"): an IPv4 range as
 * decimal-octet prefixes, an IPv6 range as an anchored RE2 pattern on its first hextet
 * (so that "fc0::1", which is 0fc0::1, is not taken for fc00::/7).
 */
export type AddressTest = { readonly startsWith: string } | { readonly matches: string };

export function specialAddressTests(): AddressTest[] {
  const out: AddressTest[] = [];
  for (const { cidr } of SPECIAL_RANGES) {
    const [address, lengthText] = cidr.split('/') as [string, string];
    const length = Number(lengthText);
    if (!address.includes(':')) {
      const octets = address.split('.').map(Number);
      const whole = Math.floor(length / 8);
      const spare = length % 8;
      const fixed = octets.slice(0, whole).map((o) => `${o}.`).join('');
      if (spare === 0) out.push({ startsWith: fixed });
      else for (let v = octets[whole]!; v < octets[whole]! + 2 ** (8 - spare); v += 1) out.push({ startsWith: `${fixed}${v}.` });
    } else if (cidr === '::1/128') out.push({ startsWith: '[::1]:' });
    else if (cidr === '::/128') out.push({ startsWith: '[::]:' });
    else if (cidr === '::ffff:0:0/96') out.push({ startsWith: '[::ffff:' });
    else if (cidr === 'fc00::/7') out.push({ matches: '^\\[f[cd][0-9a-f]{2}:' });
    else if (cidr === 'fe80::/10') out.push({ matches: '^\\[fe[89ab][0-9a-f]:' });
    else throw new Error(`no address test for special range ${cidr}`);
  }
  return out;
}

/** The same tests as Envoy's CEL runs them, for the tests' model. */
export const addressPasses = (test: AddressTest, address: string): boolean =>
  'startsWith' in test ? address.startsWith(test.startsWith) : new RegExp(test.matches).test(address);

/** An RE2 (and JavaScript) alternation for the decimal numbers lo..hi, grouped by decade. */
function numberRange(lo: number, hi: number): string {
  const decades = new Map<number, number[]>();
  for (let v = lo; v <= hi; v += 1) {
    const list = decades.get(Math.floor(v / 10)) ?? [];
    list.push(v % 10);
    decades.set(Math.floor(v / 10), list);
  }
  return [...decades].map(([decade, digits]) => `${decade === 0 ? '' : decade}${digits.length === 1 ? digits[0] : `[${digits[0]}-${digits[digits.length - 1]}]`}`).join('|');
}

const escapeRe = (text: string): string => text.replace(/[.[\]()|*+?^$\\]/g, (c) => `\\${c}`);

/** One anchored pattern equivalent to specialAddressTests (octet runs folded into ranges): short, as it is repeated per chain. */
export function specialAddressRegex(): string {
  const parts: string[] = [];
  for (const { cidr } of SPECIAL_RANGES) {
    const [address, lengthText] = cidr.split('/') as [string, string];
    const length = Number(lengthText);
    if (address.includes(':')) continue;
    const octets = address.split('.').map(Number);
    const whole = Math.floor(length / 8);
    const fixed = octets.slice(0, whole).map((o) => `${o}\\.`).join('');
    const spare = length % 8;
    parts.push(spare === 0 ? fixed : `${fixed}(${numberRange(octets[whole]!, octets[whole]! + 2 ** (8 - spare) - 1)})\\.`);
  }
  for (const test of specialAddressTests()) {
    if ('matches' in test) parts.push(test.matches.slice(1));
    else if (test.startsWith.startsWith('[')) parts.push(escapeRe(test.startsWith));
  }
  return `^(${parts.join('|')})`;
}

let specialCel: string | undefined;
/** The upstream host is in a special range. */
export function specialUpstreamCel(): string {
  specialCel ??= `has(upstream.address) && upstream.address.matches(${JSON.stringify(specialAddressRegex())})`;
  return specialCel;
}

const responseFlag = (...flags: string[]): AccessLogFilterJson => ({ responseFlagFilter: { flags } });

/** Refused by the host: an upstream connection failure to a special address. */
export const forbiddenAddressFilter = (): AccessLogFilterJson => ({ andFilter: { filters: [responseFlag('UF'), celFilter(specialUpstreamCel())] } });
export const limitedFilter = (): AccessLogFilterJson => celFilter(LIMITED_CEL);
/** Neither of the refusals above: the connection was let through. */
export const allowedFilter = (): AccessLogFilterJson => celFilter(`!(${LIMITED_CEL}) && !(${specialUpstreamCel()})`);

// ---------------------------------------------------------------------------
// Attaching the loggers to a chain.

/** set_filter_state: egress.sni = the requested server name (skipped when there is none). */
export function sniFilterStateFilter(): TypedExtensionJson {
  return {
    name: SET_FILTER_STATE_FILTER,
    typedConfig: {
      '@type': TypeUrl.SetFilterState,
      onNewConnection: [
        {
          objectKey: SNI_FILTER_STATE_KEY,
          factoryKey: 'envoy.string',
          formatString: { textFormatSource: { inlineString: '%REQUESTED_SERVER_NAME%' }, omitEmptyValues: true },
          skipIfEmpty: true,
        },
      ],
    },
  };
}

/** What a chain's tcp_proxy logs. */
export type ChainLogPlan =
  | { readonly kind: 'refusal'; readonly reason: 'no-policy' | 'loop' }
  | { readonly kind: 'would-deny'; readonly auditPolicies: readonly string[] }
  | { readonly kind: 'forward'; readonly byName: boolean; readonly logAllPolicies: readonly string[] };

// The filters every forwarding chain repeats, shared (and immutable: see grpcServiceOf).
let filters: { limited: AccessLogFilterJson; forbiddenAddress: AccessLogFilterJson; allowed: AccessLogFilterJson; sni: TypedExtensionJson } | undefined;
const sharedFilters = () =>
  (filters ??= {
    limited: markImmutable(limitedFilter()),
    forbiddenAddress: markImmutable(forbiddenAddressFilter()),
    allowed: markImmutable(allowedFilter()),
    sni: markImmutable(sniFilterStateFilter()),
  });

export function chainAccessLogs(chainName: string, listener: string, plan: ChainLogPlan, options: AccessLogOptions = {}): AccessLogJson[] {
  const base = { listener, chain: chainName };
  switch (plan.kind) {
    case 'refusal':
      return [tcpGrpcAccessLog({ ...base, verdict: 'denied', reason: plan.reason }, undefined, options)];
    case 'would-deny':
      return [tcpGrpcAccessLog({ ...base, verdict: 'would-deny', reason: 'no-policy', policies: plan.auditPolicies }, undefined, options)];
    case 'forward':
      return [
        tcpGrpcAccessLog({ ...base, verdict: 'denied', reason: 'per-source-limit' }, sharedFilters().limited, options),
        ...(plan.byName ? [tcpGrpcAccessLog({ ...base, verdict: 'denied', reason: 'forbidden-address' }, sharedFilters().forbiddenAddress, options)] : []),
        ...(plan.logAllPolicies.length > 0 ? [tcpGrpcAccessLog({ ...base, verdict: 'allowed', policies: plan.logAllPolicies }, sharedFilters().allowed, options)] : []),
      ];
  }
}

/**
 * The chain with its access loggers on the tcp_proxy, and the SNI put into the filter state
 * first (the first filter, so it is set even when a later filter closes the connection).
 */
export function withChainAccessLogs(chain: FilterChainJson, logs: readonly AccessLogJson[]): FilterChainJson {
  if (logs.length === 0) return chain;
  const filters = chain.filters.map((filter) =>
    filter.name === TCP_PROXY_FILTER ? { ...filter, typedConfig: { ...filter.typedConfig, accessLog: [...logs] } } : filter,
  );
  return { ...chain, filters: [sharedFilters().sni, ...filters] };
}

/** What each chain of the hardened listener logs, from its name and the policies selecting its source. */
export function chainLogPlan(chainName: string, policiesOfSource: (label: string) => readonly Policy[]): ChainLogPlan | undefined {
  if (chainName === REJECT_FILTER_CHAIN) return { kind: 'refusal', reason: 'no-policy' };
  if (chainName === LOOP_REJECT_FILTER_CHAIN) return { kind: 'refusal', reason: 'loop' };
  const bar = chainName.indexOf('|');
  if (bar < 0) return undefined;
  const prefix = chainName.slice(0, bar);
  const policies = policiesOfSource(chainName.slice(bar + 1));
  if (prefix === AUDIT_CHAIN_PREFIX) return { kind: 'would-deny', auditPolicies: auditPolicies(policies) };
  if (prefix === NAME_CHAIN_PREFIX || prefix === ORIGINAL_DST_CHAIN_PREFIX) {
    const logAllPolicies = policies.filter((p) => p.log === 'all').map((p) => p.name).sort();
    return { kind: 'forward', byName: prefix === NAME_CHAIN_PREFIX, logAllPolicies };
  }
  return undefined;
}

// Logged chains, memoised per input chain object (the hardened listener caches its chains)
// and what the loggers say, and marked immutable so the fast encoder keeps their bytes.
let logged = new WeakMap<FilterChainJson, Map<string, FilterChainJson>>();

/** The hardened listener's chains with their access loggers. */
export function withEgressAccessLogs(
  chains: readonly FilterChainJson[],
  policies: readonly Policy[],
  listener: string,
  options: AccessLogOptions = {},
  /** policiesBySource(policies), when the caller has it already (the hardened matcher does). */
  bySourceGiven?: ReadonlyMap<string, readonly Policy[]>,
): FilterChainJson[] {
  let bySource: ReadonlyMap<string, readonly Policy[]> | undefined = bySourceGiven;
  const policiesOfSource = (label: string): readonly Policy[] => {
    bySource ??= policiesBySource(policies);
    return bySource.get(label === ANY_SOURCE_LABEL ? ANY_SOURCE : label) ?? [];
  };
  return chains.map((chain) => {
    // The same chain object and the same policy list object (policiesBySource keeps lists of
    // unchanged sources) as last time: the same logged chain, without building its plan.
    const bar = chain.name === undefined ? -1 : chain.name.indexOf('|');
    const selecting = bar < 0 ? undefined : policiesOfSource(chain.name!.slice(bar + 1));
    const known = selecting === undefined ? undefined : loggedByList.get(chain);
    if (known && known.policies === selecting && known.listener === listener && known.alsCluster === options.alsCluster) return known.result;
    const result = loggedChain(chain, listener, options, policiesOfSource);
    if (selecting !== undefined) loggedByList.set(chain, { policies: selecting, listener, alsCluster: options.alsCluster, result });
    return result;
  });
}

let loggedByList = new WeakMap<FilterChainJson, { policies: readonly Policy[]; listener: string; alsCluster: string | undefined; result: FilterChainJson }>();

/** Forgets the logged chains (benchmarks measure cold compiles with it). */
export function resetAccessLogCache(): void {
  loggedByList = new WeakMap();
  logged = new WeakMap();
}

function loggedChain(chain: FilterChainJson, listener: string, options: AccessLogOptions, policiesOfSource: (label: string) => readonly Policy[]): FilterChainJson {
  const plan = chain.name === undefined ? undefined : chainLogPlan(chain.name, policiesOfSource);
  if (!plan) return chain;
  const key = `${listener}|${options.alsCluster ?? ''}|${JSON.stringify(plan)}`;
  let byPlan = logged.get(chain);
  if (!byPlan) logged.set(chain, (byPlan = new Map()));
  let result = byPlan.get(key);
  if (!result) {
    if (byPlan.size > 64) byPlan.clear();
    result = markImmutable(withChainAccessLogs(chain, chainAccessLogs(chain.name!, listener, plan, options)));
    byPlan.set(key, result);
  }
  return result;
}
