// The compiler (profile "seed") on named examples: the seed's GitHub allowlist (seed 002 §6.6), the
// wildcard/exact overlap that a naive layout gets wrong, cidr rules meeting SNI
// rules, IPv6, the empty allowlist, determinism.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileEgress } from '../../src/compile/compileEgress.js';
import { ORIGINAL_DST_CLUSTER, REJECT_CLUSTER } from '../../src/compile/names.js';
import { tcpProxyCluster, tcpProxyFilter } from '../../src/compile/tcpProxy.js';
import { encodeProtoJson } from '../../src/envoy/codec.js';
import { findFilterChainConflicts, selectFilterChain } from '../../src/envoy/filterChainMatch.js';
import type { FilterChainJson, ListenerJson } from '../../src/envoy/resources.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { formatViolation, validateResource } from '../../src/envoy/validateRules.js';
import type { Connection, Policy } from '../../src/policy/model.js';
import { intendedVerdict } from '../../src/policy/verdict.js';

const SEED = { profile: 'seed' } as const;
/** The chains the allowlist adds: all but the loop guard's. */
const allowChains = (listener: ListenerJson): FilterChainJson[] => listener.filterChains.filter((c) => c.name !== 'reject_loop');

const verdictOf = (listener: ListenerJson, connection: Connection): 'allow' | 'deny' => {
  const chain = selectFilterChain(listener, connection);
  return chain && tcpProxyCluster(chain) === ORIGINAL_DST_CLUSTER ? 'allow' : 'deny';
};

/** Every resource the compiler makes keeps Envoy's protoc-gen-validate rules (Envoy NACKs otherwise). */
function expectValid({ listeners, clusters, routes = [] }: Pick<ReturnType<typeof compileEgress>, 'listeners' | 'clusters' | 'routes'>): void {
  for (const l of listeners) assert.deepEqual(validateResource(TypeUrl.Listener, l as unknown as Record<string, unknown>).map(formatViolation), []);
  for (const c of clusters) assert.deepEqual(validateResource(TypeUrl.Cluster, c as unknown as Record<string, unknown>).map(formatViolation), []);
  for (const r of routes) assert.deepEqual(validateResource(TypeUrl.RouteConfiguration, r as unknown as Record<string, unknown>).map(formatViolation), []);
}

/** Asserts Envoy's verdict and the intended one agree with `expected` for each connection. */
function expectVerdicts(policies: Policy[], cases: [Connection, 'allow' | 'deny'][]): void {
  const compiled = compileEgress(policies, SEED);
  expectValid(compiled);
  const listener = compiled.listeners[0]!;
  assert.deepEqual(findFilterChainConflicts(listener), []);
  for (const [connection, expected] of cases) {
    assert.equal(intendedVerdict(policies, connection).verdict, expected, `intended, ${JSON.stringify(connection)}`);
    assert.equal(verdictOf(listener, connection), expected, `Envoy, ${JSON.stringify(connection)}`);
  }
}

const tls = (sourceIp: string, serverName: string, destinationIp = '140.82.112.3', destinationPort = 443): Connection => ({
  sourceIp, destinationIp, destinationPort, serverName,
});
const tcp = (sourceIp: string, destinationIp: string, destinationPort: number): Connection => ({ sourceIp, destinationIp, destinationPort });

const seedPolicy: Policy = { name: 'github', sources: ['172.31.0.0/16'], allow: { sni: ['github.com', 'www.github.com'] } };

