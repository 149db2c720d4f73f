// The fast encoder gives the generic encoder's bytes (protobufjs fromJson + encode), on
// random compiled listeners and clusters of both profiles, with and without memoised
// fragments; and it is as strict about unknown fields.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileEgress } from '../../src/compile/compileEgress.js';
import { encodeProtoJson, type ProtoJson } from '../../src/envoy/codec.js';
import { fastEncodeProtoJson, markImmutable } from '../../src/envoy/fastEncode.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { policySet } from '../compile/arbitraries.js';

const SEED = Number(process.env['PROPERTY_SEED'] ?? 20240607);
const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

describe('fastEncodeProtoJson', () => {
  it('encodes every compiled resource byte for byte as the generic encoder', () => {
    fc.assert(
      fc.property(policySet, fc.boolean(), fc.integer({ min: 1, max: 2 ** 31 }), fc.boolean(), (policies, seed, max, ipv6) => {
        const compiled = compileEgress(policies, { profile: seed ? 'seed' : 'hardened', maxConnectionsPerSource: max, ipv6, dnsCache: { resolvers: ['10.0.0.2', '[2001:db8::53]:5353'], maxHosts: max } });
        for (const listener of compiled.listeners) {
          // Twice: the second time memoised fragments are copied, not walked.
          for (let round = 0; round < 2; round++) {
            assert.ok(same(fastEncodeProtoJson(TypeUrl.Listener, listener), encodeProtoJson(TypeUrl.Listener, listener as unknown as ProtoJson)), `listener, round ${round}`);
          }
        }
        for (const cluster of compiled.clusters) {
          assert.ok(same(fastEncodeProtoJson(TypeUrl.Cluster, cluster), encodeProtoJson(TypeUrl.Cluster, cluster as unknown as ProtoJson)), cluster.name);
        }
      }),
      { seed: SEED, numRuns: 150 },
    );
  });

  it('handles scalars the compiler does not write today: negatives, 64-bit, doubles, enums by number, durations, bytes', () => {
    const cluster = {
      name: 'c',
      connectTimeout: '1.000000500s',
      type: 3,
      perConnectionBufferLimitBytes: 0,
      lbPolicy: 'ROUND_ROBIN',
      commonLbConfig: { healthyPanicThreshold: { value: 12.5 } },
      circuitBreakers: { thresholds: [{ maxConnections: 4294967295, maxRetries: 0 }] },
      upstreamBindConfig: { sourceAddress: { address: '::1', portValue: 0 }, socketOptions: [{ level: '-1', name: '9223372036854775807', intValue: '-5', state: 'STATE_BOUND' }, { level: '1', name: '2', bufValue: 'AAEC/w==' }] },
      dnsRefreshRate: '-0.5s',
    };
    assert.ok(same(fastEncodeProtoJson(TypeUrl.Cluster, cluster), encodeProtoJson(TypeUrl.Cluster, cluster as unknown as ProtoJson)));
  });

  it('reuses the bytes of an immutable fragment, and never of a value not marked', () => {
    const chain = { name: 'a', filters: [{ name: 'envoy.filters.network.tcp_proxy', typedConfig: { '@type': TypeUrl.TcpProxy, statPrefix: 's', cluster: 'c' } }] };
    const listener = (chains: object[]) => ({ name: 'l', address: { socketAddress: { address: '0.0.0.0', portValue: 1 } }, filterChains: chains });
    const marked = markImmutable(structuredClone(chain));
    const first = fastEncodeProtoJson(TypeUrl.Listener, listener([marked, marked]));
    assert.ok(same(first, encodeProtoJson(TypeUrl.Listener, listener([chain, chain]) as unknown as ProtoJson)));
    const unmarked = structuredClone(chain);
    fastEncodeProtoJson(TypeUrl.Listener, listener([unmarked]));
    unmarked.name = 'b';
    assert.ok(same(fastEncodeProtoJson(TypeUrl.Listener, listener([unmarked])), encodeProtoJson(TypeUrl.Listener, listener([unmarked]) as unknown as ProtoJson)));
  });

  it('refuses what the protos do not have, naming where', () => {
    assert.throws(() => fastEncodeProtoJson(TypeUrl.Listener, { name: 'l', bogus: 1 }), /Listener: unknown field\(s\) "bogus"/);
    assert.throws(
      () => fastEncodeProtoJson(TypeUrl.Listener, { name: 'l', filterChains: [{ filters: [{ name: 'x', typedConfig: { '@type': TypeUrl.TcpProxy, clusterr: 'c' } }] }] }),
      /filterChains\[0\]\.filters\[0\]\.typedConfig<.*TcpProxy>: unknown field\(s\) "clusterr"/,
    );
    assert.throws(() => fastEncodeProtoJson(TypeUrl.Listener, { name: 'l', filterChains: [{ filters: [{ name: 'x', typedConfig: { '@type': 'type.googleapis.com/no.Such' } }] }] }), /unknown message type/);
    assert.throws(() => fastEncodeProtoJson(TypeUrl.Cluster, { name: 'c', type: 'NOPE' }), /unknown enum value "NOPE"/);
    assert.throws(() => fastEncodeProtoJson(TypeUrl.Cluster, { name: 'c', connectTimeout: '10 seconds' }), /not a Duration/);
  });
});
