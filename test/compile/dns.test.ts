// The DNS listener through a model of Envoy's DNS filter: only allowed names are answered
// (never anything else, whatever the query), names allowed by name resolve to the synthetic
// address (wildcards at any depth below their base), exact names of original-destination
// policies resolve through their own cluster, and nothing is ever forwarded upstream.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileEgress } from '../../src/compile/compileEgress.js';
import { DEFAULT_DNS_ANSWER_ADDRESS, DNS_LISTENER_NAME, dnsAnswerClusterName } from '../../src/compile/dns.js';
import { parseDnsFlags } from '../../src/cli/dnsFlags.js';
import { UsageError } from '../../src/cli/flags.js';
import { encodeProtoJson, decodeStrictToJson } from '../../src/envoy/codec.js';
import { answerQuery, type DnsTableJson } from '../../src/envoy/dnsFilter.js';
import type { ListenerJson } from '../../src/envoy/resources.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { formatViolation, validateResource } from '../../src/envoy/validateRules.js';
import type { Policy } from '../../src/policy/model.js';
import { sniPatternMatches } from '../../src/policy/verdict.js';
import { policySet, sniPattern } from './arbitraries.js';

const SEED = Number(process.env['PROPERTY_SEED'] ?? 20240607) + 80;
const RUNS = Number(process.env['PROPERTY_RUNS'] ?? 600);
const DNS = { dns: { port: 15053 } } as const;

const dnsListenerOf = (listeners: ListenerJson[]): ListenerJson => {
  const found = listeners.find((l) => l.name === DNS_LISTENER_NAME);
  assert.ok(found);
  return found;
};
const tableOf = (listener: ListenerJson): DnsTableJson & { clientConfig?: unknown } => {
  const config = listener.listenerFilters![0]!.typedConfig as unknown as { serverConfig: { inlineDnsTable: DnsTableJson }; clientConfig?: unknown };
  return { ...config.serverConfig.inlineDnsTable, ...(config.clientConfig !== undefined && { clientConfig: config.clientConfig }) };
};

/** Query names near the policies' patterns, and others. */
const queryFor = (policies: readonly Policy[]): fc.Arbitrary<string> => {
  const patterns = policies.flatMap((p) => p.allow.sni);
  const near = patterns.length === 0
    ? sniPattern.map((p) => p.replace('*.', 'x.'))
    : fc.tuple(fc.constantFrom(...patterns), fc.constantFrom('', 'a.', 'c.b.', 'xx.')).map(([p, below]) => (p.startsWith('*.') ? below + p.slice(2) : below + p));
  return fc.oneof(near, sniPattern.map((p) => p.replace('*.', 'zz.')), fc.constantFrom('xds_cluster', 'reject_cluster', 'evil.example', 'com', 'io'));
};

