// Issue 7 (listener size): the names of the matcher's inputs, custom matchers and actions and
// of the hardened chains' network filters are opaque to Envoy, which finds each extension by
// its typed_config's type URL (src/compile/names.ts says where in Envoy's source). So:
//   - any renaming leaves Envoy's choice (the model, and POST /v1/check) unchanged, even a
//     misleading one (the source-IP input called "dst");
//   - a wrong type behind a name is caught (the model reads types, never names);
//   - the generated names are the short ones, and each source's server names are written
//     once, so the saving cannot silently regress; the seed profile keeps its canonical names.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { checkConnection } from '../../src/compile/check.js';
import { compileEgress, type CompiledEgress } from '../../src/compile/compileEgress.js';
import { EGRESS_LISTENER_PORT, FILTER_CHAIN_NAME_ACTION, HardenedFilterName, IP_MATCHER_NAME, MatcherInputName, SERVER_NAME_MATCHER_NAME, TCP_PROXY_FILTER } from '../../src/compile/names.js';
import { intendedRoute } from '../../src/compile/route.js';
import { selectByMatcher } from '../../src/envoy/filterChainMatcher.js';
import type { ListenerJson, TypedExtensionJson } from '../../src/envoy/resources.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import type { Connection, Policy } from '../../src/policy/model.js';
import { policiesAndConnections } from './arbitraries.js';
import { connectionsOf, hostPolicies, vmName } from './hosts.js';
import { sourceLabel } from './sourceLabel.js';

const SEED = Number(process.env['PROPERTY_SEED'] ?? 20240607);
const RUNS = Number(process.env['PROPERTY_RUNS'] ?? 60);

type Named = { readonly kind: 'matcher' | 'filter'; readonly part: TypedExtensionJson };

/** Every opaque name of a hardened listener: the matcher's inputs, custom matchers and actions, and the chains' network filters. */
function opaqueParts(listener: ListenerJson): Named[] {
  const parts: Named[] = [];
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (node === null || typeof node !== 'object') return;
    for (const [key, value] of Object.entries(node)) {
      if ((key === 'input' || key === 'customMatch' || key === 'action') && value && typeof value === 'object' && 'typedConfig' in value) {
        parts.push({ kind: 'matcher', part: value as TypedExtensionJson });
      }
      visit(value);
    }
  };
  visit(listener.filterChainMatcher);
  for (const chain of listener.filterChains) for (const filter of chain.filters) parts.push({ kind: 'filter', part: filter });
  return parts;
}

/** The compiled resources with every opaque name of the egress listener replaced (a deep copy). */
function renamed(compiled: CompiledEgress, rename: (name: string, typeUrl: string) => string): CompiledEgress {
  const copy = structuredClone(compiled) as CompiledEgress;
  for (const { part } of opaqueParts(copy.listeners[0]!)) (part as { name: string }).name = rename(part.name ?? '', String(part.typedConfig['@type']));
  return copy;
}

const MATCHER_NAMES = new Set<string>([...Object.values(MatcherInputName), IP_MATCHER_NAME, SERVER_NAME_MATCHER_NAME, FILTER_CHAIN_NAME_ACTION]);
const FILTER_NAMES = new Set<string>(Object.values(HardenedFilterName));
const SHORT = [...MATCHER_NAMES, ...FILTER_NAMES];

const withHttp = (c: Connection) => (c.destinationPort === 80 && c.serverName ? { ...c, httpHost: c.serverName } : c);

