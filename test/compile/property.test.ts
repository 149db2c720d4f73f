// The compiler's contract, checked on random policy sets through the models of
// Envoy's matching, in both profiles:
//   seed: the chain Envoy picks (filter_chain_match) forwards a connection iff the
//     policies allow it and it is not to the listener's own port;
//   hardened: the chain filter_chain_matcher picks is exactly the intended route (the
//     refusal reason, or the upstream: the name or the original destination), belongs to
//     the most specific source range holding the source (its own connection cap), and is
//     reached without any fall-back that differs across Envoy releases.
// Envoy would accept every listener; every resource survives Envoy's own protos.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileEgress, type CompileProfile } from '../../src/compile/compileEgress.js';
import { EGRESS_LISTENER_PORT, NAME_UPSTREAM_CLUSTER, ORIGINAL_DST_CLUSTER } from '../../src/compile/names.js';
import { intendedRoute } from '../../src/compile/route.js';
import { tcpProxyCluster } from '../../src/compile/tcpProxy.js';
import { decodeStrictToJson, encodeProtoJson } from '../../src/envoy/codec.js';
import { findFilterChainConflicts, selectFilterChain } from '../../src/envoy/filterChainMatch.js';
import { findMatcherProblems, selectByMatcher } from '../../src/envoy/filterChainMatcher.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { validateResource } from '../../src/envoy/validateRules.js';
import type { Connection, Policy } from '../../src/policy/model.js';
import { intendedVerdict } from '../../src/policy/verdict.js';
import { forwardChainLabel } from './sourceLabel.js';
import { policiesAndConnections, policySet } from './arbitraries.js';

const SEED = Number(process.env['PROPERTY_SEED'] ?? 20240607);
const RUNS = Number(process.env['PROPERTY_RUNS'] ?? 600);

function checkHardened(policies: readonly Policy[], connection: Connection, maxConnectionsPerSource?: number): void {
  const listener = compileEgress(policies, maxConnectionsPerSource === undefined ? {} : { maxConnectionsPerSource }).listeners[0]!;
  const { chain, fellThrough, path } = selectByMatcher(listener, connection);
  const at = `${JSON.stringify(connection)} via ${path.join(' / ')}`;
  assert.ok(chain, `the matcher always ends in a chain: ${at}`);
  assert.equal(fellThrough, false, `no fall-back needed: ${at}`);
  const route = intendedRoute(policies, connection, EGRESS_LISTENER_PORT);
  const cluster = tcpProxyCluster(chain);
  if (route.verdict === 'deny') {
    assert.equal(chain.name, route.reason === 'loop' ? 'reject_loop' : 'reject', at);
    return;
  }
  assert.equal(cluster, route.upstream === 'name' ? NAME_UPSTREAM_CLUSTER : ORIGINAL_DST_CLUSTER, at);
  const prefix = route.upstream === 'name' ? 'name' : 'original_dst';
  // The source's own chain (its connection cap), or with cap 0 "*"'s unless a sourced "log": "all" policy selects it.
  assert.equal(chain.name, `${prefix}|${forwardChainLabel(policies, connection.sourceIp, maxConnectionsPerSource ?? 512)}`, at);
}

function checkSeed(policies: readonly Policy[], connection: Connection): void {
  const listener = compileEgress(policies, { profile: 'seed' }).listeners[0]!;
  const chain = selectFilterChain(listener, connection);
  assert.ok(chain, 'the default chain catches everything else');
  const envoy = tcpProxyCluster(chain) === ORIGINAL_DST_CLUSTER ? 'allow' : 'deny';
  const intended = connection.destinationPort === EGRESS_LISTENER_PORT ? 'deny' : intendedVerdict(policies, connection).verdict;
  assert.equal(envoy, intended, `${JSON.stringify(connection)} picked "${chain.name}"`);
}

