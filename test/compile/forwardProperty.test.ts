// The forward proxy's contract, checked on random policy sets through the models of
// Envoy's matching (filter_chain_matcher, then HTTP route selection, routeMatch.ts):
//   forward-http: for every source, method (CONNECT or an absolute-form GET), authority
//     (names near the policies' patterns, address literals at the edges of their ranges)
//     and port, the route Envoy takes forwards through the dynamic forward proxy exactly
//     when the policies intend it (forwardRoute.ts), on the chain of the most specific
//     source range holding the client; a refusal is a 403 naming the host, the client
//     and the policy field (allow.sni / allow.cidrs) and why (no policy, or the port).
//   Before the policies, the loop guard: any host on the proxy's own ports (10000, 10001,
//     the transparent 15001, the DNS 15053) is refused, whatever a broad cidr rule allows.
//   Audit: for a source an audit policy selects, what would be refused (except a loop, or
//     a CONNECT naming no port) is forwarded instead.
//   Access logs: the http_grpc loggers whose CEL filter holds for the route taken (the
//     model of celRouteName.ts) log exactly one entry per refusal (denied: loop or
//     no-policy), per would-deny (with the audit policies), and per allowed request when a
//     "log": "all" policy selects the source, none otherwise.
//   forward-tls: an SNI is forwarded exactly when a policy selecting the source allows it,
//     or an audit policy selects the source (logged would-deny); a refusal is logged.
// Every resource survives Envoy's protos and PGV rules; every route configuration loads.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { cidrOfKey } from '../../src/compile/cidrKeys.js';
import { compileEgress } from '../../src/compile/compileEgress.js';
import { checkForwardHttp, checkForwardTls, connectionManagerOf } from '../../src/compile/forwardCheck.js';
import { intendedForwardRoute } from '../../src/compile/forwardRoute.js';
import { decodeStrictToJson, encodeProtoJson } from '../../src/envoy/codec.js';
import { fastEncodeProtoJson } from '../../src/envoy/fastEncode.js';
import type { ListenerJson } from '../../src/envoy/resources.js';
import { findMatcherProblems } from '../../src/envoy/filterChainMatcher.js';
import { findRouteConfigProblems } from '../../src/envoy/routeMatch.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { validateResource } from '../../src/envoy/validateRules.js';
import { cidrContainsIp, parseIp } from '../../src/net/ip.js';
import type { Policy } from '../../src/policy/model.js';
import { sniPatternMatches } from '../../src/policy/verdict.js';
import { connectionFor, edgeAddresses, policySet } from './arbitraries.js';
import { sourceLabel } from './sourceLabel.js';

const SEED = Number(process.env['PROPERTY_SEED'] ?? 20240607) + 100;
const RUNS = Number(process.env['PROPERTY_RUNS'] ?? 400);
const FORWARD = { forwardProxy: {} } as const;

/** Extra rules the shared pool lacks: non-octet-aligned IPv4 ranges and IPv6 single addresses. */
const EXTRA_RULES = ['10.0.0.4/30', '192.168.1.128/25', '140.82.112.0/20', '10.1.2.3/32', '2001:db8::1/128', '2001:db8::/32'];
/** A policy's mode and log setting, mostly the defaults. */
const modes = fc.record({ audit: fc.boolean(), logAll: fc.boolean() });
const forwardPolicies: fc.Arbitrary<Policy[]> = policySet.chain((policies) =>
  fc.tuple(
    fc.tuple(...policies.map(() => fc.option(fc.record({ cidr: fc.constantFrom(...EXTRA_RULES), ports: fc.option(fc.uniqueArray(fc.constantFrom(22, 80, 443, 8443, 10000, 15001), { minLength: 1, maxLength: 2 }), { nil: undefined }) }), { nil: undefined }))),
    fc.tuple(...policies.map(() => fc.oneof({ weight: 3, arbitrary: fc.constant({ audit: false, logAll: false }) }, { weight: 2, arbitrary: modes }))),
  ).map(([extras, settings]) =>
    policies.map((original, i) => {
      const setting = settings[i]!;
      const policy: Policy = { ...original, ...(setting.audit && { mode: 'audit' as const }), ...(setting.logAll && { log: 'all' as const }) };
      const extra = extras[i];
      if (!extra) return policy;
      const rule = extra.ports ? { cidr: extra.cidr, ports: [...extra.ports].sort((a, b) => a - b) } : { cidr: extra.cidr };
      const cidrs = [...(policy.allow.cidrs ?? []).filter((c) => c.cidr !== extra.cidr), rule].sort((a, b) => (a.cidr < b.cidr ? -1 : 1));
      return { ...policy, allow: { ...policy.allow, cidrs } };
    }),
  ),
);

