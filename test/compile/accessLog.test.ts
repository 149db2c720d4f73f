// The access loggers on the hardened chains: what each chain logs (the denials contract:
// log_name, literal egress.* tags, the SNI in filter state), where it sends it (the
// bootstrap's xDS cluster), the CEL conditions, and that Envoy's protos and rules accept them.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { XDS_CLUSTER } from '../../src/bootstrap/envoyBootstrap.js';
import {
  ALS_LOG_NAME,
  DEFAULT_ALS_CLUSTER,
  SNI_FILTER_STATE_KEY,
  TAG,
  addressPasses,
  specialAddressRegex,
  specialAddressTests,
  specialUpstreamCel,
} from '../../src/compile/accessLog.js';
import { compileEgress } from '../../src/compile/compileEgress.js';
import { SPECIAL_RANGES } from '../../src/compile/specialAddresses.js';
import { encodeProtoJson, decodeStrictToJson } from '../../src/envoy/codec.js';
import type { FilterChainJson } from '../../src/envoy/resources.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { formatViolation, validateResource } from '../../src/envoy/validateRules.js';
import { cidrContainsIp, formatIp, mustParseCidr, parseIp } from '../../src/net/ip.js';
import type { Policy } from '../../src/policy/model.js';
import { loggerTags } from './audit.test.js';

const policies: Policy[] = [
  { name: 'web', sources: ['10.0.0.0/24'], log: 'all', allow: { sni: ['github.com'], cidrs: [{ cidr: '192.0.2.0/24', ports: [5432] }] } },
  { name: 'ci', sources: ['10.0.0.0/24'], allow: { sni: ['*.npmjs.org'] } },
  { name: 'trial', sources: ['10.0.1.0/24'], mode: 'audit', allow: { sni: ['pypi.org'] } },
];
const listener = compileEgress(policies).listeners[0]!;
const chain = (name: string): FilterChainJson => {
  const found = listener.filterChains.find((c) => c.name === name);
  assert.ok(found, `chain ${name} in ${listener.filterChains.map((c) => c.name).join(', ')}`);
  return found;
};
/** The chains that end in tcp_proxy (the HTTP chains log from their connection manager: httpPath.test.ts). */
const tcpChains = (chains: FilterChainJson[]): FilterChainJson[] => chains.filter((c) => c.filters.some((f) => f.typedConfig['@type'] === TypeUrl.TcpProxy));
type Logger = { name: string; filter?: unknown; typedConfig: { '@type': string; commonConfig: Record<string, unknown> } };
const loggers = (c: FilterChainJson): Logger[] => (c.filters.find((f) => f.typedConfig['@type'] === TypeUrl.TcpProxy)!.typedConfig['accessLog'] ?? []) as Logger[];

