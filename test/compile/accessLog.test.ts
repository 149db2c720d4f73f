// The access loggers on the hardened chains: what each chain logs (the denials contract:
// log_name, literal egress.* tags, only what the server cannot derive), where it sends it (the
// bootstrap's xDS cluster), the condition of a forwarding chain's one logger, the server's
// classification of its entries, what it costs per chain, and that Envoy's protos and rules
// accept them.
import assert from 'node:assert/strict';
import { isDenialReason } from '../../src/denials/record.js';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { XDS_CLUSTER } from '../../src/bootstrap/envoyBootstrap.js';
import { ALS_LOG_NAME, DEFAULT_ALS_CLUSTER, FORWARD_REFUSED_CEL, TAG } from '../../src/compile/accessLog.js';
import { classifyForwardEntry, isSpecialAddress } from '../../src/compile/accessLogContract.js';
import { compileEgress } from '../../src/compile/compileEgress.js';
import { NAME_UPSTREAM_CLUSTER, ORIGINAL_DST_CLUSTER } from '../../src/compile/names.js';
import { SPECIAL_RANGES } from '../../src/compile/specialAddresses.js';
import { encodeProtoJson, decodeStrictToJson } from '../../src/envoy/codec.js';
import type { FilterChainJson } from '../../src/envoy/resources.js';
import { TYPE_PREFIX, TypeUrl } from '../../src/envoy/typeUrls.js';
import { formatViolation, validateResource } from '../../src/envoy/validateRules.js';
import { cidrContainsIp, formatIp, mustParseCidr, parseIp } from '../../src/net/ip.js';
import type { Policy } from '../../src/policy/model.js';
import { loggedVerdict, loggerTags } from './audit.test.js';

const policies: Policy[] = [
  { name: 'web', sources: ['10.0.0.0/24'], log: 'all', allow: { sni: ['github.com'], cidrs: [{ cidr: '192.0.2.0/24', ports: [5432] }] } },
  { name: 'ci', sources: ['10.0.0.0/24'], allow: { sni: ['*.npmjs.org'] } },
  { name: 'trial', sources: ['10.0.1.0/24'], mode: 'audit', allow: { sni: ['pypi.org'] } },
  { name: 'db', sources: ['10.0.2.0/24'], allow: { sni: ['db.example.com'], cidrs: [{ cidr: '10.8.0.0/16', ports: [5432] }] } },
];
const listener = compileEgress(policies).listeners[0]!;
const chain = (name: string, of = listener): FilterChainJson => {
  const found = of.filterChains.find((c) => c.name === name);
  assert.ok(found, `chain ${name} in ${of.filterChains.map((c) => c.name).join(', ')}`);
  return found;
};
/** The chains that end in tcp_proxy (the HTTP chains log from their connection manager: httpPath.test.ts). */
const tcpChains = (chains: FilterChainJson[]): FilterChainJson[] => chains.filter((c) => c.filters.some((f) => f.typedConfig['@type'] === TypeUrl.TcpProxy));
type Logger = { name?: string; filter?: { extensionFilter?: { name?: string; typedConfig: { expression: string } } }; typedConfig: { '@type': string; commonConfig: Record<string, unknown> } };
const loggers = (c: FilterChainJson): Logger[] => (c.filters.find((f) => f.typedConfig['@type'] === TypeUrl.TcpProxy)!.typedConfig['accessLog'] ?? []) as Logger[];

