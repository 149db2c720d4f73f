// Audit mode through Envoy's path (the pure filter_chain_matcher model): with audit policies
// in the set, the listener forwards exactly what the policies allow plus what they would
// refuse from sources an audit policy selects (never a loop), and logs exactly the latter as
// would-deny, naming the audit policies that selected the source.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AUDIT_CLUSTER } from '../../src/compile/audit.js';
import { compileEgress } from '../../src/compile/compileEgress.js';
import { EGRESS_LISTENER_PORT, NAME_UPSTREAM_CLUSTER, ORIGINAL_DST_CLUSTER } from '../../src/compile/names.js';
import { intendedRoute } from '../../src/compile/route.js';
import { tcpProxyCluster } from '../../src/compile/tcpProxy.js';
import { selectByMatcher } from '../../src/envoy/filterChainMatcher.js';
import type { FilterChainJson } from '../../src/envoy/resources.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { validateResource, formatViolation } from '../../src/envoy/validateRules.js';
import { cidrContainsIp, mustParseCidr, parseIp } from '../../src/net/ip.js';
import type { Connection, Policy } from '../../src/policy/model.js';
import { connectionFor, policySet } from './arbitraries.js';

const SEED = Number(process.env['PROPERTY_SEED'] ?? 20240607) + 40;
const RUNS = Number(process.env['PROPERTY_RUNS'] ?? 600);

/** Each policy enforce or audit, at random. */
const withModes = policySet.chain((policies) =>
  fc.tuple(...policies.map((p) => fc.constantFrom<Policy>(p, { ...p, mode: 'audit' }))).map((ps) => [...ps]),
);
const auditCase = withModes.chain((policies) => fc.tuple(fc.constant(policies), fc.array(connectionFor(policies), { minLength: 20, maxLength: 40 })));

const selects = (policy: Policy, sourceIp: string): boolean =>
  policy.sources === undefined || policy.sources.some((cidr) => cidrContainsIp(mustParseCidr(cidr), parseIp(sourceIp)!));

/** The custom tags of the chain's tcp_proxy loggers, one record per logger. */
export function loggerTags(chain: FilterChainJson): Record<string, string>[] {
  const proxy = chain.filters.find((f) => f.typedConfig['@type'] === TypeUrl.TcpProxy);
  const logs = (proxy?.typedConfig['accessLog'] ?? []) as { typedConfig: { commonConfig: { customTags?: { tag: string; literal: { value: string } }[] } } }[];
  return logs.map((l) => Object.fromEntries((l.typedConfig.commonConfig.customTags ?? []).map((t) => [t.tag, t.literal.value])));
}

/**
 * The verdict a logger's entries get (src/denials/record.ts): its tag, else "denied" when it
 * names a reason, else "classified" (the server sorts a forwarding chain's entries).
 */
export const loggedVerdict = (tags: Readonly<Record<string, string>>): string => tags['egress.verdict'] ?? (tags['egress.reason'] ? 'denied' : 'classified');

const FORWARDING = new Set([ORIGINAL_DST_CLUSTER, NAME_UPSTREAM_CLUSTER, AUDIT_CLUSTER]);

function check(policies: readonly Policy[], connection: Connection): void {
  const listener = compileEgress(policies).listeners[0]!;
  const { chain, path } = selectByMatcher(listener, connection);
  const at = `${JSON.stringify(connection)} via ${path.join(' / ')}`;
  assert.ok(chain, at);
  const route = intendedRoute(policies, connection, EGRESS_LISTENER_PORT);
  const audits = policies.filter((p) => p.mode === 'audit' && selects(p, connection.sourceIp)).map((p) => p.name).sort();
  const loop = connection.destinationPort === EGRESS_LISTENER_PORT;
  const wouldDeny = route.verdict === 'deny' && audits.length > 0 && !loop;
  const forwarded = FORWARDING.has(tcpProxyCluster(chain) ?? '');
  assert.equal(forwarded, route.verdict === 'allow' || wouldDeny, `forwarded: ${at}`);
  assert.equal(tcpProxyCluster(chain) === AUDIT_CLUSTER, wouldDeny, `to the audit cluster: ${at}`);
  const wouldDenyLoggers = loggerTags(chain).filter((t) => t['egress.verdict'] === 'would-deny');
  assert.equal(wouldDenyLoggers.length, wouldDeny ? 1 : 0, `logged as would-deny: ${at}`);
  if (wouldDeny) assert.equal(wouldDenyLoggers[0]!['egress.policy'], audits.join(','), at);
  if (route.verdict === 'deny' && !wouldDeny) assert.deepEqual(loggerTags(chain).map(loggedVerdict), ['denied'], at);
}

