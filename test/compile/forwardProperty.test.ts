// The forward proxy's contract, checked on random policy sets through the models of
// Envoy's matching (filter_chain_matcher, then HTTP route selection, routeMatch.ts):
//   forward-http: for every source, method (CONNECT or an absolute-form GET), authority
//     (names near the policies' patterns, address literals at the edges of their ranges)
//     and port, the route Envoy takes forwards through the dynamic forward proxy exactly
//     when the policies intend it (forwardRoute.ts), on the chain of the most specific
//     source range holding the client; a refusal is a 403 naming the host, the client
//     and the policy field (allow.sni / allow.cidrs) and why (no policy, or the port).
//   forward-tls: an SNI is forwarded exactly when a policy selecting the source allows it.
// Every resource survives Envoy's protos and PGV rules; every route configuration loads.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { cidrKeysOf, cidrOfKey } from '../../src/compile/cidrKeys.js';
import { compileEgress } from '../../src/compile/compileEgress.js';
import { checkForwardHttp, checkForwardTls, connectionManagerOf } from '../../src/compile/forwardCheck.js';
import { intendedForwardRoute } from '../../src/compile/forwardRoute.js';
import { decodeStrictToJson, encodeProtoJson } from '../../src/envoy/codec.js';
import { findMatcherProblems } from '../../src/envoy/filterChainMatcher.js';
import { findRouteConfigProblems } from '../../src/envoy/routeMatch.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { validateResource } from '../../src/envoy/validateRules.js';
import { cidrContainsIp, parseIp } from '../../src/net/ip.js';
import type { Policy } from '../../src/policy/model.js';
import { sniPatternMatches } from '../../src/policy/verdict.js';
import { connectionFor, edgeAddresses, policySet } from './arbitraries.js';

const SEED = Number(process.env['PROPERTY_SEED'] ?? 20240607) + 100;
const RUNS = Number(process.env['PROPERTY_RUNS'] ?? 400);
const FORWARD = { forwardProxy: {} } as const;

/** Extra rules the shared pool lacks: non-octet-aligned IPv4 ranges and IPv6 single addresses. */
const EXTRA_RULES = ['10.0.0.4/30', '192.168.1.128/25', '140.82.112.0/20', '10.1.2.3/32', '2001:db8::1/128', '2001:db8::/32'];
const forwardPolicies: fc.Arbitrary<Policy[]> = policySet.chain((policies) =>
  fc.tuple(...policies.map(() => fc.option(fc.record({ cidr: fc.constantFrom(...EXTRA_RULES), ports: fc.option(fc.uniqueArray(fc.constantFrom(22, 80, 443, 8443), { minLength: 1, maxLength: 2 }), { nil: undefined }) }), { nil: undefined }))).map((extras) =>
    policies.map((policy, i) => {
      const extra = extras[i];
      if (!extra) return policy;
      const rule = extra.ports ? { cidr: extra.cidr, ports: [...extra.ports].sort((a, b) => a - b) } : { cidr: extra.cidr };
      const cidrs = [...(policy.allow.cidrs ?? []).filter((c) => c.cidr !== extra.cidr), rule].sort((a, b) => (a.cidr < b.cidr ? -1 : 1));
      return { ...policy, allow: { ...policy.allow, cidrs } };
    }),
  ),
);

const PORTS = [undefined, 22, 80, 443, 8443, 5432] as const;

function requestsFor(policies: readonly Policy[]) {
  const extraAddresses = EXTRA_RULES.flatMap(edgeAddresses);
  return fc.array(
    fc.tuple(connectionFor(policies), fc.constantFrom('CONNECT', 'GET'), fc.constantFrom(...PORTS), fc.boolean(), fc.constantFrom(...extraAddresses)).map(([c, method, port, byName, extra]) => {
      const address = c.destinationIp.includes(':') ? `[${c.destinationIp}]` : c.destinationIp;
      const extraHost = extra.includes(':') ? `[${extra}]` : extra;
      const host = byName && c.serverName !== undefined ? c.serverName : port === 5432 ? extraHost : address;
      return { sourceIp: c.sourceIp, method, authority: port === undefined ? host : `${host}:${port}` };
    }),
    { minLength: 15, maxLength: 30 },
  );
}

/** The most specific source range any policy names holding the source: whose chain (and cap) the client gets. */
function sourceLabel(policies: readonly Policy[], sourceIp: string): string {
  const ip = parseIp(sourceIp)!;
  let best: { label: string; length: number } | undefined;
  for (const key of new Set(policies.flatMap((p) => (p.sources ? cidrKeysOf(p.sources) : [])))) {
    const cidr = cidrOfKey(key);
    if (cidrContainsIp(cidr, ip) && (!best || cidr.prefixLength > best.length)) best = { label: key, length: cidr.prefixLength };
  }
  return best?.label ?? '*';
}