describe('access logs on the hardened chains', () => {
  it('every refusal chain logs every connection, tagged with its reason (the verdict and the default listener name are derived)', () => {
    assert.deepEqual(loggerTags(chain('reject')), [{ [TAG.reason]: 'no-policy', [TAG.chain]: 'reject' }]);
    assert.deepEqual(loggerTags(chain('reject_loop')), [{ [TAG.reason]: 'loop', [TAG.chain]: 'reject_loop' }]);
    assert.deepEqual(loggerTags(chain('reject')).map(loggedVerdict), ['denied']);
    assert.equal(loggers(chain('reject'))[0]!.filter, undefined);
    assert.deepEqual(loggerTags(chain('would_deny|10.0.1.0/24')), [
      { [TAG.verdict]: 'would-deny', [TAG.reason]: 'no-policy', [TAG.chain]: 'would_deny|10.0.1.0/24', [TAG.policy]: 'trial' },
    ]);
  });

  it('a forwarding chain has one logger: its refusals for the server to classify, or with "log": "all" everything, tagged allowed', () => {
    for (const name of ['name|10.0.2.0/24', 'original_dst|10.0.2.0/24', 'name|10.0.1.0/24']) {
      const ls = loggers(chain(name));
      assert.equal(ls.length, 1, name);
      assert.deepEqual(loggerTags(chain(name)), [{ [TAG.chain]: name }], name);
      assert.equal(ls[0]!.filter?.extensionFilter?.typedConfig.expression, FORWARD_REFUSED_CEL, name);
    }
    for (const name of ['name|10.0.0.0/24', 'original_dst|10.0.0.0/24']) {
      assert.deepEqual(loggerTags(chain(name)), [{ [TAG.verdict]: 'allowed', [TAG.chain]: name, [TAG.policy]: 'web' }], name);
      assert.equal(loggers(chain(name))[0]!.filter, undefined, `${name}: "log": "all" logs every connection`);
    }
  });

  it('under another listener name the listener and the verdict are tagged', () => {
    const other = compileEgress(policies, { listenerName: 'egress_v6' }).listeners[0]!;
    assert.deepEqual(loggerTags(chain('reject', other)), [{ [TAG.verdict]: 'denied', [TAG.reason]: 'no-policy', [TAG.listener]: 'egress_v6', [TAG.chain]: 'reject' }]);
    assert.deepEqual(loggerTags(chain('name|10.0.2.0/24', other)), [{ [TAG.listener]: 'egress_v6', [TAG.chain]: 'name|10.0.2.0/24' }]);
  });

  it("every logger streams to the bootstrap's xDS cluster under the contract's log name; no filter state, no extension names", () => {
    assert.equal(DEFAULT_ALS_CLUSTER, XDS_CLUSTER);
    for (const c of tcpChains(listener.filterChains)) {
      const ls = loggers(c);
      assert.ok(ls.length > 0, `${c.name} logs`);
      for (const l of ls) {
        assert.equal(l.typedConfig['@type'], TypeUrl.TcpGrpcAccessLogConfig);
        assert.equal(l.name, undefined, 'Envoy finds the logger by its type URL');
        assert.equal(l.filter?.extensionFilter?.name, undefined, 'and the CEL filter by its type URL');
        assert.equal(l.typedConfig.commonConfig['logName'], ALS_LOG_NAME);
        assert.deepEqual(l.typedConfig.commonConfig['grpcService'], { envoyGrpc: { clusterName: XDS_CLUSTER } });
        assert.equal(l.typedConfig.commonConfig['filterStateObjectsToLog'], undefined, 'the SNI comes in tls_properties');
      }
      const setsState = c.filters.some((f) => (f.typedConfig as { onNewConnection?: { objectKey: string }[] }).onNewConnection?.some((o) => o.objectKey.startsWith('egress.')));
      assert.equal(setsState, false, `${c.name}: no egress.* filter state`);
    }
  });

  it('a forwarding chain\'s logging costs at most 350 bytes of the listener (issue 7: the listener is per chain)', () => {
    const encoded = (c: FilterChainJson) => encodeProtoJson(`${TYPE_PREFIX}envoy.config.listener.v3.FilterChain`, c as unknown as Record<string, unknown>).length;
    const bare = compileEgress(policies, { accessLog: false }).listeners[0]!;
    for (const name of ['name|10.0.2.0/24', 'original_dst|10.0.2.0/24', 'reject']) {
      const cost = encoded(chain(name)) - encoded(chain(name, bare));
      assert.ok(cost > 0 && cost <= 350, `${name}: ${cost} bytes of logging`);
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

  it('every reason a logger is tagged with is one the denial records know', () => {
    for (const c of tcpChains(listener.filterChains)) for (const t of loggerTags(c)) if (t[TAG.reason]) assert.ok(isDenialReason(t[TAG.reason]!), t[TAG.reason]);
  });
});

describe("the server's classification of a forwarding chain's entries", () => {
  const special = (ip: string): boolean => SPECIAL_RANGES.some((r) => cidrContainsIp(mustParseCidr(r.cidr), parseIp(ip)!));
  const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
  const near = fc.constantFrom('10.0.0.1', '9.255.255.255', '11.0.0.0', '100.63.255.255', '100.64.0.0', '100.127.255.255', '100.128.0.0',
    '172.15.255.255', '172.16.0.1', '172.31.255.255', '172.32.0.0', '169.254.169.254', '169.255.0.1', '192.168.1.1', '192.169.0.1', '127.0.0.1', '0.1.2.3', '1.0.0.1');
  const v6 = fc.constantFrom('::1', '::', '::2', 'fc00::1', 'fd12:3456::1', 'fc0::1', 'fc::1', 'fe80::1', 'febf::1', 'fec0::1', 'fe8::1', '::ffff:8.8.8.8', '2001:db8::1', 'ff02::1');

  it('forbidden-address exactly for a UF of the name cluster to a special address; per-source-limit exactly for no host and no flag on a chain with the cap', () => {
    fc.assert(fc.property(fc.option(fc.oneof(v4, near, v6), { nil: undefined }), fc.constantFrom(NAME_UPSTREAM_CLUSTER, ORIGINAL_DST_CLUSTER), fc.boolean(), fc.boolean(), fc.boolean(), (ip, cluster, uf, otherFlag, envoyCap) => {
      const upstreamIp = ip === undefined ? undefined : formatIp(parseIp(ip)!);
      const got = classifyForwardEntry({ ...(upstreamIp !== undefined && { upstreamIp, upstreamCluster: cluster }), anyFlag: uf || otherFlag, upstreamConnectionFailure: uf, envoyCap });
      const expected =
        upstreamIp === undefined ? (uf || otherFlag || !envoyCap ? undefined : 'per-source-limit')
        : uf && cluster === NAME_UPSTREAM_CLUSTER && special(upstreamIp) ? 'forbidden-address'
        : undefined;
      assert.equal(got, expected, JSON.stringify({ upstreamIp, cluster, uf, otherFlag, envoyCap }));
    }), { seed: 7, numRuns: 2000 });
  });

  it('knows the special ranges on the addresses Envoy reports (IPv4, IPv6, IPv4-mapped)', () => {
    for (const ip of ['169.254.169.254', '127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.0.1', '100.64.0.1', '0.0.0.0', '::1', '::', 'fd00::1', 'fe80::1', '::ffff:8.8.8.8']) assert.ok(isSpecialAddress(ip), ip);
    for (const ip of ['8.8.8.8', '172.32.0.1', '100.128.0.0', '2001:db8::1', 'ff02::1', 'not-an-ip']) assert.ok(!isSpecialAddress(ip), ip);
  });
});
