// Plain HTTP on port 80, through Envoy's path: the filter_chain_matcher model picks the
// chain (with http_inspector's application protocol), the route model (routeMatch.ts)
// picks the virtual host by Host. Allowed hosts are forwarded by name (or to the original
// destination for "original-destination" policies), other hosts get a 403 naming the host
// and allow.sni; address rules still win, audited sources keep would-deny.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileEgress, type CompiledEgress } from '../../src/compile/compileEgress.js';
import { TAG } from '../../src/compile/accessLog.js';
import { AUDIT_CLUSTER } from '../../src/compile/audit.js';
import { PLAIN_HTTP_PROTOCOLS, refusalBodyFor } from '../../src/compile/httpPath.js';
import { EGRESS_LISTENER_PORT, NAME_UPSTREAM_CLUSTER, ORIGINAL_DST_CLUSTER } from '../../src/compile/names.js';
import { intendedRoute } from '../../src/compile/route.js';
import { tcpProxyCluster } from '../../src/compile/tcpProxy.js';
import { encodeProtoJson, decodeStrictToJson } from '../../src/envoy/codec.js';
import { selectByMatcher } from '../../src/envoy/filterChainMatcher.js';
import type { FilterChainJson, ListenerJson } from '../../src/envoy/resources.js';
import { findRouteConfigProblems, routeConfigOf, selectRoute, type RouteSpecifierJson } from '../../src/envoy/routeMatch.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { formatViolation, validateResource } from '../../src/envoy/validateRules.js';
import { cidrContainsIp, mustParseCidr, parseIp } from '../../src/net/ip.js';
import type { Connection, Policy } from '../../src/policy/model.js';
import { connectionFor, policySet } from './arbitraries.js';

const SEED = Number(process.env['PROPERTY_SEED'] ?? 20240607) + 60;
const RUNS = Math.ceil(Number(process.env['PROPERTY_RUNS'] ?? 600) / 4);

const hcmOf = (chain: FilterChainJson): Record<string, unknown> | undefined =>
  chain.filters.find((f) => f.typedConfig['@type'] === TypeUrl.HttpConnectionManager)?.typedConfig;

/** What Envoy does with one plain-HTTP request on port 80: the chain, then the route (from RDS). */
function envoyHttp(compiled: CompiledEgress, connection: Connection, host: string): { chain: string; outcome: 'name' | 'original-destination' | '403' | 'would-deny' | 'tcp'; body?: string } {
  const listener = compiled.listeners[0]!;
  const { chain } = selectByMatcher(listener, { ...connection, applicationProtocols: ['http/1.1'] });
  assert.ok(chain);
  const hcm = hcmOf(chain);
  if (!hcm) return { chain: chain.name!, outcome: 'tcp' };
  // The chain names its route table; Envoy gets it over RDS, never inline.
  assert.equal(hcm['routeConfig'], undefined);
  const config = routeConfigOf(hcm as RouteSpecifierJson, compiled.routes);
  assert.ok(config, `RouteConfiguration ${JSON.stringify(hcm['rds'])} is served`);
  assert.deepEqual(findRouteConfigProblems(config), []);
  const { outcome } = selectRoute(config, { method: 'GET', authority: host, path: '/' });
  if (outcome.kind === 'direct-response') {
    assert.equal(outcome.status, 403);
    return { chain: chain.name!, outcome: '403', body: refusalBodyFor(host) };
  }
  assert.equal(outcome.kind, 'cluster');
  if (outcome.kind !== 'cluster') throw new Error('unreachable');
  const kind = outcome.cluster === NAME_UPSTREAM_CLUSTER ? 'name' : outcome.cluster === ORIGINAL_DST_CLUSTER ? 'original-destination' : outcome.cluster === AUDIT_CLUSTER ? 'would-deny' : undefined;
  assert.ok(kind, outcome.cluster);
  return { chain: chain.name!, outcome: kind };
}

const selects = (policy: Policy, sourceIp: string): boolean =>
  policy.sources === undefined || policy.sources.some((cidr) => cidrContainsIp(mustParseCidr(cidr), parseIp(sourceIp)!));

