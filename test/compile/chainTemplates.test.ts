// Per-source chains encoded from templates (chainTemplates.ts, fastEncode.ts encodingTemplate)
// are byte for byte what the generic encoder gives for the same chain: for random hosts of
// many sources (IPv4 and IPv6 ranges of any length, "any source"), audit and log-all
// policies, and options; the listener carrying them decodes strictly with Envoy's protos.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileEgress } from '../../src/compile/compileEgress.js';
import { resetChainCache } from '../../src/compile/hardenedListener.js';
import { resetCompileCaches } from '../../src/compile/hardenedMatcher.js';
import { FILTER_CHAIN_TYPE, primeChainBytes } from '../../src/compile/chainTemplates.js';
import { decodeStrict, encodeProtoJson, type ProtoJson } from '../../src/envoy/codec.js';
import { encodingTemplate, fastEncodeProtoJson, fillTemplate, hasBytes, markImmutable, walkEncode } from '../../src/envoy/fastEncode.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import type { Policy } from '../../src/policy/model.js';

const SEED = Number(process.env['PROPERTY_SEED'] ?? 20261201);
const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

const ipv4Source = fc.tuple(fc.integer({ min: 1, max: 223 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 63 }), fc.integer({ min: 26, max: 32 }))
  .map(([a, b, c, d, len]) => {
    const last = (d * 4) & ~((1 << (32 - len)) - 1) & 255;
    return `${a}.${b}.${c}.${last}/${len}`;
  });
const ipv6Source = fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), fc.constantFrom(48, 64, 96, 112, 126, 128))
  .map(([a, b, len]) => (len <= 48 ? `2001:db8:${a.toString(16)}::/48` : `fd00:${a.toString(16)}:${b.toString(16)}::/${len}`));

const vmPolicy = fc.record({
  source: fc.oneof(ipv4Source, ipv6Source),
  names: fc.uniqueArray(fc.constantFrom('a.com', 'b.io', '*.c.com', 'd.e.io', 'x.y.z.com'), { maxLength: 3 }),
  cidr: fc.boolean(),
  audit: fc.boolean(),
  logAll: fc.boolean(),
  original: fc.boolean(),
});

const host = fc.record({
  vms: fc.array(vmPolicy, { minLength: 2, maxLength: 40 }),
  shared: fc.boolean(),
  sharedAudit: fc.boolean(),
  // 0: no Envoy-side cap, the forwarding chains shared (chainSources.ts).
  max: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 ** 31 })),
  ipv6: fc.boolean(),
  accessLog: fc.boolean(),
});

type Host = typeof host extends fc.Arbitrary<infer T> ? T : never;

function policiesOf(h: Host): Policy[] {
  const policies: Policy[] = h.vms.map((vm, i) => ({
    name: `vm-${String(i).padStart(3, '0')}`,
    sources: [vm.source],
    ...(vm.original && { upstream: 'original-destination' as const }),
    ...(vm.audit && { mode: 'audit' as const }),
    ...(vm.logAll && { log: 'all' as const }),
    allow: { sni: [...vm.names].sort(), ...(vm.cidr && { cidrs: [{ cidr: vm.source.includes(':') ? '2001:db8:ffff::/48' : '192.0.2.0/24', ports: [5432] }] }) },
  }));
  if (h.shared) policies.push({ name: 'common', ...(h.sharedAudit && { mode: 'audit' as const }), allow: { sni: ['pkg.common.dev'] } });
  return policies;
}

