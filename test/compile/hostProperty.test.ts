// Issue 7: the generator against the policies' routes on random per-microVM hosts: hundreds
// of sources (IPv4 and IPv6, each its own range and policy), group policies over ranges
// that overlap them, source-less shared policies, wildcards, address rules with ports (the
// listener's own among them), both upstreams; in both profiles. Envoy's choice (the models
// in src/envoy/) must be the intended route, including where the connection goes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileEgress } from '../../src/compile/compileEgress.js';
import { EGRESS_LISTENER_PORT, NAME_UPSTREAM_CLUSTER, ORIGINAL_DST_CLUSTER } from '../../src/compile/names.js';
import { intendedRoute } from '../../src/compile/route.js';
import { tcpProxyCluster } from '../../src/compile/tcpProxy.js';
import { decodeStrict, encodeProtoJson } from '../../src/envoy/codec.js';
import { selectFilterChain } from '../../src/envoy/filterChainMatch.js';
import { findMatcherProblems, selectByMatcher } from '../../src/envoy/filterChainMatcher.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { validateResource } from '../../src/envoy/validateRules.js';
import type { CidrAllow, Connection, Policy, PolicyUpstream } from '../../src/policy/model.js';
import { intendedVerdict } from '../../src/policy/verdict.js';
import { forwardChainLabel, sourceLabel } from './sourceLabel.js';

const SEED = Number(process.env['PROPERTY_SEED'] ?? 20240607);
const RUNS = Number(process.env['HOST_PROPERTY_RUNS'] ?? 6);

const NAMES = ['a.com', 'b.a.com', '*.a.com', 'c.io', '*.c.io', 'x.b.c.io', '*.b.c.io', 'pkg.dev', 'api.pkg.dev', '*.pkg.dev'];
const DESTINATIONS = ['10.1.0.0/16', '10.1.2.0/24', '10.1.2.3/32', '192.0.2.0/24', '140.82.112.0/20', '0.0.0.0/0', '2001:db8::/32', '2001:db8:1::/48', '10.50.0.0/16'];
const PORTS = [22, 443, 5432, EGRESS_LISTENER_PORT];
const GROUP_SOURCES = ['10.50.0.0/16', '10.50.1.0/24', '10.50.0.0/22', 'fd00:1::/64', '0.0.0.0/0', '10.0.0.0/8'];
const PROBE_DESTINATIONS = ['10.1.2.3', '10.1.2.4', '10.1.3.1', '192.0.2.9', '140.82.112.5', '8.8.8.8', '2001:db8::1', '2001:db8:1::5', '2001:db9::1', '10.50.0.1'];
const PROBE_NAMES = ['a.com', 'b.a.com', 'z.b.a.com', 'c.io', 'x.b.c.io', 'y.x.b.c.io', 'pkg.dev', 'api.pkg.dev', 'q.api.pkg.dev', 'other.org'];

const vmSource = (i: number, v6: boolean, host: boolean): string =>
  v6 ? `fd00:1::${(i * 4).toString(16)}/${host ? 128 : 126}` : `10.50.${i >> 6}.${(i & 63) * 4}/${host ? 32 : 30}`;
const vmIp = (source: string, offset: number): string => {
  const [address, length] = source.split('/') as [string, string];
  const spare = Number(length) === 32 || Number(length) === 128 ? 0 : offset;
  if (address.includes(':')) return address.replace(/([0-9a-f]+)$/, (h) => (parseInt(h, 16) + spare).toString(16));
  const octets = address.split('.').map(Number);
  return [...octets.slice(0, 3), octets[3]! + spare].join('.');
};

const cidrRule: fc.Arbitrary<CidrAllow> = fc
  .tuple(fc.constantFrom(...DESTINATIONS), fc.option(fc.uniqueArray(fc.constantFrom(...PORTS), { minLength: 1, maxLength: 2 }), { nil: undefined }))
  .map(([cidr, ports]) => (ports ? { cidr, ports: [...ports].sort((a, b) => a - b) } : { cidr }));