const httpCase = policySet
  .chain((policies) => fc.tuple(...policies.map((p) => fc.constantFrom<Policy>(p, p, { ...p, mode: 'audit' }))).map((ps) => [...ps]))
  .chain((policies) => fc.tuple(fc.constant(policies), fc.array(connectionFor(policies).filter((c) => c.serverName !== undefined), { minLength: 10, maxLength: 20 })));

describe('plain HTTP on port 80, property', () => {
  it('an allowed Host is forwarded as the policies say, any other gets a 403 naming it; address rules and audit keep their chains', () => {
    fc.assert(
      fc.property(httpCase, ([policies, connections]) => {
        const compiled = compileEgress(policies);
        const listener = compiled.listeners[0]!;
        for (const c of connections) {
          const host = c.serverName!.toLowerCase();
          const plain: Connection = { sourceIp: c.sourceIp, destinationIp: c.destinationIp, destinationPort: 80 };
          const at = `${JSON.stringify(plain)} Host ${host}`;
          const byAddress = intendedRoute(policies, plain, EGRESS_LISTENER_PORT);
          const byHost = intendedRoute(policies, { ...plain, serverName: host }, EGRESS_LISTENER_PORT);
          const audited = policies.some((p) => p.mode === 'audit' && selects(p, c.sourceIp));
          const got = envoyHttp(compiled, plain, host);
          if (byAddress.verdict === 'allow') assert.equal(got.outcome, 'tcp', `address rules win: ${at}`);
          else if (byHost.verdict === 'allow') assert.equal(got.outcome, byHost.upstream, at);
          else if (audited) assert.equal(got.outcome, 'would-deny', at);
          else {
            assert.equal(got.outcome, '403', at);
            assert.ok(got.body!.includes(`"${host}"`) && got.body!.includes('allow.sni'), got.body);
          }
          // Not HTTP (no application protocol from http_inspector): never the HTTP chain.
          const raw = selectByMatcher(listener, plain).chain!;
          assert.equal(hcmOf(raw), undefined, at);
        }
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it("the listener with HTTP chains, and every route table served over RDS, keep Envoy's protos and rules", () => {
    fc.assert(
      fc.property(policySet, (policies) => {
        const compiled = compileEgress(policies);
        const resources = [[TypeUrl.Listener, compiled.listeners[0]!] as const, ...(compiled.routes ?? []).map((r) => [TypeUrl.RouteConfiguration, r] as const)];
        for (const [typeUrl, resource] of resources) {
          const bytes = encodeProtoJson(typeUrl, resource as unknown as Record<string, unknown>);
          decodeStrictToJson(typeUrl, bytes);
          assert.deepEqual(validateResource(typeUrl, bytes).map(formatViolation), [], typeUrl);
        }
        // Every route table a chain names is served, and only those.
        const named = compiled.listeners[0]!.filterChains.flatMap((c) => {
          const rds = hcmOf(c)?.['rds'] as { routeConfigName: string } | undefined;
          return rds ? [rds.routeConfigName] : [];
        });
        assert.deepEqual((compiled.routes ?? []).map((r) => r.name), named.sort());
      }),
      { seed: SEED + 1, numRuns: Math.ceil(RUNS / 4) },
    );
  });
});

describe('plain HTTP on port 80, examples', () => {
  const policies: Policy[] = [
    { name: 'web', sources: ['10.0.0.0/24'], log: 'all', allow: { sni: ['github.com', '*.example.com'] } },
    { name: 'legacy', sources: ['10.0.0.0/24'], upstream: 'original-destination', allow: { sni: ['old.net'] } },
  ];
  const compiled = compileEgress(policies);
  const listener = compiled.listeners[0]!;
  const from = { sourceIp: '10.0.0.7', destinationIp: '93.184.216.34', destinationPort: 80 };

  it('routes by Host: exact, wildcard at any depth, port 80 only, original destination, else 403', () => {
    assert.deepEqual(envoyHttp(compiled, from, 'github.com'), { chain: 'http|10.0.0.0/24', outcome: 'name' });
    assert.equal(envoyHttp(compiled, from, 'GitHub.com:80').outcome, 'name');
    assert.equal(envoyHttp(compiled, from, 'a.b.example.com').outcome, 'name');
    assert.equal(envoyHttp(compiled, from, 'example.com').outcome, '403');
    assert.equal(envoyHttp(compiled, from, 'github.com:22').outcome, '403', 'another port in Host would make Envoy dial it');
    assert.equal(envoyHttp(compiled, from, 'old.net').outcome, 'original-destination');
    const refused = envoyHttp(compiled, from, 'evil.com');
    assert.equal(refused.outcome, '403');
    assert.equal(refused.body, refusalBodyFor('evil.com'));
    // Sources no policy names: refused with the explanation too.
    assert.equal(envoyHttp(compiled, { ...from, sourceIp: '10.9.9.9' }, 'github.com').outcome, '403');
  });

  it('http_inspector runs after the TLS inspector, and the connection manager logs refusals (and, with log: all, the rest)', () => {
    assert.deepEqual(listener.listenerFilters?.map((f) => f.name), [
      'envoy.filters.listener.original_dst', 'envoy.filters.listener.tls_inspector', 'envoy.filters.listener.http_inspector',
    ]);
    const chain = listener.filterChains.find((c) => c.name === 'http|10.0.0.0/24')!;
    const logs = hcmOf(chain)!['accessLog'] as { typedConfig: { '@type': string; commonConfig: { customTags: { tag: string; literal: { value: string } }[] } } }[];
    assert.deepEqual(logs.map((l) => l.typedConfig['@type']), [TypeUrl.HttpGrpcAccessLogConfig, TypeUrl.HttpGrpcAccessLogConfig]);
    const tags = logs.map((l) => Object.fromEntries(l.typedConfig.commonConfig.customTags.map((t) => [t.tag, t.literal.value])));
    // "denied" is left out where the reason implies it (src/denials/record.ts).
    assert.deepEqual(tags.map((t) => [t[TAG.verdict], t[TAG.reason], t[TAG.policy]]), [[undefined, 'http-host', undefined], ['allowed', undefined, 'web']]);
  });

  it('an audited source: allowed hosts as usual, others forwarded to the original destination and logged as would-deny', () => {
    const auditCompiled = compileEgress([{ ...policies[0]!, mode: 'audit' }]);
    const audit = auditCompiled.listeners[0]!;
    assert.equal(envoyHttp(auditCompiled, from, 'github.com').outcome, 'name');
    assert.equal(envoyHttp(auditCompiled, from, 'evil.com').outcome, 'would-deny');
    const chain = audit.filterChains.find((c) => c.name === 'http|10.0.0.0/24')!;
    const logs = hcmOf(chain)!['accessLog'] as { typedConfig: { commonConfig: { customTags: { tag: string; literal: { value: string } }[] } } }[];
    const tags = logs.map((l) => Object.fromEntries(l.typedConfig.commonConfig.customTags.map((t) => [t.tag, t.literal.value])));
    // The listener's default name is left out (src/denials/record.ts).
    assert.deepEqual(tags[0], { [TAG.verdict]: 'would-deny', [TAG.reason]: 'http-host', [TAG.chain]: 'http|10.0.0.0/24', [TAG.policy]: 'web' });
  });

  it('the matcher sends every protocol http_inspector sets, and only plain HTTP to port 80, to the HTTP chain', () => {
    for (const protocol of PLAIN_HTTP_PROTOCOLS) {
      assert.equal(selectByMatcher(listener, { ...from, applicationProtocols: [protocol] }).chain?.name, 'http|10.0.0.0/24', protocol);
    }
    // TLS whose ALPN says http/1.1 (tls_inspector sets it too): the TLS branch, refused by SNI.
    assert.equal(selectByMatcher(listener, { ...from, serverName: 'evil.com', transportProtocol: 'tls', applicationProtocols: ['http/1.1'] }).chain?.name, 'reject');
    // Plain HTTP to another port, and raw TCP to port 80: refused.
    assert.equal(selectByMatcher(listener, { ...from, destinationPort: 8080, applicationProtocols: ['http/1.1'] }).chain?.name, 'reject');
    assert.equal(selectByMatcher(listener, from).chain?.name, 'reject');
  });

  it('the TLS path is unchanged: SNI still decides on port 80', () => {
    const { chain } = selectByMatcher(listener, { ...from, serverName: 'github.com' });
    assert.equal(chain?.name, 'name|10.0.0.0/24');
    assert.equal(tcpProxyCluster(chain!), NAME_UPSTREAM_CLUSTER);
  });
});