describe('chain templates', () => {
  it('fill to the generic encoding of every per-source chain, and the listener decodes strictly', () => {
    let filledChains = 0;
    fc.assert(
      fc.property(host, (h) => {
        resetCompileCaches();
        resetChainCache();
        const compiled = compileEgress(policiesOf(h), {
          maxConnectionsPerSource: h.max,
          ipv6: h.ipv6,
          dnsCache: { resolvers: ['10.0.0.2'], maxHosts: Math.max(1, h.max) },
          ...(h.accessLog ? {} : { accessLog: false }),
        });
        const listener = compiled.listeners[0]!;
        for (const chain of listener.filterChains) {
          if (!chain.name?.includes('|')) continue;
          // Primed from a template (or the exemplar of one) before any encode.
          assert.ok(hasBytes(chain, FILTER_CHAIN_TYPE), `${chain.name} has its bytes from a template`);
          filledChains++;
        }
        const fast = fastEncodeProtoJson(TypeUrl.Listener, listener);
        assert.ok(same(fast, encodeProtoJson(TypeUrl.Listener, listener as unknown as ProtoJson)), 'listener bytes');
        decodeStrict(TypeUrl.Listener, fast);
      }),
      { seed: SEED, numRuns: 60 },
    );
    assert.ok(filledChains > 500, `templates filled ${filledChains} chains`);
  });

  it('a template gives the walk of the same message with other strings, long and non-ASCII ones included', () => {
    const chainWith = (name: string, prefix: string) => ({
      name,
      filters: [
        { name: 'envoy.filters.network.connection_limit', typedConfig: { '@type': TypeUrl.ConnectionLimit, statPrefix: prefix, maxConnections: '7' } },
        {
          name: 'envoy.filters.network.tcp_proxy',
          typedConfig: {
            '@type': TypeUrl.TcpProxy,
            statPrefix: 'fixed',
            cluster: 'c',
            accessLog: [{ typedConfig: { '@type': TypeUrl.TcpGrpcAccessLogConfig, commonConfig: { logName: 'l', customTags: [{ tag: 'egress.chain', literal: { value: name } }], transportApiVersion: 'V3' } } }],
          },
        },
      ],
    });
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 300, unit: 'binary' }), fc.string({ minLength: 1, maxLength: 300, unit: 'grapheme' }), fc.string({ minLength: 1, maxLength: 200 }), fc.string({ minLength: 1, maxLength: 200 }), (name, prefix, n0, p0) => {
        fc.pre(n0 !== p0 && n0 !== 'fixed' && p0 !== 'fixed' && n0 !== 'c' && p0 !== 'c' && n0 !== 'l' && p0 !== 'l' && n0 !== 'egress.chain' && p0 !== 'egress.chain');
        fc.pre(!n0.startsWith('envoy.') && !p0.startsWith('envoy.') && !n0.startsWith('type.googleapis.com') && !p0.startsWith('type.googleapis.com') && n0 !== 'V3' && p0 !== 'V3' && n0 !== '7' && p0 !== '7');
        const template = encodingTemplate(FILTER_CHAIN_TYPE, chainWith(n0, p0), [n0, p0]);
        const filled = fillTemplate(template, [name, prefix]);
        const json = chainWith(name, prefix);
        assert.ok(same(filled, walkEncode(FILTER_CHAIN_TYPE, json)), 'fill = walk');
        assert.ok(same(filled, encodeProtoJson(FILTER_CHAIN_TYPE, json as unknown as ProtoJson)), 'fill = generic');
      }),
      { seed: SEED, numRuns: 300 },
    );
    // proto3 leaves an empty string out, tag and all: no slot stands for it.
    const template = encodingTemplate(FILTER_CHAIN_TYPE, chainWith('n', 'p'), ['n', 'p']);
    assert.throws(() => fillTemplate(template, ['', 'p']), /empty string/);
  });

  it('drops a template whose fills differ from the walk (a chain that depends on more than its strings)', () => {
    const chain = (label: string, extra: string) =>
      markImmutable({ name: `name|${label}`, filters: [{ name: 'envoy.filters.network.tcp_proxy', typedConfig: { '@type': TypeUrl.TcpProxy, statPrefix: extra, cluster: 'c' } }] });
    // The stat prefix here is not what chainSlots derives from the label: the fills must not be trusted.
    const chains = ['10.0.0.0/30', '10.0.0.4/30', '10.0.0.8/30', '10.0.0.12/30'].map((label, i) => chain(label, `other${i}`));
    const { filled } = primeChainBytes(chains, () => 'same');
    assert.equal(filled, 1, 'only the exemplar is primed');
    assert.ok(!hasBytes(chains[1]!, FILTER_CHAIN_TYPE) && !hasBytes(chains[3]!, FILTER_CHAIN_TYPE));
    const listener = { name: 'l', address: { socketAddress: { address: '0.0.0.0', portValue: 1 } }, filterChains: chains };
    assert.ok(same(fastEncodeProtoJson(TypeUrl.Listener, listener), encodeProtoJson(TypeUrl.Listener, listener as unknown as ProtoJson)));
  });
});
