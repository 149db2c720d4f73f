// Domain fronting on the forward proxy's CONNECT (serve --forward-proxy-inspect-connect,
// github/gh-aw-firewall #8878): a client CONNECTs to an allowed name, then speaks TLS
// inside the tunnel with the SNI of a name its allowlist does not hold. Without this the
// HTTP listener checks the authority only and tunnels the bytes unread.
//
// With it, an allowed CONNECT to a name on one of the CONNECT name ports (443 by default)
// is not sent to dynamic_forward_proxy_cluster but
// to the static cluster "forward_inspect|ID", whose one endpoint is the Envoy internal
// listener of the same name (Envoy ≥ 1.25, bootstrap extension envoy.bootstrap.internal_listener):
// the router terminates the CONNECT and writes the tunnel's bytes into that listener as a
// new, in-process connection. There tls_inspector reads the inner ClientHello and a
// server-name matcher takes the inner SNI:
//   - a name the source's allowlist allows → "forward_inspect|ID|allowed": sni_dynamic_forward_proxy
//     dials the INNER SNI on the CONNECT's port (the name the TLS is really for, an allowed one);
//   - anything else (another name, no SNI, not TLS) → "forward_inspect|ID|reject": closed
//     at reject_cluster, logged denied/no-policy.
// How the source reaches the internal listener: not by passing it through (the internal
// connection's peer is an internal address, and Envoy's filter-chain matchers do not read
// passed-through metadata), but by the route: each source's route configuration depends
// only on its allowlist, so the route names the internal listener of that allowlist and
// port, ID being a digest of the allowed server-name patterns and the port. Sources with the same allowlist share
// one internal listener; a source reaches only its own allowlist's.
// Audit: for a source an audit policy selects, another inner SNI is forwarded instead and
// logged would-deny with the audit policies (chain "forward_inspect|ID|would-deny", ID then
// also digesting the audit policies); no SNI stays refused (there is no name to dial).
// Not checked: that the inner SNI equals the CONNECT authority (both must be allowed, which
// is what the allowlist promises): Envoy's matchers compare an input with configured
// values, never two inputs, so under a wildcard pattern "the same name" has no value; the Host header inside the TLS; ECH (the outer SNI is
// what tls_inspector sees).
import { createHash } from 'node:crypto';
import { markImmutable } from '../envoy/fastEncode.js';
import type { ClusterJson, FilterChainJson, ListenerJson, TypedExtensionJson } from '../envoy/resources.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import { chainAccessLogs, withChainAccessLogs, type AccessLogOptions } from './accessLog.js';
import { chainAction } from './chains.js';
import {
  FORWARD_HTTP_LISTENER_NAME,
  FORWARD_INSPECT_PREFIX,
  FORWARD_INSPECT_REJECTED_STAT_PREFIX,
  FORWARD_INSPECT_STAT_PREFIX,
} from './forwardNames.js';
import { dnsCacheConfig, type DnsCacheOptions } from './nameUpstream.js';
import { MatcherInputName, NAME_UPSTREAM_CLUSTER, REJECT_CLUSTER, SERVER_NAME_MATCHER_NAME, SNI_DYNAMIC_FORWARD_PROXY_FILTER, TLS_INSPECTOR_LISTENER_FILTER } from './names.js';
import { tcpProxyFilter } from './tcpProxy.js';
import { BoundedMemo } from './boundedMemo.js';

/** "forward_inspect|ID": the internal listener and its cluster for one allowlist's server names (sorted, as allowedNames gives them) and a CONNECT port. */
export function inspectName(names: readonly string[], port: number, audit: readonly string[] = []): string {
  // A lone policy's names array is shared across compiles (allowedNames): digest it once.
  const key = `${port}|${audit.join(',')}`;
  let byPort = nameDigests.get(names);
  const known = byPort?.get(key);
  if (known) return known;
  const name = `${FORWARD_INSPECT_PREFIX}|${createHash('sha256').update(`${port}\n${audit.join(',')}\n${names.join('\n')}`).digest('hex').slice(0, 16)}`;
  if (!byPort) nameDigests.set(names, (byPort = new Map()));
  if (byPort.size > 64) byPort.clear();
  byPort.set(key, name);
  return name;
}
const nameDigests = new WeakMap<readonly string[], Map<string, string>>();

// Listeners and clusters memoised on what they are made of (marked immutable, so a
// recompile re-encodes none of them), bounded.
const MAX_MEMO = 20_000;
const built = new BoundedMemo<ListenerJson | ClusterJson>(MAX_MEMO);
const memo = <T extends ListenerJson | ClusterJson>(key: string, build: () => T): T => built.get(key, build) as T;