describe('forward proxy, property', () => {
  it("forward-http: Envoy's route is the intended one, on the client's own chain, and a refusal says why", () => {
    fc.assert(
      fc.property(forwardPolicies.chain((p) => fc.tuple(fc.constant(p), requestsFor(p))), ([policies, requests]) => {
        const compiled = compileEgress(policies, FORWARD);
        for (const request of requests) {
          const intended = intendedForwardRoute(policies, request);
          const envoy = checkForwardHttp(compiled, policies, request);
          const at = `${JSON.stringify(request)} via ${envoy.path.join(' / ')}`;
          assert.equal(envoy.filterChain, `forward_http|${sourceLabel(policies, request.sourceIp)}`, at);
          assert.equal(envoy.verdict, intended.verdict, at);
          if (intended.verdict === 'allow') {
            assert.equal(envoy.policy, intended.policy, at);
            assert.equal(envoy.upstream?.kind, 'name', at);
            continue;
          }
          assert.equal(envoy.status, 403, at);
          assert.ok(envoy.body?.startsWith(`egress-xds: ${request.authority} refused for ${request.sourceIp}: `), at);
          assert.ok(envoy.body?.includes(intended.field), `${at}: body names ${intended.field}: ${envoy.body}`);
          assert.equal(/: no policy /.test(envoy.body ?? ''), intended.reason === 'no-policy', `${at}: reason ${intended.reason}: ${envoy.body}`);
        }
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('forward-tls: an SNI is forwarded on 443 exactly when a policy selecting the source allows it', () => {
    fc.assert(
      fc.property(forwardPolicies.chain((p) => fc.tuple(fc.constant(p), fc.array(connectionFor(p), { minLength: 10, maxLength: 20 }))), ([policies, connections]) => {
        const compiled = compileEgress(policies, FORWARD);
        for (const c of connections) {
          const source = parseIp(c.sourceIp)!;
          const allowed =
            c.serverName !== undefined &&
            policies.some(
              (p) => (p.sources === undefined || p.sources.some((s) => cidrContainsIp(cidrOfKey(s), source))) && p.allow.sni.some((pattern) => sniPatternMatches(pattern, c.serverName!)),
            );
          const envoy = checkForwardTls(compiled, policies, { sourceIp: c.sourceIp, ...(c.serverName !== undefined && { serverName: c.serverName }) });
          const at = `${JSON.stringify(c)} via ${envoy.path.join(' / ')}`;
          assert.equal(envoy.verdict, allowed ? 'allow' : 'deny', at);
          assert.equal(envoy.filterChain, allowed ? `forward_tls|${sourceLabel(policies, c.sourceIp)}` : 'forward_tls_reject', at);
          if (allowed) assert.equal(envoy.upstream?.address, `${c.serverName!.toLowerCase()}:443`, at);
        }
      }),
      { seed: SEED + 1, numRuns: RUNS },
    );
  });

  it("Envoy would load every listener and route configuration; every resource keeps Envoy's protos and PGV rules", () => {
    fc.assert(
      fc.property(forwardPolicies, fc.boolean(), (policies, transparent) => {
        const { listeners, clusters } = compileEgress(policies, { ...FORWARD, transparent });
        assert.equal(listeners.length, transparent ? 3 : 2);
        assert.equal(clusters.filter((c) => c.name === 'dynamic_forward_proxy_cluster').length, 1, 'one name cluster for every listener');
        for (const listener of listeners) {
          assert.deepEqual(findMatcherProblems(listener), []);
          for (const chain of listener.filterChains) {
            const hcm = connectionManagerOf(chain);
            if (hcm) assert.deepEqual(findRouteConfigProblems(hcm.routeConfig), []);
          }
        }
        const resources = [...listeners.map((r) => [TypeUrl.Listener, r] as const), ...clusters.map((r) => [TypeUrl.Cluster, r] as const)];
        for (const [typeUrl, resource] of resources) {
          const bytes = encodeProtoJson(typeUrl, resource as unknown as Record<string, unknown>);
          const decoded = decodeStrictToJson(typeUrl, bytes);
          assert.deepEqual(encodeProtoJson(typeUrl, decoded), bytes);
          assert.deepEqual(validateResource(typeUrl, bytes), [], `PGV rules of ${typeUrl}`);
        }
      }),
      { seed: SEED + 2, numRuns: Math.ceil(RUNS / 8) },
    );
  });
});