const PORTS = [undefined, 22, 80, 443, 8443, 5432, 10000, 10001, 15001, 15053] as const;
/** The proxy's own ports with the defaults: forward 10000/10001, transparent 15001, DNS 15053. */
const LOOP_PORTS = [10000, 10001, 15001, 15053];

const selectsSource = (p: Policy, sourceIp: string): boolean => {
  const source = parseIp(sourceIp)!;
  return p.sources === undefined || p.sources.some((s) => cidrContainsIp(cidrOfKey(s), source));
};
const namesOf = (policies: readonly Policy[]): string => policies.map((p) => p.name).sort().join(',');

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

describe('forward proxy, property', () => {
  it("forward-http: Envoy's route is the intended one, on the client's own chain, and a refusal says why", () => {
    fc.assert(
      fc.property(forwardPolicies.chain((p) => fc.tuple(fc.constant(p), requestsFor(p))), ([policies, requests]) => {
        const compiled = compileEgress(policies, FORWARD);
        for (const request of requests) {
          const intended = intendedForwardRoute(policies, request, undefined, LOOP_PORTS);
          const envoy = checkForwardHttp(compiled, policies, request, undefined, LOOP_PORTS);
          const at = `${JSON.stringify(request)} via ${envoy.path.join(' / ')}: ${JSON.stringify(envoy.logs)}`;
          const chain = `forward_http|${sourceLabel(policies, request.sourceIp)}`;
          assert.equal(envoy.filterChain, chain, at);
          assert.equal(envoy.verdict, intended.verdict === 'deny' ? 'deny' : 'allow', at);
          const selecting = policies.filter((p) => selectsSource(p, request.sourceIp));
          const logAll = selecting.filter((p) => p.log === 'all');
          const expectedLogs =
            intended.verdict === 'allow'
              ? logAll.length > 0
                ? [{ 'egress.verdict': 'allowed', 'egress.listener': 'forward_http', 'egress.chain': chain, 'egress.policy': namesOf(logAll) }]
                : []
              : intended.verdict === 'would-deny'
                ? [{ 'egress.verdict': 'would-deny', 'egress.reason': 'no-policy', 'egress.listener': 'forward_http', 'egress.chain': chain, 'egress.policy': namesOf(selecting.filter((p) => p.mode === 'audit')) }]
                : [{ 'egress.verdict': 'denied', 'egress.reason': intended.reason === 'loop' ? 'loop' : 'no-policy', 'egress.listener': 'forward_http', 'egress.chain': chain }];
          assert.deepEqual(envoy.logs, expectedLogs, at);
          if (intended.verdict === 'allow') {
            assert.equal(envoy.policy, intended.policy, at);
            assert.equal(envoy.upstream?.kind, 'name', at);
            continue;
          }
          if (intended.verdict === 'would-deny') {
            assert.deepEqual(intended.policies, selecting.filter((p) => p.mode === 'audit').map((p) => p.name).sort(), at);
            assert.equal(envoy.upstream?.kind, 'name', at);
            continue;
          }
          assert.equal(envoy.status, 403, at);
          assert.ok(envoy.body?.startsWith(`egress-xds: ${request.authority} refused for ${request.sourceIp}: `), at);
          if (intended.reason === 'loop') {
            assert.match(envoy.body ?? '', /a loop/, at);
            continue;
          }
          assert.ok(envoy.body?.includes(intended.field), `${at}: body names ${intended.field}: ${envoy.body}`);
          assert.equal(/: no policy /.test(envoy.body ?? ''), intended.reason === 'no-policy', `${at}: reason ${intended.reason}: ${envoy.body}`);
        }
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('forward-tls: an SNI is forwarded on 443 exactly when a policy selecting the source allows it (or audit lets it through), and logged', () => {
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
          const at = `${JSON.stringify(c)} via ${envoy.path.join(' / ')}: ${JSON.stringify(envoy.logs)}`;
          const label = sourceLabel(policies, c.sourceIp);
          const selecting = policies.filter((p) => selectsSource(p, c.sourceIp));
          const audit = selecting.filter((p) => p.mode === 'audit');
          const logAll = selecting.filter((p) => p.log === 'all');
          // Audit: any SNI no policy allows is forwarded; no SNI stays refused (nothing to dial).
          const wouldDeny = !allowed && audit.length > 0 && c.serverName !== undefined;
          assert.equal(envoy.verdict, allowed || wouldDeny ? 'allow' : 'deny', at);
          const chain = allowed ? `forward_tls|${label}` : wouldDeny ? `forward_tls_would_deny|${label}` : 'forward_tls_reject';
          assert.equal(envoy.filterChain, chain, at);
          if (allowed || wouldDeny) assert.equal(envoy.upstream?.address, `${c.serverName!.toLowerCase()}:443`, at);
          const expectedLogs = allowed
            ? logAll.length > 0
              ? [{ 'egress.verdict': 'allowed', 'egress.listener': 'forward_tls', 'egress.chain': chain, 'egress.policy': namesOf(logAll) }]
              : []
            : wouldDeny
              ? [{ 'egress.verdict': 'would-deny', 'egress.reason': 'no-policy', 'egress.listener': 'forward_tls', 'egress.chain': chain, 'egress.policy': namesOf(audit) }]
              : [{ 'egress.verdict': 'denied', 'egress.reason': 'no-policy', 'egress.listener': 'forward_tls', 'egress.chain': chain }];
          assert.deepEqual(envoy.logs, expectedLogs, at);
        }
      }),
      { seed: SEED + 1, numRuns: RUNS },
    );
  });

  it('forward-http with --forward-proxy-inspect-connect: an allowed CONNECT to a name on 443 is forwarded exactly when the SNI inside is allowed for the source', () => {
    const INSPECT = { forwardProxy: { inspectConnect: true } } as const;
    const tunnels = (policies: readonly Policy[]) =>
      fc.array(
        fc.tuple(connectionFor(policies), connectionFor(policies), fc.constantFrom(443, 443, 8443, undefined), fc.boolean(), fc.boolean()).map(([outer, inner, port, sameName, noSni]) => {
          const host = outer.serverName ?? outer.destinationIp;
          const innerSni = noSni ? '' : sameName ? host : (inner.serverName ?? 'elsewhere.invalid');
          return { sourceIp: outer.sourceIp, method: 'CONNECT', authority: port === undefined ? host : `${host}:${port}`, innerSni };
        }),
        { minLength: 15, maxLength: 30 },
      );
    let inspected = 0;
    let refused = 0;
    fc.assert(
      fc.property(forwardPolicies.chain((p) => fc.tuple(fc.constant(p), tunnels(p))), ([policies, requests]) => {
        const compiled = compileEgress(policies, INSPECT);
        const plain = compileEgress(policies, FORWARD);
        for (const request of requests) {
          const intended = intendedForwardRoute(policies, request, undefined, LOOP_PORTS);
          const envoy = checkForwardHttp(compiled, policies, request, undefined, LOOP_PORTS);
          const before = checkForwardHttp(plain, policies, request, undefined, LOOP_PORTS);
          const at = `${JSON.stringify(request)} via ${envoy.path.join(' / ')}: ${JSON.stringify(envoy.logs)}`;
          const selecting = policies.filter((p) => selectsSource(p, request.sourceIp));
          const audited = selecting.some((p) => p.mode === 'audit');
          if (!(intended.verdict === 'allow' && intended.by === 'sni' && intended.port === 443)) {
            // Nothing else changes: refusals, would-deny routes, addresses, other ports.
            assert.deepEqual(envoy, before, at);
            continue;
          }
          inspected++;
          const innerAllowed = request.innerSni !== '' && selecting.some((p) => p.allow.sni.some((pattern) => sniPatternMatches(pattern, request.innerSni)));
          // Audit: another inner SNI is forwarded and logged would-deny; no SNI stays refused.
          const wouldDeny = !innerAllowed && audited && request.innerSni !== '';
          assert.equal(envoy.verdict, innerAllowed || wouldDeny ? 'allow' : 'deny', at);
          assert.equal(envoy.filterChain, `forward_http|${sourceLabel(policies, request.sourceIp)}`, at);
          const denials = (envoy.logs ?? []).filter((l) => l['egress.verdict'] === 'denied');
          const wouldDenials = (envoy.logs ?? []).filter((l) => l['egress.verdict'] === 'would-deny');
          if (innerAllowed || wouldDeny) {
            assert.equal(envoy.upstream?.address, `${request.innerSni.toLowerCase()}:443`, at);
            assert.deepEqual(denials, [], at);
            assert.equal(wouldDenials.length, wouldDeny ? 1 : 0, at);
            if (wouldDeny) {
              assert.equal(wouldDenials[0]!['egress.policy'], namesOf(selecting.filter((p) => p.mode === 'audit')), at);
              assert.match(wouldDenials[0]!['egress.chain'] ?? '', /^forward_inspect\|[0-9a-f]{16}\|would-deny$/, at);
            }
          } else {
            refused++;
            assert.equal(envoy.upstream, undefined, at);
            assert.equal(denials.length, 1, at);
            assert.equal(denials[0]!['egress.reason'], 'no-policy', at);
            assert.equal(denials[0]!['egress.listener'], 'forward_http', at);
            assert.match(denials[0]!['egress.chain'] ?? '', /^forward_inspect\|[0-9a-f]{16}\|reject$/, at);
          }
        }
      }),
      { seed: SEED + 3, numRuns: RUNS },
    );
    assert.ok(inspected > RUNS && refused > RUNS / 4, `the generator reaches both outcomes (${inspected} inspected, ${refused} refused)`);
  });

  it("Envoy would load every listener and route configuration; every resource keeps Envoy's protos and PGV rules", () => {
    fc.assert(
      fc.property(forwardPolicies, fc.boolean(), fc.boolean(), (policies, transparent, inspectConnect) => {
        const { listeners, clusters, routes = [] } = compileEgress(policies, { forwardProxy: { inspectConnect }, transparent });
        const internal = listeners.filter((l) => l.internalListener !== undefined);
        assert.equal(listeners.length - internal.length, transparent ? 3 : 2);
        if (!inspectConnect) assert.equal(internal.length, 0);
        // Every internal listener is reached by its one cluster, and only those.
        assert.deepEqual(
          internal.map((l) => l.name),
          clusters.filter((c) => c.name.startsWith('forward_inspect|')).map((c) => c.name),
        );
        assert.equal(clusters.filter((c) => c.name === 'dynamic_forward_proxy_cluster').length, 1, 'one name cluster for every listener');
        for (const listener of listeners) {
          assert.deepEqual(findMatcherProblems(listener), []);
          for (const chain of listener.filterChains) {
            const hcm = connectionManagerOf(chain);
            // The transparent listener's port-80 chains name their route tables (RDS): checked below.
            if (hcm?.routeConfig) assert.deepEqual(findRouteConfigProblems(hcm.routeConfig), []);
          }
        }
        for (const routeConfig of routes) assert.deepEqual(findRouteConfigProblems(routeConfig), []);
        const resources = [
          ...listeners.map((r) => [TypeUrl.Listener, r] as const),
          ...clusters.map((r) => [TypeUrl.Cluster, r] as const),
          ...routes.map((r) => [TypeUrl.RouteConfiguration, r] as const),
        ];
        for (const [typeUrl, resource] of resources) {
          const bytes = encodeProtoJson(typeUrl, resource as unknown as Record<string, unknown>);
          const decoded = decodeStrictToJson(typeUrl, bytes);
          assert.deepEqual(encodeProtoJson(typeUrl, decoded), bytes);
          assert.deepEqual(validateResource(typeUrl, bytes), [], `PGV rules of ${typeUrl}`);
          // The server's encoder gives the same bytes.
          assert.equal(Buffer.compare(Buffer.from(fastEncodeProtoJson(typeUrl, resource)), Buffer.from(bytes)), 0);
          // What Envoy decodes still has one path specifier per route (an empty prefix survives).
          if (typeUrl === TypeUrl.Listener) {
            for (const chain of (decoded as unknown as ListenerJson).filterChains) {
              const hcm = connectionManagerOf(chain);
              if (hcm?.routeConfig) assert.deepEqual(findRouteConfigProblems(hcm.routeConfig), []);
            }
          }
        }
      }),
      { seed: SEED + 2, numRuns: Math.ceil(RUNS / 8) },
    );
  });
});