describe('the DNS listener, property', () => {
  it('answers only allowed names; names allowed by name resolve to the synthetic address unless only a one-label wildcard allows them', () => {
    const byName = policySet.map((ps) => ps.map(({ upstream: _u, ...p }) => p as Policy));
    fc.assert(
      fc.property(byName.chain((ps) => fc.tuple(fc.constant(ps), fc.array(queryFor(ps), { minLength: 10, maxLength: 20 }))), ([policies, queries]) => {
        const { listeners } = compileEgress(policies, DNS);
        const table = tableOf(dnsListenerOf(listeners));
        assert.equal(table.clientConfig, undefined, 'never forwards');
        const patterns = policies.flatMap((p) => p.allow.sni);
        for (const query of queries) {
          const answer = answerQuery(table, query);
          const allowing = patterns.filter((p) => sniPatternMatches(p, query));
          // Envoy's suffix index is the last two labels: "*.com" is never found.
          const resolvable = allowing.filter((p) => !(p.startsWith('*.') && !p.slice(2).includes('.')));
          assert.deepEqual(answer, resolvable.length > 0 ? { rcode: 'NOERROR', addresses: [DEFAULT_DNS_ANSWER_ADDRESS] } : { rcode: 'NXDOMAIN' }, `${query} (allowed by ${allowing.join(', ') || 'nothing'})`);
        }
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('never answers a name no policy allows, whatever the upstream and profile', () => {
    fc.assert(
      fc.property(policySet.chain((ps) => fc.tuple(fc.constant(ps), fc.array(queryFor(ps), { minLength: 10, maxLength: 20 }), fc.constantFrom('hardened' as const, 'seed' as const))), ([policies, queries, profile]) => {
        const { listeners, clusters } = compileEgress(policies, { ...DNS, profile });
        const table = tableOf(dnsListenerOf(listeners));
        // Every cluster resolves to some address (the worst case for the filter's cluster answers).
        const hosts = new Map(clusters.map((c) => [c.name, ['203.0.113.9']]));
        const patterns = policies.flatMap((p) => p.allow.sni);
        for (const query of queries) {
          const answer = answerQuery(table, query, hosts);
          if (answer.rcode === 'NOERROR' && !['xds_cluster', 'reject_cluster'].includes(query)) {
            assert.ok(patterns.some((p) => sniPatternMatches(p, query)), `${query} answered but not allowed`);
          }
        }
        for (const listener of listeners) {
          const bytes = encodeProtoJson(TypeUrl.Listener, listener as unknown as Record<string, unknown>);
          decodeStrictToJson(TypeUrl.Listener, bytes);
          assert.deepEqual(validateResource(TypeUrl.Listener, bytes).map(formatViolation), []);
        }
        for (const cluster of clusters) assert.deepEqual(validateResource(TypeUrl.Cluster, cluster as unknown as Record<string, unknown>).map(formatViolation), []);
      }),
      { seed: SEED + 1, numRuns: Math.ceil(RUNS / 3) },
    );
  });
});

describe('the DNS listener, examples', () => {
  const policies: Policy[] = [
    { name: 'web', sources: ['10.0.0.0/24'], allow: { sni: ['github.com', '*.npmjs.org'] } },
    { name: 'legacy', sources: ['10.0.1.0/24'], upstream: 'original-destination', allow: { sni: ['old.example.net', '*.legacy.example.net'] } },
  ];
  const { listeners, clusters } = compileEgress(policies, { dns: { port: 15053, answerAddress: '198.18.7.7' } });
  const listener = dnsListenerOf(listeners);
  const table = tableOf(listener);

  it('is a transparent UDP listener on the DNS port, after the egress listener', () => {
    assert.deepEqual(listeners.map((l) => l.name), ['egress_tproxy', DNS_LISTENER_NAME]);
    assert.deepEqual(listener.address, { socketAddress: { protocol: 'UDP', address: '0.0.0.0', portValue: 15053 } });
    assert.equal(listener.transparent, true);
    assert.deepEqual(listener.filterChains, []);
  });

  it('answers allowed names, wildcards below their base, and refuses the rest', () => {
    assert.deepEqual(answerQuery(table, 'github.com'), { rcode: 'NOERROR', addresses: ['198.18.7.7'] });
    assert.deepEqual(answerQuery(table, 'registry.npmjs.org'), { rcode: 'NOERROR', addresses: ['198.18.7.7'] });
    assert.deepEqual(answerQuery(table, 'a.b.npmjs.org'), { rcode: 'NOERROR', addresses: ['198.18.7.7'] });
    assert.deepEqual(answerQuery(table, 'npmjs.org'), { rcode: 'NXDOMAIN' });
    assert.deepEqual(answerQuery(table, 'www.github.com'), { rcode: 'NXDOMAIN' });
    assert.deepEqual(answerQuery(table, 'c2VjcmV0.exfil.example'), { rcode: 'NXDOMAIN' });
  });

  it('exact original-destination names resolve through their own STRICT_DNS cluster; their wildcards get no answer', () => {
    const cluster = clusters.find((c) => c.name === dnsAnswerClusterName('old.example.net'));
    assert.equal(cluster?.type, 'STRICT_DNS');
    assert.equal((cluster?.loadAssignment?.endpoints[0]?.lbEndpoints[0]?.endpoint.address as { socketAddress: { address: string } } | undefined)?.socketAddress.address, 'old.example.net');
    const hosts = new Map([[dnsAnswerClusterName('old.example.net'), ['192.0.2.10']]]);
    assert.deepEqual(answerQuery(table, 'old.example.net', hosts), { rcode: 'NOERROR', addresses: ['192.0.2.10'] });
    assert.deepEqual(answerQuery(table, 'a.legacy.example.net', hosts), { rcode: 'NXDOMAIN' });
    assert.equal(clusters.filter((c) => c.name.startsWith('dns_answer|')).length, 1);
  });

  it('port 0 (or no dns option) means no DNS listener', () => {
    assert.deepEqual(compileEgress(policies, { dns: { port: 0 } }).listeners.map((l) => l.name), ['egress_tproxy']);
    assert.deepEqual(compileEgress(policies).listeners.map((l) => l.name), ['egress_tproxy']);
  });

  it('serve --dns-port / --dns-answer-address: defaults, 0, and bad values named', () => {
    assert.deepEqual(parseDnsFlags({}), { dns: { port: 15053, answerAddress: '198.18.0.1' } });
    assert.deepEqual(parseDnsFlags({ 'dns-port': '0' }).dns.port, 0);
    assert.throws(() => parseDnsFlags({ 'dns-port': '70000' }), (e: unknown) => e instanceof UsageError && /--dns-port/.test(e.message));
    assert.throws(() => parseDnsFlags({ 'dns-port': 'x' }), UsageError);
    assert.throws(() => parseDnsFlags({ 'dns-answer-address': '::1' }), (e: unknown) => e instanceof UsageError && /--dns-answer-address/.test(e.message));
  });
});