describe('audit mode, property', () => {
  it("Envoy's path forwards what the policies allow plus what audit policies would refuse, and logs exactly the latter", () => {
    fc.assert(fc.property(auditCase, ([policies, connections]) => { for (const c of connections) check(policies, c); }), { seed: SEED, numRuns: RUNS });
  });

  it('the listener and clusters keep Envoy\'s rules; the audit cluster exists iff some source is audited, and carries the upstream mark', () => {
    fc.assert(
      fc.property(withModes, (policies) => {
        const { listeners, clusters } = compileEgress(policies);
        assert.deepEqual(validateResource(TypeUrl.Listener, listeners[0]! as unknown as Record<string, unknown>).map(formatViolation), []);
        const audit = clusters.find((c) => c.name === AUDIT_CLUSTER);
        const audited = listeners[0]!.filterChains.some((c) => c.name?.startsWith('would_deny|'));
        assert.equal(audit !== undefined, audited);
        if (audit) {
          assert.equal(audit.type, 'ORIGINAL_DST');
          assert.deepEqual(validateResource(TypeUrl.Cluster, audit as unknown as Record<string, unknown>).map(formatViolation), []);
          assert.equal(audit.upstreamBindConfig?.socketOptions?.[0]?.intValue, String(0x20000));
        }
        assert.deepEqual(clusters.map((c) => c.name), [...clusters.map((c) => c.name)].sort());
      }),
      { seed: SEED + 1, numRuns: Math.ceil(RUNS / 3) },
    );
  });
});

describe('audit mode, examples', () => {
  const web: Policy = { name: 'web', sources: ['10.0.0.0/24'], allow: { sni: ['github.com'] } };
  const conn = (sourceIp: string, serverName: string, destinationPort = 443): Connection => ({ sourceIp, destinationIp: '140.82.112.3', destinationPort, serverName });

  it('switching a policy to audit turns its refusals into would-deny forwards, and back', () => {
    const enforce = compileEgress([web]).listeners[0]!;
    const audit = compileEgress([{ ...web, mode: 'audit' }]).listeners[0]!;
    assert.equal(selectByMatcher(enforce, conn('10.0.0.7', 'example.com')).chain?.name, 'reject');
    assert.equal(selectByMatcher(audit, conn('10.0.0.7', 'example.com')).chain?.name, 'would_deny|10.0.0.0/24');
    // Still allowed by name, still refused from other sources and to the listener's own port.
    assert.equal(selectByMatcher(audit, conn('10.0.0.7', 'github.com')).chain?.name, 'name|10.0.0.0/24');
    assert.equal(selectByMatcher(audit, conn('10.0.1.7', 'example.com')).chain?.name, 'reject');
    assert.equal(selectByMatcher(audit, conn('10.0.0.7', 'example.com', EGRESS_LISTENER_PORT)).chain?.name, 'reject_loop');
    // The chains of other sources are untouched by the switch (no drain there).
    const other: Policy = { name: 'other', sources: ['10.1.0.0/24'], allow: { sni: ['a.com'] } };
    const before = compileEgress([web, other]).listeners[0]!.filterChains.filter((c) => c.name?.endsWith('10.1.0.0/24'));
    const after = compileEgress([{ ...web, mode: 'audit' }, other]).listeners[0]!.filterChains.filter((c) => c.name?.endsWith('10.1.0.0/24'));
    assert.deepEqual(after, before);
  });
});
