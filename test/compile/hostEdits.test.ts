// Issue 7, point 1: on a host of 200 microVMs, editing one microVM's allowlist and then the
// policy all of them share changes no filter chain that carries traffic whose verdict did
// not change: Envoy keeps a connection only on a chain whose configuration is byte-identical
// (listener_impl.cc: chains are compared by their proto; filter_chain_matcher-only changes
// drain nothing), so this is what keeps long-lived connections alive across edits.
// Plain HTTP on port 80 too: its chain names its route table (RDS), so an edit of names
// changes that RouteConfiguration, which Envoy applies to open connections, and no chain.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileEgress, type CompileProfile } from '../../src/compile/compileEgress.js';
import { EGRESS_LISTENER_PORT } from '../../src/compile/names.js';
import { intendedRoute } from '../../src/compile/route.js';
import { encodeProtoJson, type ProtoJson } from '../../src/envoy/codec.js';
import { selectByMatcher } from '../../src/envoy/filterChainMatcher.js';
import { selectFilterChain } from '../../src/envoy/filterChainMatch.js';
import type { FilterChainJson, ListenerJson } from '../../src/envoy/resources.js';
import type { RouteConfigurationJson } from '../../src/envoy/routeConfig.js';
import { TYPE_PREFIX, TypeUrl } from '../../src/envoy/typeUrls.js';
import type { Policy } from '../../src/policy/model.js';
import { SHARED_POLICY, connectionsOf, hostPolicies, vmIp, vmName, vmSource, withExtraName } from './hosts.js';

const MICROVMS = 200;
const chainBytes = (chain: FilterChainJson | undefined): string =>
  chain === undefined ? '' : Buffer.from(encodeProtoJson(`${TYPE_PREFIX}envoy.config.listener.v3.FilterChain`, chain as unknown as ProtoJson)).toString('base64');
const chainOf = (listener: ListenerJson, connection: Parameters<typeof selectFilterChain>[1]) =>
  listener.filterChainMatcher ? selectByMatcher(listener, connection).chain : selectFilterChain(listener, connection);
const verdictOf = (policies: readonly Policy[], connection: Parameters<typeof intendedRoute>[1]) => JSON.stringify(intendedRoute(policies, connection, EGRESS_LISTENER_PORT));

interface EditOutcome {
  /** Connections whose verdict stayed and whose chain's bytes changed, by microVM. */
  readonly disturbed: Set<number>;
  readonly verdictChanged: number;
  readonly unchanged: number;
  /** Plain-HTTP connections to port 80 (one per microVM) whose chain's bytes changed, by microVM. */
  readonly httpDisturbed: Set<number>;
  /** Route tables (RDS) whose bytes changed, by name. */
  readonly routesChanged: string[];
}

const routeBytes = (routes: readonly RouteConfigurationJson[] | undefined): Map<string, string> =>
  new Map((routes ?? []).map((r) => [r.name!, Buffer.from(encodeProtoJson(TypeUrl.RouteConfiguration, r as unknown as ProtoJson)).toString('base64')]));

function compareEdit(before: readonly Policy[], after: readonly Policy[], profile: CompileProfile, extraNames: string[], maxConnectionsPerSource?: number): EditOutcome {
  const options = { profile, ...(maxConnectionsPerSource !== undefined && { maxConnectionsPerSource }) };
  const compiledBefore = compileEgress(before, options);
  const compiledAfter = compileEgress(after, options);
  const listenerBefore = compiledBefore.listeners[0]!;
  const listenerAfter = compiledAfter.listeners[0]!;
  const disturbed = new Set<number>();
  const httpDisturbed = new Set<number>();
  let verdictChanged = 0;
  let unchanged = 0;
  for (let i = 0; i < MICROVMS; i++) {
    // A long-lived plain-HTTP connection (keep-alive, websockets): its verdict is per request,
    // by Host, so whatever an edit allows, the connection itself must stay.
    const http = { sourceIp: vmIp(i), destinationIp: '203.0.113.80', destinationPort: 80, applicationProtocols: ['http/1.1'] };
    if (chainBytes(chainOf(listenerBefore, http)) !== chainBytes(chainOf(listenerAfter, http))) httpDisturbed.add(i);
    for (const connection of connectionsOf(before, i, extraNames)) {
      if (verdictOf(before, connection) !== verdictOf(after, connection)) {
        verdictChanged++;
        continue;
      }
      unchanged++;
      if (chainBytes(chainOf(listenerBefore, connection)) !== chainBytes(chainOf(listenerAfter, connection))) disturbed.add(i);
    }
  }
  const routesBefore = routeBytes(compiledBefore.routes);
  const routesAfter = routeBytes(compiledAfter.routes);
  const routesChanged = [...new Set([...routesBefore.keys(), ...routesAfter.keys()])].filter((name) => routesBefore.get(name) !== routesAfter.get(name));
  return { disturbed, verdictChanged, unchanged, httpDisturbed, routesChanged };
}