/** sni_dynamic_forward_proxy dialling the SNI on `port` (the CONNECT's, which the route matched). */
function sniDialler(dnsCache: DnsCacheOptions, port: number): TypedExtensionJson {
  return { name: SNI_DYNAMIC_FORWARD_PROXY_FILTER, typedConfig: { '@type': TypeUrl.SniDynamicForwardProxy, dnsCacheConfig: dnsCacheConfig(dnsCache), portValue: port } };
}

export const inspectAllowedChain = (name: string): string => `${name}|allowed`;
export const inspectRejectChain = (name: string): string => `${name}|reject`;
export const inspectWouldDenyChain = (name: string): string => `${name}|would-deny`;

const SERVER_NAME: TypedExtensionJson = { name: MatcherInputName.serverName, typedConfig: { '@type': TypeUrl.ServerNameInput } };

export interface InspectContext {
  readonly dnsCache: DnsCacheOptions;
  readonly accessLog?: AccessLogOptions | false;
}

/** The internal listener checking the inner SNI of the tunnels to `port` of sources allowed `names` (and audited by `audit`). */
export function inspectListener(names: readonly string[], port: number, context: InspectContext, audit: readonly string[] = []): ListenerJson {
  const name = inspectName(names, port, audit);
  const logKey = context.accessLog === false ? 'off' : (context.accessLog?.alsCluster ?? '');
  return memo(`L|${name}|${JSON.stringify(context.dnsCache)}|${logKey}`, () => buildListener(name, names, port, context, audit));
}

function buildListener(name: string, names: readonly string[], port: number, context: InspectContext, audit: readonly string[]): ListenerJson {
  const wouldDeny = inspectWouldDenyChain(name);
  const wouldDenyChain: FilterChainJson = {
    name: wouldDeny,
    filters: [sniDialler(context.dnsCache, port), tcpProxyFilter(NAME_UPSTREAM_CLUSTER, FORWARD_INSPECT_STAT_PREFIX)],
  };
  const allowed = inspectAllowedChain(name);
  const rejectName = inspectRejectChain(name);
  const bare: FilterChainJson = { name: rejectName, filters: [tcpProxyFilter(REJECT_CLUSTER, FORWARD_INSPECT_REJECTED_STAT_PREFIX)] };
  // The CONNECT came in on forward_http: the denial is that listener's, on this chain.
  const reject =
    context.accessLog === false
      ? bare
      : withChainAccessLogs(bare, chainAccessLogs(rejectName, FORWARD_HTTP_LISTENER_NAME, { kind: 'refusal', reason: 'no-policy' }, context.accessLog ?? {}));
  return markImmutable<ListenerJson>({
    name,
    internalListener: {},
    listenerFilters: [{ name: TLS_INSPECTOR_LISTENER_FILTER, typedConfig: { '@type': TypeUrl.TlsInspector } }],
    filterChains: [
      reject,
      {
        name: allowed,
        // Dial the inner SNI on the port the CONNECT named (the only one this listener is used for).
        filters: [sniDialler(context.dnsCache, port), tcpProxyFilter(NAME_UPSTREAM_CLUSTER, FORWARD_INSPECT_STAT_PREFIX)],
      },
      ...(audit.length === 0
        ? []
        : [
            context.accessLog === false
              ? wouldDenyChain
              : withChainAccessLogs(wouldDenyChain, chainAccessLogs(wouldDeny, FORWARD_HTTP_LISTENER_NAME, { kind: 'would-deny', auditPolicies: audit }, context.accessLog ?? {})),
          ]),
    ],
    filterChainMatcher: {
      matcherTree: {
        input: SERVER_NAME,
        customMatch: {
          name: SERVER_NAME_MATCHER_NAME,
          typedConfig: {
            '@type': TypeUrl.ServerNameMatcher,
            domainMatchers: [
              { domains: [...names], onMatch: { action: chainAction(allowed) } },
              // Audit: any other SNI ("*": never an absent one) is forwarded, logged would-deny.
              ...(audit.length > 0 ? [{ domains: ['*'], onMatch: { action: chainAction(wouldDeny) } }] : []),
            ],
          },
        },
      },
      // No SNI, not TLS, or a name the allowlist does not hold.
      onNoMatch: { action: chainAction(rejectName) },
    },
  });
}

/** The static cluster whose one endpoint is that internal listener. */
export function inspectCluster(names: readonly string[], port: number, audit: readonly string[] = []): ClusterJson {
  const name = inspectName(names, port, audit);
  return memo(`C|${name}`, () => markImmutable<ClusterJson>({
    name,
    type: 'STATIC',
    connectTimeout: '5s',
    loadAssignment: { clusterName: name, endpoints: [{ lbEndpoints: [{ endpoint: { address: { envoyInternalAddress: { serverListenerName: name } } } }] }] },
  }));
}