describe('access logs on the hardened chains', () => {
  it('every refusal chain logs every connection, tagged with its reason', () => {
    assert.deepEqual(loggerTags(chain('reject')), [{ [TAG.verdict]: 'denied', [TAG.reason]: 'no-policy', [TAG.listener]: 'egress_tproxy', [TAG.chain]: 'reject' }]);
    assert.deepEqual(loggerTags(chain('reject_loop')), [{ [TAG.verdict]: 'denied', [TAG.reason]: 'loop', [TAG.listener]: 'egress_tproxy', [TAG.chain]: 'reject_loop' }]);
    assert.equal(loggers(chain('reject'))[0]!.filter, undefined);
    assert.deepEqual(loggerTags(chain('would_deny|10.0.1.0/24')), [
      { [TAG.verdict]: 'would-deny', [TAG.reason]: 'no-policy', [TAG.listener]: 'egress_tproxy', [TAG.chain]: 'would_deny|10.0.1.0/24', [TAG.policy]: 'trial' },
    ]);
  });

  it('forwarding chains log the per-source cap, forbidden addresses (by name only), and allowed connections when a policy asks', () => {
    assert.deepEqual(loggerTags(chain('name|10.0.0.0/24')).map((t) => [t[TAG.verdict], t[TAG.reason], t[TAG.policy]]), [
      ['denied', 'per-source-limit', undefined],
      ['denied', 'forbidden-address', undefined],
      ['allowed', undefined, 'web'],
    ]);
    assert.deepEqual(loggerTags(chain('original_dst|10.0.0.0/24')).map((t) => [t[TAG.verdict], t[TAG.reason]]), [
      ['denied', 'per-source-limit'],
      ['allowed', undefined],
    ]);
    // Without "log": "all" on the source, allowed connections are not logged.
    assert.deepEqual(loggerTags(chain('name|10.0.1.0/24')).map((t) => t[TAG.verdict]), ['denied', 'denied']);
    for (const l of loggers(chain('name|10.0.0.0/24'))) assert.ok(l.filter, 'a forwarding chain logs only through a filter');
  });

  it("every logger streams to the bootstrap's xDS cluster under the contract's log name, with the SNI in filter state set first", () => {
    assert.equal(DEFAULT_ALS_CLUSTER, XDS_CLUSTER);
    for (const c of tcpChains(listener.filterChains)) {
      const ls = loggers(c);
      assert.ok(ls.length > 0, `${c.name} logs`);
      for (const l of ls) {
        assert.equal(l.name, 'envoy.access_loggers.tcp_grpc');
        assert.equal(l.typedConfig.commonConfig['logName'], ALS_LOG_NAME);
        assert.deepEqual(l.typedConfig.commonConfig['grpcService'], { envoyGrpc: { clusterName: XDS_CLUSTER } });
        assert.deepEqual(l.typedConfig.commonConfig['filterStateObjectsToLog'], [SNI_FILTER_STATE_KEY]);
      }
      const first = c.filters[0]!.typedConfig as { onNewConnection?: { objectKey: string }[] };
      assert.equal(first.onNewConnection?.[0]?.objectKey, SNI_FILTER_STATE_KEY, `${c.name}: egress.sni is set before anything can close the connection`);
    }
  });

  it("the listener decodes strictly with Envoy's protos and keeps their rules", () => {
    const bytes = encodeProtoJson(TypeUrl.Listener, listener as unknown as Record<string, unknown>);
    decodeStrictToJson(TypeUrl.Listener, bytes);
    assert.deepEqual(validateResource(TypeUrl.Listener, bytes).map(formatViolation), []);
  });

  it('accessLog: false leaves the chains without loggers', () => {
    const bare = compileEgress(policies, { accessLog: false }).listeners[0]!;
    for (const c of tcpChains(bare.filterChains)) assert.equal(loggers(c).length, 0);
  });

  it('the contract constants match src/denials/record.ts when that room is present', async (t) => {
    const url = new URL('../../src/denials/record.js', import.meta.url);
    if (!existsSync(url)) return t.skip('src/denials/record.ts is not on this branch yet');
    const record = (await import(url.href)) as { ALS_LOG_NAME: string; TAG: Record<string, string>; SNI_FILTER_STATE_KEY: string; DENIAL_REASONS: readonly string[] };
    assert.equal(record.ALS_LOG_NAME, ALS_LOG_NAME);
    assert.equal(record.SNI_FILTER_STATE_KEY, SNI_FILTER_STATE_KEY);
    for (const [key, tag] of Object.entries(TAG)) assert.equal(record.TAG[key], tag);
    for (const c of tcpChains(listener.filterChains)) for (const t of loggerTags(c)) if (t[TAG.reason]) assert.ok(record.DENIAL_REASONS.includes(t[TAG.reason]!));
  });
});

describe('the special-address test of the forbidden-address logger', () => {
  const special = (ip: string): boolean => SPECIAL_RANGES.some((r) => cidrContainsIp(mustParseCidr(r.cidr), parseIp(ip)!));
  const envoyText = (ip: string, port: number): string => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);
  const passes = (text: string): boolean => specialAddressTests().some((t) => addressPasses(t, text));

  it('holds exactly for the special ranges (IPv4, IPv6, IPv4-mapped), on Envoy\'s address text', () => {
    const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
    const near = fc.constantFrom('10.0.0.1', '9.255.255.255', '11.0.0.0', '100.63.255.255', '100.64.0.0', '100.127.255.255', '100.128.0.0',
      '172.15.255.255', '172.16.0.1', '172.31.255.255', '172.32.0.0', '169.254.169.254', '169.255.0.1', '192.168.1.1', '192.169.0.1', '127.0.0.1', '0.1.2.3', '1.0.0.1');
    const v6 = fc.constantFrom('::1', '::', '::2', 'fc00::1', 'fd12:3456::1', 'fc0::1', 'fc::1', 'fe80::1', 'febf::1', 'fec0::1', 'fe8::1', '::ffff:8.8.8.8', '2001:db8::1', 'ff02::1');
    fc.assert(fc.property(fc.oneof(v4, near, v6), fc.integer({ min: 1, max: 65535 }), (ip, port) => {
      const canonical = formatIp(parseIp(ip)!);
      assert.equal(passes(envoyText(canonical, port)), special(canonical), envoyText(canonical, port));
      assert.equal(new RegExp(specialAddressRegex()).test(envoyText(canonical, port)), special(canonical), `the folded pattern: ${envoyText(canonical, port)}`);
    }), { seed: 7, numRuns: 2000 });
  });

  it('is one short CEL expression (it is repeated on every name chain)', () => {
    const cel = specialUpstreamCel();
    assert.equal(cel, `has(upstream.address) && upstream.address.matches(${JSON.stringify(specialAddressRegex())})`);
    assert.ok(cel.length < 400, `${cel.length} characters`);
  });
});