describe('compileEgress: the seed example (seed 002 §6.6)', () => {
  const { listeners, clusters } = compileEgress([seedPolicy], SEED);
  const listener = listeners[0]!;

  it('has the listener of §6.6', () => {
    assert.equal(listeners.length, 1);
    assert.equal(listener.name, 'egress_tproxy');
    assert.deepEqual(listener.address, { socketAddress: { address: '0.0.0.0', portValue: 15001 } });
    assert.equal(listener.transparent, true);
    assert.equal(listener.trafficDirection, 'OUTBOUND');
    assert.deepEqual(listener.listenerFilters, [
      { name: 'envoy.filters.listener.original_dst', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst' } },
      { name: 'envoy.filters.listener.tls_inspector', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' } },
    ]);
    // Beyond §6.6: server-first plain TCP is matched after the inspector's timeout instead of closed.
    assert.equal(listener.continueOnListenerFiltersTimeout, true);
  });

  it('has the allowing chain of §6.6, limited to the policy sources', () => {
    assert.equal(allowChains(listener).length, 1);
    const allow = allowChains(listener)[0]!;
    assert.deepEqual(allow.filterChainMatch, {
      serverNames: ['github.com', 'www.github.com'],
      sourcePrefixRanges: [{ addressPrefix: '172.31.0.0', prefixLen: 16 }],
    });
    assert.deepEqual(allow.filters, [
      {
        name: 'envoy.filters.network.tcp_proxy',
        typedConfig: {
          '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
          statPrefix: 'allowed_original_dst',
          cluster: 'original_dst_cluster',
        },
      },
    ]);
  });

  it('has the chain of §6.6 exactly when the policy has no sources', () => {
    const { sources: _sources, ...unrestricted } = seedPolicy;
    const chains = allowChains(compileEgress([unrestricted], SEED).listeners[0]!);
    assert.deepEqual(chains.map((c) => c.filterChainMatch), [{ serverNames: ['github.com', 'www.github.com'] }]);
  });

  it('rejects everything else through the default chain of §6.6', () => {
    assert.deepEqual(listener.defaultFilterChain?.filters, [
      {
        name: 'envoy.filters.network.tcp_proxy',
        typedConfig: {
          '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
          statPrefix: 'rejected',
          cluster: 'reject_cluster',
        },
      },
    ]);
    assert.equal(listener.defaultFilterChain?.filterChainMatch, undefined);
  });

  it('refuses the listener\'s own port first, on any address (a guard beyond §6.6)', () => {
    const loop = listener.filterChains.find((c) => c.name === 'reject_loop');
    assert.deepEqual(loop?.filterChainMatch, { destinationPort: 15001 });
    assert.equal(tcpProxyCluster(loop!), REJECT_CLUSTER);
    assert.equal(selectFilterChain(listener, tls('172.31.0.2', 'github.com', '172.31.0.1', 15001))?.name, 'reject_loop');
  });

  it('has the clusters of §6.6, with circuit breakers raised beyond the defaults', () => {
    assert.deepEqual(clusters, [
      {
        name: 'original_dst_cluster',
        type: 'ORIGINAL_DST',
        lbPolicy: 'CLUSTER_PROVIDED',
        connectTimeout: '10s',
        circuitBreakers: { thresholds: [{ priority: 'DEFAULT', maxConnections: 1_000_000, maxPendingRequests: 1_000_000, maxRequests: 1_000_000, maxRetries: 1_000 }] },
      },
      {
        name: 'reject_cluster',
        type: 'STATIC',
        connectTimeout: '1s',
        loadAssignment: {
          clusterName: 'reject_cluster',
          endpoints: [{ lbEndpoints: [{ endpoint: { address: { socketAddress: { address: '127.0.0.1', portValue: 1 } } } }] }],
        },
      },
    ]);
  });

  it('behaves as §6.10 says', () => {
    expectVerdicts([seedPolicy], [
      [tls('172.31.0.2', 'www.github.com'), 'allow'],
      [tls('172.31.0.2', 'github.com'), 'allow'],
      [tls('172.31.0.2', 'example.com'), 'deny'],
      [tls('172.31.0.2', 'api.github.com'), 'deny'],
      [tls('10.0.0.2', 'github.com'), 'deny'],
      [tcp('172.31.0.2', '140.82.112.3', 443), 'deny'],
    ]);
  });
});

describe('compileEgress: exact names under wildcards of other policies', () => {
  const a: Policy = { name: 'A', sources: ['172.31.0.4/30'], allow: { sni: ['api.github.com'] } };
  const b: Policy = { name: 'B', sources: ['172.31.0.8/30'], allow: { sni: ['*.github.com'] } };

  it("allows B's sources to api.github.com and denies A's sources x.github.com", () => {
    expectVerdicts([a, b], [
      [tls('172.31.0.9', 'api.github.com'), 'allow'],
      [tls('172.31.0.9', 'x.github.com'), 'allow'],
      [tls('172.31.0.9', 'github.com'), 'deny'],
      [tls('172.31.0.5', 'api.github.com'), 'allow'],
      [tls('172.31.0.5', 'x.github.com'), 'deny'],
      [tls('172.31.0.1', 'api.github.com'), 'deny'],
    ]);
  });

  it('a naive one-chain-per-policy layout gets it wrong under Envoy matching', () => {
    const naive: ListenerJson = {
      ...compileEgress([], SEED).listeners[0]!,
      filterChains: [a, b].map((p): FilterChainJson => ({
        name: p.name,
        filterChainMatch: {
          serverNames: [...p.allow.sni],
          sourcePrefixRanges: (p.sources ?? []).map((c) => ({ addressPrefix: c.split('/')[0]!, prefixLen: Number(c.split('/')[1]) })),
        },
        filters: [tcpProxyFilter(ORIGINAL_DST_CLUSTER, 'allowed_original_dst')],
      })),
    };
    assert.deepEqual(findFilterChainConflicts(naive), []);
    const connection = tls('172.31.0.9', 'api.github.com');
    assert.equal(intendedVerdict([a, b], connection).verdict, 'allow');
    // Envoy settles on the api.github.com branch, B's source is not there, and it does not go back to *.github.com.
    assert.equal(selectFilterChain(naive, connection)?.name, 'reject');
    assert.equal(verdictOf(naive, connection), 'deny');
  });
});

describe('compileEgress: cidr rules meeting SNI rules', () => {
  const ssh: Policy = { name: 'git-ssh', sources: ['10.0.0.0/24'], allow: { sni: [], cidrs: [{ cidr: '140.82.112.0/20', ports: [22] }] } };
  const web: Policy = { name: 'web', sources: ['10.0.1.0/24'], allow: { sni: ['*.github.com'], cidrs: [{ cidr: '140.82.0.0/16' }] } };
  const anyone: Policy = { name: 'pkg', allow: { sni: ['pypi.org'] } };
  const policies = [ssh, web, anyone];

  it('gives each (port, destination, name, source) the union of the policies', () => {
    expectVerdicts(policies, [
      [tcp('10.0.0.7', '140.82.112.3', 22), 'allow'],
      [tcp('10.0.0.7', '140.82.112.3', 443), 'deny'],
      [tcp('10.0.1.7', '140.82.112.3', 22), 'allow'],
      [tcp('10.0.1.7', '140.82.200.3', 5432), 'allow'],
      [tcp('10.0.0.7', '140.82.200.3', 22), 'deny'],
      [tls('10.0.1.7', 'x.github.com', '192.0.2.1'), 'allow'],
      [tls('10.0.0.7', 'x.github.com', '192.0.2.1'), 'deny'],
      [tls('10.0.0.7', 'x.github.com', '140.82.112.3', 22), 'allow'],
      [tls('192.0.2.77', 'pypi.org', '140.82.112.3', 22), 'allow'],
      [tls('192.0.2.77', 'pypi.org', '151.101.0.223', 443), 'allow'],
      [tls('192.0.2.77', 'x.github.com', '140.82.112.3', 22), 'deny'],
    ]);
  });
});

describe('compileEgress: IPv6', () => {
  const v6: Policy = {
    name: 'v6',
    sources: ['fd00:1::/64', '172.31.0.0/16'],
    allow: { sni: ['*.example.com'], cidrs: [{ cidr: '2001:db8::/32', ports: [443] }, { cidr: '::/0', ports: [53] }] },
  };

  it('matches IPv6 sources and destinations, and splits ::/0 so no range repeats the catch-all', () => {
    expectVerdicts([v6], [
      [tls('fd00:1::5', 'www.example.com', '2001:db8::1'), 'allow'],
      [tcp('fd00:1::5', '2001:db8::1', 443), 'allow'],
      [tcp('fd00:1::5', '2001:db8::1', 80), 'deny'],
      [tcp('fd00:1::5', '2606:4700::1', 53), 'allow'],
      [tcp('fd00:2::5', '2606:4700::1', 53), 'deny'],
      [tcp('172.31.0.5', '192.0.2.1', 53), 'deny'],
      [tls('172.31.0.5', 'www.example.com', '192.0.2.1'), 'allow'],
    ]);
    const prefixes = compileEgress([v6], SEED).listeners[0]!.filterChains.flatMap((c) => c.filterChainMatch?.prefixRanges ?? []);
    assert.ok(prefixes.every((p) => p.prefixLen > 0));
  });
});

describe('compileEgress: edge cases', () => {
  it('an empty allowlist is only the loop guard and the default reject chain', () => {
    const { listeners, clusters } = compileEgress([], SEED);
    assert.deepEqual(allowChains(listeners[0]!), []);
    assert.equal(listeners[0]!.defaultFilterChain?.name, 'reject');
    assert.equal(tcpProxyCluster(listeners[0]!.defaultFilterChain!), REJECT_CLUSTER);
    assert.deepEqual(clusters.map((c) => c.name), ['original_dst_cluster', 'reject_cluster']);
    assert.deepEqual(findFilterChainConflicts(listeners[0]!), []);
    assert.equal(verdictOf(listeners[0]!, tls('10.0.0.1', 'github.com')), 'deny');
  });

  it('takes listener options', () => {
    const listener = compileEgress([seedPolicy], { ...SEED, listenerName: 'egress_alt', port: 15006, ipv6: true }).listeners[0]!;
    assert.equal(listener.name, 'egress_alt');
    assert.deepEqual(listener.address, { socketAddress: { address: '0.0.0.0', portValue: 15006 } });
    assert.deepEqual(listener.additionalAddresses, [{ address: { socketAddress: { address: '::', portValue: 15006 } } }]);
    encodeProtoJson(TypeUrl.Listener, listener as unknown as Record<string, unknown>);
    assert.deepEqual(validateResource(TypeUrl.Listener, listener as unknown as Record<string, unknown>), []);
  });

  it('is deterministic: policy order does not change a byte', () => {
    const policies: Policy[] = [
      seedPolicy,
      { name: 'b', sources: ['172.31.0.8/30'], allow: { sni: ['*.github.com'], cidrs: [{ cidr: '10.0.0.0/8', ports: [22, 443] }] } },
      { name: 'a', allow: { sni: ['api.github.com', 'pypi.org'] } },
    ];
    const encode = (p: Policy[]): string => {
      const { listeners, clusters } = compileEgress(p, SEED);
      expectValid({ listeners, clusters });
      return Buffer.concat([
        ...listeners.map((l) => encodeProtoJson(TypeUrl.Listener, l as unknown as Record<string, unknown>)),
        ...clusters.map((c) => encodeProtoJson(TypeUrl.Cluster, c as unknown as Record<string, unknown>)),
      ]).toString('hex');
    };
    const reference = encode(policies);
    assert.equal(encode([...policies].reverse()), reference);
    assert.equal(encode([policies[1]!, policies[2]!, policies[0]!]), reference);
  });

  it('names chains uniquely and readably', () => {
    const chains = allowChains(compileEgress([
      { name: 'A', sources: ['172.31.0.4/30'], allow: { sni: ['api.github.com'] } },
      { name: 'B', sources: ['172.31.0.8/30'], allow: { sni: ['*.github.com'] } },
    ], SEED).listeners[0]!);
    assert.deepEqual(chains.map((c) => c.name), ['allow|B|port=*|dst=*|sni=*.github.com,+1', 'allow|A|port=*|dst=*|sni=api.github.com']);
  });
});