const upstream: fc.Arbitrary<PolicyUpstream | undefined> = fc.constantFrom(undefined, undefined, 'original-destination');
const allowSpec = fc.record({
  sni: fc.uniqueArray(fc.constantFrom(...NAMES), { maxLength: 4 }).map((s) => [...s].sort()),
  cidrs: fc.array(cidrRule, { maxLength: 2 }),
  upstream,
});

function policyOf(name: string, sources: string[] | undefined, spec: { sni: string[]; cidrs: CidrAllow[]; upstream: PolicyUpstream | undefined }): Policy {
  const cidrs = [...new Map(spec.cidrs.map((c) => [`${c.cidr}|${c.ports?.join(',') ?? ''}`, c])).values()].sort((a, b) => (a.cidr < b.cidr ? -1 : a.cidr > b.cidr ? 1 : 0));
  return {
    name,
    ...(sources && { sources }),
    ...(spec.upstream && { upstream: spec.upstream }),
    allow: { sni: spec.sni, ...(cidrs.length > 0 && { cidrs }) },
  };
}

interface Host {
  readonly policies: Policy[];
  readonly vmSources: string[];
}

const host: fc.Arbitrary<Host> = fc
  .record({
    vms: fc.array(fc.record({ v6: fc.boolean(), host: fc.boolean(), allow: allowSpec }), { minLength: 100, maxLength: 300 }),
    groups: fc.array(fc.record({ sources: fc.uniqueArray(fc.constantFrom(...GROUP_SOURCES), { minLength: 1, maxLength: 2 }), allow: allowSpec }), { maxLength: 4 }),
    shared: fc.array(allowSpec, { maxLength: 2 }),
  })
  .map(({ vms, groups, shared }) => {
    const vmSources = vms.map((vm, i) => vmSource(i, vm.v6 && i % 4 === 0, vm.host));
    return {
      vmSources,
      policies: [
        ...vms.map((vm, i) => policyOf(`vm-${String(i).padStart(4, '0')}`, [vmSources[i]!], vm.allow)),
        ...groups.map((g, i) => policyOf(`group-${i}`, [...g.sources].sort(), g.allow)),
        ...shared.map((s, i) => policyOf(`shared-${i}`, undefined, s)),
      ],
    };
  });

const connections = (h: Host): fc.Arbitrary<Connection[]> =>
  fc.array(
    fc
      .record({
        source: fc.oneof(fc.nat({ max: h.vmSources.length - 1 }).map((i) => h.vmSources[i]!), fc.constantFrom('10.60.0.0/30', 'fd00:9::/126')),
        offset: fc.nat({ max: 3 }),
        destinationIp: fc.constantFrom(...PROBE_DESTINATIONS),
        destinationPort: fc.constantFrom(...PORTS, 80),
        serverName: fc.option(fc.constantFrom(...PROBE_NAMES), { nil: undefined }),
      })
      .map(({ source, offset, destinationIp, destinationPort, serverName }) => ({
        sourceIp: vmIp(source, offset),
        destinationIp,
        destinationPort,
        ...(serverName !== undefined && { serverName }),
      })),
    { minLength: 150, maxLength: 150 },
  );