describe('a host of 200 microVMs: edits drain no connection whose verdict stays', () => {
  const base = hostPolicies(MICROVMS);
  const ownEdit = withExtraName(base, vmName(7), 'newly-allowed.example.org');
  const sharedEdit = withExtraName(ownEdit, SHARED_POLICY, 'pkg2.common.dev');

  it("profile hardened: one microVM's own edit, then the shared policy's, change only the matcher for everyone else", () => {
    const own = compareEdit(base, ownEdit, 'hardened', ['newly-allowed.example.org']);
    assert.equal(own.verdictChanged, 1, 'only microVM 7 gains newly-allowed.example.org');
    assert.ok(own.unchanged > MICROVMS * 10);
    assert.deepEqual([...own.disturbed], []);
    const shared = compareEdit(ownEdit, sharedEdit, 'hardened', ['pkg2.common.dev']);
    assert.equal(shared.verdictChanged, MICROVMS, 'every microVM gains pkg2.common.dev');
    assert.deepEqual([...shared.disturbed], []);
  });

  it('profile hardened, plain HTTP on port 80: no edit changes a chain; the edit lands in the route tables (RDS) of the microVMs it concerns', () => {
    const own = compareEdit(base, ownEdit, 'hardened', ['newly-allowed.example.org']);
    assert.deepEqual([...own.httpDisturbed], []);
    assert.deepEqual(own.routesChanged, [`http|${vmSource(7)}`], "only microVM 7's route table");
    const shared = compareEdit(ownEdit, sharedEdit, 'hardened', ['pkg2.common.dev']);
    assert.deepEqual([...shared.httpDisturbed], []);
    // Every source's table gains the shared name (the "*" source's too).
    assert.equal(shared.routesChanged.length, MICROVMS + 1);
  });

  it('--max-connections-per-source 0 (shared forwarding chains): the same edits change no chain that carries traffic whose verdict stays', () => {
    const own = compareEdit(base, ownEdit, 'hardened', ['newly-allowed.example.org'], 0);
    assert.equal(own.verdictChanged, 1);
    assert.ok(own.unchanged > MICROVMS * 10);
    assert.deepEqual([...own.disturbed], []);
    assert.deepEqual([...own.httpDisturbed], []);
    const shared = compareEdit(ownEdit, sharedEdit, 'hardened', ['pkg2.common.dev'], 0);
    assert.equal(shared.verdictChanged, MICROVMS);
    assert.deepEqual([...shared.disturbed], []);
    assert.deepEqual([...shared.httpDisturbed], []);
    // And the chains the microVMs share are what they land on: one name chain for all of them.
    const listener = compileEgress(sharedEdit, { maxConnectionsPerSource: 0 }).listeners[0]!;
    const reached = new Set(Array.from({ length: MICROVMS }, (_, i) => connectionsOf(sharedEdit, i)).flat().map((c) => chainOf(listener, c)?.name));
    assert.deepEqual([...reached].filter((n) => n?.startsWith('name|')), ['name|*']);
    assert.ok(reached.has('original_dst|*'));
  });

  it('--max-connections-per-source 0: a sourced "log": "all" policy keeps its microVM\'s chains its own, and an edit of it disturbs no one else', () => {
    const logged = base.map((p) => (p.name === vmName(3) ? { ...p, log: 'all' as const } : p));
    const listener = compileEgress(logged, { maxConnectionsPerSource: 0 }).listeners[0]!;
    const [first] = connectionsOf(logged, 3);
    assert.equal(chainOf(listener, first!)?.name, `name|${vmSource(3)}`);
    assert.equal(chainOf(listener, connectionsOf(logged, 4)[0]!)?.name, 'name|*');
    const edit = compareEdit(logged, withExtraName(logged, vmName(3), 'newly-allowed.example.org'), 'hardened', ['newly-allowed.example.org'], 0);
    assert.deepEqual([...edit.disturbed], []);
  });

  it('the edits did change what Envoy receives (the test can fail)', () => {
    for (const [a, b] of [[base, ownEdit], [ownEdit, sharedEdit]] as const) {
      const before = compileEgress(a);
      const after = compileEgress(b);
      assert.notDeepEqual(before.listeners[0]!.filterChainMatcher, after.listeners[0]!.filterChainMatcher);
      assert.notDeepEqual(before.routes, after.routes);
      // The chains themselves, the plain-HTTP ones included, are untouched.
      assert.deepEqual(after.listeners[0]!.filterChains, before.listeners[0]!.filterChains);
    }
  });

  it('profile seed (for comparison, not a guarantee): the shared edit does disturb microVMs there', () => {
    // The seed's layout carries the allowlist in filter_chain_match, so a shared name lands
    // on chains that hold other traffic: this is what the hardened profile exists to avoid.
    const shared = compareEdit(ownEdit, sharedEdit, 'seed', ['pkg2.common.dev']);
    assert.ok(shared.disturbed.size > 0);
  });
});