describe('opaque extension names (Envoy selects by type URL)', () => {
  it('any renaming, misleading ones included, leaves the chosen chain, verdict, upstream and route unchanged', () => {
    fc.assert(
      fc.property(policiesAndConnections, fc.integer({ min: 1, max: SHORT.length - 1 }), fc.string({ maxLength: 6 }), ([policies, connections], shift, prefix) => {
        const compiled = compileEgress(policies);
        // Each name becomes another of the short names (the source-IP input called "dst", the
        // IP matcher "domains", …), or a random one.
        const misleading = renamed(compiled, (name) => SHORT[(SHORT.indexOf(name) + shift) % SHORT.length]!);
        const random = renamed(compiled, (name, typeUrl) => `${prefix}${name.length}${typeUrl.length % 7}x`);
        for (const connection of connections.map(withHttp)) {
          const expected = checkConnection(compiled, policies, connection);
          assert.deepEqual(checkConnection(misleading, policies, connection), expected, JSON.stringify(connection));
          assert.deepEqual(checkConnection(random, policies, connection), expected, JSON.stringify(connection));
        }
      }),
      { seed: SEED + 70, numRuns: RUNS },
    );
  });

  it('a wrong type behind a name is caught: the model follows the type, so the intended routes stop matching', () => {
    const policies = hostPolicies(30, 6);
    const listener = compileEgress(policies).listeners[0]!;
    const connections = Array.from({ length: 30 }, (_, i) => connectionsOf(policies, i)).flat();
    const swaps: [string, string][] = [
      [TypeUrl.SourceIpInput, TypeUrl.DestinationIpInput],
      [TypeUrl.DestinationPortInput, TypeUrl.SourcePortInput],
      [TypeUrl.ServerNameInput, TypeUrl.ApplicationProtocolInput],
    ];
    // What the property tests (hostProperty.test.ts) check: the chain is the intended route's.
    const intendedChain = (connection: Connection): string => {
      const route = intendedRoute(policies, connection, EGRESS_LISTENER_PORT);
      if (route.verdict === 'deny') return route.reason === 'loop' ? 'reject_loop' : 'reject';
      return `${route.upstream === 'name' ? 'name' : 'original_dst'}|${sourceLabel(policies, connection.sourceIp)}`;
    };
    for (const c of connections) assert.equal(selectByMatcher(listener, c).chain?.name, intendedChain(c), JSON.stringify(c));
    for (const [from, to] of swaps) {
      const wrong = structuredClone(listener);
      let swapped = 0;
      for (const { part } of opaqueParts(wrong)) if (part.typedConfig['@type'] === from) (part.typedConfig['@type'] = to), (swapped += 1);
      assert.ok(swapped > 0);
      const caught = connections.filter((c) => selectByMatcher(wrong, c).chain?.name !== intendedChain(c));
      assert.ok(caught.length > 0, `${from} behind its name → ${to}: some connection takes another chain than the intended one`);
    }
  });

  it('the hardened listener uses the short names; HTTP filters and the seed profile keep the canonical ones', () => {
    const compiled = compileEgress(hostPolicies(50, 20));
    const listener = compiled.listeners[0]!;
    const parts = opaqueParts(listener);
    assert.ok(parts.length > 500);
    for (const { kind, part } of parts) {
      assert.ok((kind === 'matcher' ? MATCHER_NAMES : FILTER_NAMES).has(part.name ?? ''), `${kind} ${String(part.typedConfig['@type'])} named "${part.name}"`);
    }
    // Each short name stands for one type only.
    const typesOf = new Map<string, Set<string>>();
    for (const { part } of parts) (typesOf.get(part.name!) ?? typesOf.set(part.name!, new Set()).get(part.name!)!).add(String(part.typedConfig['@type']));
    for (const [name, types] of typesOf) assert.equal(types.size, 1, `"${name}" names ${[...types].join(', ')}`);
    const httpFilters = listener.filterChains.flatMap((c) =>
      c.filters.flatMap((f) => (f.typedConfig['@type'] === TypeUrl.HttpConnectionManager ? ((f.typedConfig['httpFilters'] ?? []) as TypedExtensionJson[]) : [])),
    );
    assert.ok(httpFilters.length > 0);
    for (const f of httpFilters) assert.match(f.name ?? '', /^envoy\.filters\.http\./, 'HTTP filter names key typed_per_filter_config');
    const seed = compileEgress(hostPolicies(5, 3), { profile: 'seed' }).listeners[0]!;
    for (const chain of [...seed.filterChains, ...(seed.defaultFilterChain ? [seed.defaultFilterChain] : [])]) {
      for (const f of chain.filters) assert.equal(f.name, TCP_PROXY_FILTER, 'seed 002 §6.6 shape');
    }
  });

  it('each source\'s server names are written once, also for a source with address rules on some ports', () => {
    const policies: Policy[] = hostPolicies(20, 5);
    const listener = compileEgress(policies).listeners[0]!;
    const text = JSON.stringify(listener.filterChainMatcher);
    for (const i of [0, 10, 3]) {
      const own = policies.find((p) => p.name === vmName(i))!;
      // vm 0 and vm 10 have an address rule with a port (hosts.ts); their names must not be repeated under it.
      const unique = own.allow.sni.filter((name) => policies.every((p) => p === own || !p.allow.sni.includes(name)));
      assert.ok(unique.length > 0);
      for (const name of unique) assert.equal(text.split(JSON.stringify(name)).length - 1, 1, `${vmName(i)}: ${name}`);
    }
  });
});
