// serve --max-connections-per-source 0: Envoy caps no source (the host agent's kernel cap
// does), so the forwarding chains that were per source only for connection_limit are shared
// ("*"'s), and what is still the source's own stays so (http|S: its route table; the chains
// of a source a sourced "log": "all" or audit policy selects: their loggers name it).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeAccessLogsMessage, AlsInputError } from '../../src/als/decode.js';
import { ALS_LOG_NAME, CAP_BY_HOST, TAG } from '../../src/compile/accessLogContract.js';
import { chainLabels, perSourceChains } from '../../src/compile/chainSources.js';
import { ANY_SOURCE } from '../../src/compile/cidrKeys.js';
import { checkConnection } from '../../src/compile/check.js';
import { compileEgress } from '../../src/compile/compileEgress.js';
import { decodeStrict, encodeProtoJson, type ProtoJson } from '../../src/envoy/codec.js';
import { validateResource } from '../../src/envoy/validateRules.js';
import type { FilterChainJson, ListenerJson } from '../../src/envoy/resources.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import type { Policy } from '../../src/policy/model.js';
import { hostPolicies, vmIp, vmName, vmSource } from './hosts.js';

const MICROVMS = 300;
const limits = (chain: FilterChainJson) => chain.filters.filter((f) => f.typedConfig['@type'] === TypeUrl.ConnectionLimit);
const names = (listener: ListenerJson, prefix: string) => listener.filterChains.map((c) => c.name!).filter((n) => n.startsWith(`${prefix}|`));
const size = (listener: ListenerJson) => encodeProtoJson(TypeUrl.Listener, listener as unknown as ProtoJson).length;

/** The literal tags of every access logger under `value`. */
function loggerTags(value: unknown, out: Record<string, string>[] = []): Record<string, string>[] {
  if (Array.isArray(value)) value.forEach((v) => loggerTags(v, out));
  else if (value && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const common = (record.typedConfig as { commonConfig?: { customTags?: { tag: string; literal: { value: string } }[] } } | undefined)?.commonConfig;
    if (common) out.push(Object.fromEntries((common.customTags ?? []).map((t) => [t.tag, t.literal.value])));
    else for (const inner of Object.values(record)) loggerTags(inner, out);
  }
  return out;
}

describe('chainSources.ts: per source or shared', () => {
  const key = '10.100.0.4/30';
  const own: Policy = { name: 'vm', sources: [key], allow: { sni: ['a.example.org'] } };
  const everyone: Policy = { name: 'common', allow: { sni: ['pkg.example.org'] } };
  it('with a cap every chain is the source\'s own; "any source" is "*" either way', () => {
    assert.equal(perSourceChains(512), true);
    assert.equal(perSourceChains(0), false);
    assert.deepEqual(chainLabels(key, [own, everyone], true), { forward: key, audit: key, http: key });
    assert.deepEqual(chainLabels(ANY_SOURCE, [everyone], false), { forward: '*', audit: '*', http: '*' });
  });
  it('without: shared unless a policy naming sources logs every connection (forward) or audits (would_deny); http always own', () => {
    assert.deepEqual(chainLabels(key, [own, everyone], false), { forward: '*', audit: '*', http: key });
    assert.deepEqual(chainLabels(key, [{ ...own, log: 'all' }, everyone], false), { forward: key, audit: '*', http: key });
    assert.deepEqual(chainLabels(key, [{ ...own, mode: 'audit' }, everyone], false), { forward: '*', audit: key, http: key });
    // Source-less ones select "any source" too, so "*"'s chains carry the same loggers.
    assert.deepEqual(chainLabels(key, [own, { ...everyone, log: 'all', mode: 'audit' }], false), { forward: '*', audit: '*', http: key });
  });
});