describe('random per-microVM hosts (hundreds of sources)', () => {
  it('profile hardened: the chosen chain is the intended route and upstream, on the source\'s own chain, with no fall-back', () => {
    fc.assert(
      fc.property(host.chain((h) => fc.tuple(fc.constant(h), connections(h))), ([h, conns]) => {
        const listener = compileEgress(h.policies).listeners[0]!;
        assert.deepEqual(findMatcherProblems(listener), []);
        for (const connection of conns) {
          const { chain, fellThrough, path } = selectByMatcher(listener, connection);
          const at = `${JSON.stringify(connection)} via ${path.join(' / ')}`;
          assert.ok(chain, at);
          assert.equal(fellThrough, false, at);
          const route = intendedRoute(h.policies, connection, EGRESS_LISTENER_PORT);
          if (route.verdict === 'deny') {
            assert.equal(chain.name, route.reason === 'loop' ? 'reject_loop' : 'reject', at);
            continue;
          }
          assert.equal(tcpProxyCluster(chain), route.upstream === 'name' ? NAME_UPSTREAM_CLUSTER : ORIGINAL_DST_CLUSTER, at);
          assert.equal(chain.name, `${route.upstream === 'name' ? 'name' : 'original_dst'}|${sourceLabel(h.policies, connection.sourceIp)}`, at);
        }
      }),
      { seed: SEED + 40, numRuns: RUNS },
    );
  });

  it('profile hardened, --max-connections-per-source 0: the intended route and upstream, on "*"\'s shared chain unless a sourced "log": "all" policy selects the source, no connection_limit anywhere', () => {
    let shared = 0;
    let own = 0;
    fc.assert(
      fc.property(host.chain((h) => fc.tuple(fc.constant(h), connections(h))), ([h, conns]) => {
        // Some microVMs and a group log every connection: their chains must stay their own.
        const policies = h.policies.map((p, i) => (i % 5 === 3 || p.name === 'group-1' ? { ...p, log: 'all' as const } : p));
        const listener = compileEgress(policies, { maxConnectionsPerSource: 0 }).listeners[0]!;
        assert.deepEqual(findMatcherProblems(listener), []);
        assert.deepEqual(listener.filterChains.filter((c) => c.filters.some((f) => f.typedConfig['@type'] === TypeUrl.ConnectionLimit)).map((c) => c.name), []);
        for (const connection of conns) {
          const { chain, fellThrough, path } = selectByMatcher(listener, connection);
          const at = `${JSON.stringify(connection)} via ${path.join(' / ')}`;
          assert.ok(chain, at);
          assert.equal(fellThrough, false, at);
          const route = intendedRoute(policies, connection, EGRESS_LISTENER_PORT);
          if (route.verdict === 'deny') {
            assert.equal(chain.name, route.reason === 'loop' ? 'reject_loop' : 'reject', at);
            continue;
          }
          assert.equal(tcpProxyCluster(chain), route.upstream === 'name' ? NAME_UPSTREAM_CLUSTER : ORIGINAL_DST_CLUSTER, at);
          const label = forwardChainLabel(policies, connection.sourceIp, 0);
          if (label === '*') shared++;
          else own++;
          assert.equal(chain.name, `${route.upstream === 'name' ? 'name' : 'original_dst'}|${label}`, at);
        }
      }),
      { seed: SEED + 43, numRuns: RUNS },
    );
    // Both kinds of source were reached (the test can fail either way).
    assert.ok(shared > 100 && own > 10, `shared ${shared}, own ${own}`);
  });

  it('profile seed: the chosen chain forwards iff the policies allow it and it is not to the listener\'s port', () => {
    fc.assert(
      fc.property(host.chain((h) => fc.tuple(fc.constant(h), connections(h))), ([h, conns]) => {
        const listener = compileEgress(h.policies, { profile: 'seed' }).listeners[0]!;
        for (const connection of conns) {
          const chain = selectFilterChain(listener, connection);
          const envoy = chain && tcpProxyCluster(chain) === ORIGINAL_DST_CLUSTER ? 'allow' : 'deny';
          const intended = connection.destinationPort === EGRESS_LISTENER_PORT ? 'deny' : intendedVerdict(h.policies, connection).verdict;
          assert.equal(envoy, intended, `${JSON.stringify(connection)} picked "${chain?.name}"`);
        }
      }),
      { seed: SEED + 41, numRuns: RUNS },
    );
  });

  it("both profiles: every resource decodes strictly with Envoy's protos and keeps their PGV rules", () => {
    fc.assert(
      fc.property(host, fc.constantFrom('hardened' as const, 'seed' as const), fc.constantFrom(0, 512), (h, profile, maxConnectionsPerSource) => {
        const { listeners, clusters } = compileEgress(h.policies, { profile, maxConnectionsPerSource });
        for (const [typeUrl, resource] of [...listeners.map((r) => [TypeUrl.Listener, r] as const), ...clusters.map((r) => [TypeUrl.Cluster, r] as const)]) {
          const bytes = encodeProtoJson(typeUrl, resource as unknown as Record<string, unknown>);
          decodeStrict(typeUrl, bytes);
          assert.deepEqual(validateResource(typeUrl, bytes), [], `PGV rules of ${typeUrl} (${profile}, cap ${maxConnectionsPerSource})`);
        }
      }),
      { seed: SEED + 42, numRuns: 4 },
    );
  });
});
