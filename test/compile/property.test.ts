// The compiler's contract, checked on random policy sets through the model of
// Envoy's matching: for every connection, the chain Envoy would pick forwards it
// iff the policies allow it; Envoy would accept the listener; every resource
// survives Envoy's own protos.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileEgress } from '../../src/compile/compileEgress.js';
import { ORIGINAL_DST_CLUSTER } from '../../src/compile/names.js';
import { tcpProxyCluster } from '../../src/compile/tcpProxy.js';
import { decodeStrictToJson, encodeProtoJson } from '../../src/envoy/codec.js';
import { findFilterChainConflicts, selectFilterChain } from '../../src/envoy/filterChainMatch.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { validateResource } from '../../src/envoy/validateRules.js';
import { intendedVerdict } from '../../src/policy/verdict.js';
import { policiesAndConnections, policySet } from './arbitraries.js';

const SEED = Number(process.env['PROPERTY_SEED'] ?? 20240607);
const RUNS = Number(process.env['PROPERTY_RUNS'] ?? 600);

describe('compileEgress, property', () => {
  it("Envoy's choice forwards a connection iff the policies allow it", () => {
    fc.assert(
      fc.property(policiesAndConnections, ([policies, connections]) => {
        const listener = compileEgress(policies).listeners[0]!;
        for (const connection of connections) {
          const chain = selectFilterChain(listener, connection);
          assert.ok(chain, 'the default chain catches everything else');
          const envoy = tcpProxyCluster(chain) === ORIGINAL_DST_CLUSTER ? 'allow' : 'deny';
          const intended = intendedVerdict(policies, connection).verdict;
          assert.equal(envoy, intended, `${JSON.stringify(connection)} picked "${chain.name}"`);
        }
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('Envoy would accept the listener: no duplicate or overlapping matches, unique chain names', () => {
    fc.assert(
      fc.property(policySet, (policies) => {
        const listener = compileEgress(policies).listeners[0]!;
        assert.deepEqual(findFilterChainConflicts(listener), []);
        const names = listener.filterChains.map((c) => c.name);
        assert.equal(new Set(names).size, names.length);
      }),
      { seed: SEED + 1, numRuns: RUNS },
    );
  });

  it("every resource encodes strictly against Envoy's protos, decodes back to the same bytes and keeps their PGV rules", () => {
    fc.assert(
      fc.property(policySet, (policies) => {
        const { listeners, clusters } = compileEgress(policies);
        const resources = [...listeners.map((r) => [TypeUrl.Listener, r] as const), ...clusters.map((r) => [TypeUrl.Cluster, r] as const)];
        for (const [typeUrl, resource] of resources) {
          const bytes = encodeProtoJson(typeUrl, resource as unknown as Record<string, unknown>);
          const decoded = decodeStrictToJson(typeUrl, bytes);
          assert.deepEqual(encodeProtoJson(typeUrl, decoded), bytes);
          assert.deepEqual(validateResource(typeUrl, bytes), [], `PGV rules of ${typeUrl}`);
        }
      }),
      { seed: SEED + 2, numRuns: Math.ceil(RUNS / 3) },
    );
  });

  it('the same policies in any order compile to the same resources', () => {
    fc.assert(
      fc.property(policySet.chain((p) => fc.tuple(fc.constant(p), fc.shuffledSubarray(p, { minLength: p.length, maxLength: p.length }))), ([policies, shuffled]) => {
        assert.equal(JSON.stringify(compileEgress(shuffled)), JSON.stringify(compileEgress(policies)));
      }),
      { seed: SEED + 3, numRuns: Math.ceil(RUNS / 3) },
    );
  });
});