describe('--max-connections-per-source 0 on a host of hundreds of microVMs', () => {
  const policies = hostPolicies(MICROVMS);
  const capped = compileEgress(policies).listeners[0]!;
  const shared = compileEgress(policies, { maxConnectionsPerSource: 0 }).listeners[0]!;

  it('no chain holds connection_limit; one name chain and one original_dst chain serve every source; http stays per source', () => {
    assert.deepEqual(shared.filterChains.filter((c) => limits(c).length > 0).map((c) => c.name), []);
    assert.deepEqual(names(shared, 'name'), ['name|*']);
    assert.deepEqual(names(shared, 'original_dst'), ['original_dst|*']);
    assert.equal(names(shared, 'http').length, MICROVMS + 1);
    // The default keeps a capped chain per source (the comparison that makes the above mean something).
    assert.equal(names(capped, 'name').length, MICROVMS + 1);
    assert.ok(capped.filterChains.filter((c) => limits(c).length > 0).length > 2 * MICROVMS);
    assert.ok(size(shared) < size(capped) * 0.7, `${size(shared)} vs ${size(capped)} bytes`);
  });

  it("POST /v1/check's explanation names the shared chain and the upstream", () => {
    const compiled = compileEgress(policies, { maxConnectionsPerSource: 0 });
    const own = policies.find((p) => p.name === vmName(11))!;
    const name = own.allow.sni.find((n) => !n.startsWith('*'))!;
    const byName = checkConnection(compiled, policies, { sourceIp: vmIp(11), destinationIp: '203.0.113.7', destinationPort: 443, serverName: name });
    assert.equal(byName.verdict, 'allow');
    assert.equal(byName.filterChain, 'name|*');
    assert.equal(byName.policy, vmName(11));
    assert.deepEqual(byName.upstream, { kind: 'name', address: `${name}:443` });
    const byAddress = checkConnection(compiled, policies, { sourceIp: vmIp(10), destinationIp: '192.0.2.10', destinationPort: 5432 });
    assert.equal(byAddress.filterChain, 'original_dst|*');
    assert.deepEqual(byAddress.upstream, { kind: 'original-destination', address: '192.0.2.10:5432' });
    // What no policy allows is still refused: the chains are shared, the matcher is not.
    const refused = checkConnection(compiled, policies, { sourceIp: vmIp(11), destinationIp: '203.0.113.7', destinationPort: 443, serverName: 'not-allowed.example' });
    assert.deepEqual([refused.verdict, refused.filterChain], ['deny', 'reject']);
  });
});

