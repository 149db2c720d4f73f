// Issue 7, point 1: on a host of 200 microVMs, editing one microVM's allowlist and then the
// policy all of them share changes no filter chain that carries traffic whose verdict did
// not change: Envoy keeps a connection only on a chain whose configuration is byte-identical
// (listener_impl.cc: chains are compared by their proto; filter_chain_matcher-only changes
// drain nothing), so this is what keeps long-lived connections alive across edits.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileEgress, type CompileProfile } from '../../src/compile/compileEgress.js';
import { EGRESS_LISTENER_PORT } from '../../src/compile/names.js';
import { intendedRoute } from '../../src/compile/route.js';
import { encodeProtoJson, type ProtoJson } from '../../src/envoy/codec.js';
import { selectByMatcher } from '../../src/envoy/filterChainMatcher.js';
import { selectFilterChain } from '../../src/envoy/filterChainMatch.js';
import type { FilterChainJson, ListenerJson } from '../../src/envoy/resources.js';
import { TYPE_PREFIX } from '../../src/envoy/typeUrls.js';
import type { Policy } from '../../src/policy/model.js';
import { SHARED_POLICY, connectionsOf, hostPolicies, vmName, withExtraName } from './hosts.js';

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
}

function compareEdit(before: readonly Policy[], after: readonly Policy[], profile: CompileProfile, extraNames: string[]): EditOutcome {
  const listenerBefore = compileEgress(before, { profile }).listeners[0]!;
  const listenerAfter = compileEgress(after, { profile }).listeners[0]!;
  const disturbed = new Set<number>();
  let verdictChanged = 0;
  let unchanged = 0;
  for (let i = 0; i < MICROVMS; i++) {
    for (const connection of connectionsOf(before, i, extraNames)) {
      if (verdictOf(before, connection) !== verdictOf(after, connection)) {
        verdictChanged++;
        continue;
      }
      unchanged++;
      if (chainBytes(chainOf(listenerBefore, connection)) !== chainBytes(chainOf(listenerAfter, connection))) disturbed.add(i);
    }
  }
  return { disturbed, verdictChanged, unchanged };
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

  it('the edits did change what Envoy receives (the test can fail)', () => {
    for (const [a, b] of [[base, ownEdit], [ownEdit, sharedEdit]] as const) {
      const before = compileEgress(a).listeners[0]!;
      const after = compileEgress(b).listeners[0]!;
      assert.notDeepEqual(before.filterChainMatcher, after.filterChainMatcher);
      // The plain-HTTP chains (httpPath.ts) carry their source's names in their route table:
      // a name edit replaces (drains) them, and only them; see the next test.
      const tcp = (chains: FilterChainJson[]) => chains.filter((c) => !c.name?.startsWith('http|'));
      assert.deepEqual(tcp(after.filterChains), tcp(before.filterChains), 'the chains themselves are untouched');
    }
  });

  it("plain HTTP: one microVM's own edit replaces its HTTP chain alone", () => {
    const before = compileEgress(base).listeners[0]!.filterChains.filter((c) => c.name?.startsWith('http|'));
    const after = compileEgress(ownEdit).listeners[0]!.filterChains.filter((c) => c.name?.startsWith('http|'));
    assert.equal(after.length, before.length);
    const changed = after.filter((c, i) => JSON.stringify(c) !== JSON.stringify(before[i])).map((c) => c.name);
    assert.equal(changed.length, 1, changed.join(', '));
  });

  it('profile seed (for comparison, not a guarantee): the shared edit does disturb microVMs there', () => {
    // The seed's layout carries the allowlist in filter_chain_match, so a shared name lands
    // on chains that hold other traffic: this is what the hardened profile exists to avoid.
    const shared = compareEdit(ownEdit, sharedEdit, 'seed', ['pkg2.common.dev']);
    assert.ok(shared.disturbed.size > 0);
  });
});