for (const profile of ['hardened', 'seed'] as const satisfies readonly CompileProfile[]) {
  const offset = profile === 'hardened' ? 0 : 10;
  describe(`compileEgress, property, profile ${profile}`, () => {
    it(profile === 'hardened' ? "Envoy's choice is the intended route, on the source's own chain" : "Envoy's choice forwards a connection iff the policies allow it", () => {
      fc.assert(
        fc.property(policiesAndConnections, ([policies, connections]) => {
          for (const connection of connections) (profile === 'hardened' ? checkHardened : checkSeed)(policies, connection);
        }),
        { seed: SEED + offset, numRuns: RUNS },
      );
    });

    it('Envoy would accept the listener', () => {
      fc.assert(
        fc.property(policySet, (policies) => {
          const listener = compileEgress(policies, { profile }).listeners[0]!;
          if (profile === 'hardened') assert.deepEqual(findMatcherProblems(listener), []);
          else assert.deepEqual(findFilterChainConflicts(listener), []);
          const names = listener.filterChains.map((c) => c.name);
          assert.equal(new Set(names).size, names.length);
        }),
        { seed: SEED + offset + 1, numRuns: RUNS },
      );
    });

    it("every resource encodes strictly against Envoy's protos, decodes back to the same bytes and keeps their PGV rules", () => {
      fc.assert(
        fc.property(policySet, (policies) => {
          const { listeners, clusters, routes = [] } = compileEgress(policies, { profile });
          const resources = [
            ...listeners.map((r) => [TypeUrl.Listener, r] as const),
            ...clusters.map((r) => [TypeUrl.Cluster, r] as const),
            // The port-80 route tables, served over RDS.
            ...routes.map((r) => [TypeUrl.RouteConfiguration, r] as const),
          ];
          if (profile === 'hardened') assert.ok(routes.length > 0);
          for (const [typeUrl, resource] of resources) {
            const bytes = encodeProtoJson(typeUrl, resource as unknown as Record<string, unknown>);
            const decoded = decodeStrictToJson(typeUrl, bytes);
            assert.deepEqual(encodeProtoJson(typeUrl, decoded), bytes);
            assert.deepEqual(validateResource(typeUrl, bytes), [], `PGV rules of ${typeUrl}`);
          }
        }),
        { seed: SEED + offset + 2, numRuns: Math.ceil(RUNS / 3) },
      );
    });

    it('the same policies in any order compile to the same resources', () => {
      fc.assert(
        fc.property(policySet.chain((p) => fc.tuple(fc.constant(p), fc.shuffledSubarray(p, { minLength: p.length, maxLength: p.length }))), ([policies, shuffled]) => {
          assert.equal(JSON.stringify(compileEgress(shuffled, { profile })), JSON.stringify(compileEgress(policies, { profile })));
        }),
        { seed: SEED + offset + 3, numRuns: Math.ceil(RUNS / 3) },
      );
    });
  });
}

// serve --max-connections-per-source 0: no connection_limit, the forwarding chains shared
// unless a sourced "log": "all" policy (marked here on every fourth policy, from a random
// start) selects the source.
describe('compileEgress, property, profile hardened, --max-connections-per-source 0', () => {
  const logging = (policies: readonly Policy[], k: number): Policy[] => policies.map((p, i) => (i % 4 === k ? { ...p, log: 'all' as const } : p));
  it("Envoy's choice is the intended route, on the shared chain or the logged source's own", () => {
    fc.assert(
      fc.property(policiesAndConnections, fc.nat({ max: 4 }), ([policies, connections], k) => {
        const logged = logging(policies, k);
        for (const connection of connections) checkHardened(logged, connection, 0);
      }),
      { seed: SEED + 20, numRuns: Math.ceil(RUNS / 2) },
    );
  });

  it('Envoy would accept the listener: no connection_limit, unique chain names, strict protos and PGV rules', () => {
    fc.assert(
      fc.property(policySet, fc.nat({ max: 4 }), (policies, k) => {
        const listener = compileEgress(logging(policies, k), { maxConnectionsPerSource: 0 }).listeners[0]!;
        assert.deepEqual(findMatcherProblems(listener), []);
        const names = listener.filterChains.map((c) => c.name);
        assert.equal(new Set(names).size, names.length);
        assert.ok(listener.filterChains.every((c) => c.filters.every((f) => f.typedConfig['@type'] !== TypeUrl.ConnectionLimit)));
        const bytes = encodeProtoJson(TypeUrl.Listener, listener as unknown as Record<string, unknown>);
        assert.deepEqual(encodeProtoJson(TypeUrl.Listener, decodeStrictToJson(TypeUrl.Listener, bytes)), bytes);
        assert.deepEqual(validateResource(TypeUrl.Listener, bytes), []);
      }),
      { seed: SEED + 21, numRuns: Math.ceil(RUNS / 3) },
    );
  });
});