describe('--max-connections-per-source 0: what stays per source', () => {
  const base = hostPolicies(20);
  const policies: Policy[] = base.map((p) =>
    p.name === vmName(3) ? { ...p, log: 'all' as const } : p.name === vmName(4) ? { ...p, mode: 'audit' as const } : p,
  );

  it('a source a sourced "log": "all" policy selects keeps its own name chain, one an audit policy selects its own would_deny chain; others share', () => {
    const listener = compileEgress(policies, { maxConnectionsPerSource: 0 }).listeners[0]!;
    assert.deepEqual(names(listener, 'name'), ['name|*', `name|${vmSource(3)}`]);
    assert.deepEqual(names(listener, 'would_deny'), [`would_deny|${vmSource(4)}`]);
    assert.deepEqual(listener.filterChains.filter((c) => limits(c).length > 0).map((c) => c.name), []);
  });

  it('a source-less audit policy: every source shares would_deny|*', () => {
    const withSharedAudit: Policy[] = [...base, { name: 'try-out', mode: 'audit', allow: { sni: ['trial.example.net'] } }];
    const listener = compileEgress(withSharedAudit, { maxConnectionsPerSource: 0 }).listeners[0]!;
    assert.deepEqual(names(listener, 'would_deny'), ['would_deny|*']);
    assert.equal(names(compileEgress(withSharedAudit).listeners[0]!, 'would_deny').length, 21);
  });

  it("uncapped forwarding loggers say so (egress.cap \"host\"); capped ones, and the default layout's, carry no such tag", () => {
    const listener = compileEgress(policies, { maxConnectionsPerSource: 0 }).listeners[0]!;
    for (const chain of listener.filterChains) {
      const tags = loggerTags(chain.filters);
      const forwarding = /^(name|original_dst)\|/.test(chain.name!);
      assert.ok(tags.length > 0, chain.name);
      for (const t of tags) assert.equal(t[TAG.cap], forwarding ? CAP_BY_HOST : undefined, chain.name);
    }
    for (const chain of compileEgress(policies).listeners[0]!.filterChains) for (const t of loggerTags(chain.filters)) assert.equal(t[TAG.cap], undefined, chain.name);
  });

  it('the forward proxy: no connection_limit, and its TLS chains\' loggers carry egress.cap "host"', () => {
    const compiled = compileEgress(policies, { maxConnectionsPerSource: 0, forwardProxy: {}, transparent: false });
    let tlsChains = 0;
    for (const listener of compiled.listeners) {
      for (const chain of [...listener.filterChains, ...(listener.defaultFilterChain ? [listener.defaultFilterChain] : [])]) {
        assert.deepEqual(limits(chain), [], chain.name);
        if (chain.name?.startsWith('forward_tls|')) {
          tlsChains++;
          for (const t of loggerTags(chain.filters)) assert.equal(t[TAG.cap], CAP_BY_HOST, chain.name);
        }
      }
    }
    assert.ok(tlsChains > 0);
    // Envoy would take them: strict protos and their PGV rules.
    for (const listener of compiled.listeners) {
      const bytes = encodeProtoJson(TypeUrl.Listener, listener as unknown as ProtoJson);
      decodeStrict(TypeUrl.Listener, bytes);
      assert.deepEqual(validateResource(TypeUrl.Listener, bytes), [], listener.name);
    }
    const withCap = compileEgress(policies, { forwardProxy: {}, transparent: false });
    assert.ok(withCap.listeners.some((l) => l.filterChains.some((c) => limits(c).length > 0)));
  });
});

describe('the ALS: an entry without an upstream host', () => {
  const entry = (tags: Record<string, string>) =>
    encodeProtoJson(TypeUrl.StreamAccessLogsMessage, {
      identifier: { node: { id: 'n1' }, logName: ALS_LOG_NAME },
      tcpLogs: {
        logEntry: [
          {
            commonProperties: {
              downstreamRemoteAddress: { socketAddress: { address: '10.100.0.5', portValue: 40000 } },
              downstreamLocalAddress: { socketAddress: { address: '93.184.216.34', portValue: 443 } },
              startTime: '2026-12-01T10:00:00Z',
              customTags: tags,
            },
          },
        ],
      },
    });

  it('is a per-source-limit denial on a capped chain, nothing on an uncapped one, allowed on an uncapped "log": "all" one', () => {
    assert.equal(decodeAccessLogsMessage(entry({ [TAG.chain]: 'name|10.100.0.4/30' }), { first: true }).records[0]?.reason, 'per-source-limit');
    assert.deepEqual(decodeAccessLogsMessage(entry({ [TAG.chain]: 'name|*', [TAG.cap]: CAP_BY_HOST }), { first: true }).records, []);
    const logged = decodeAccessLogsMessage(entry({ [TAG.chain]: 'name|10.100.0.4/30', [TAG.cap]: CAP_BY_HOST, [TAG.verdict]: 'allowed', [TAG.policy]: 'vm' }), { first: true }).records;
    assert.deepEqual(logged.map((r) => [r.verdict, r.reason]), [['allowed', undefined]]);
  });

  it('an egress.cap of another value is refused, naming the tag', () => {
    assert.throws(() => decodeAccessLogsMessage(entry({ [TAG.cap]: 'kernel' }), { first: true }), (e: unknown) => e instanceof AlsInputError && e.message.includes('egress.cap') && e.message.includes('"kernel"'));
  });
});
