// Envoy's filter-chain selection, level by level, on hand-written listeners.
// The "no backtracking" cases are the ones a naive matcher gets wrong.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  findFilterChainConflicts,
  selectFilterChain,
  type FilterChainMatchInput,
} from '../../src/envoy/filterChainMatch.js';
import type { CidrRangeJson, FilterChainJson, FilterChainMatchJson, ListenerJson } from '../../src/envoy/resources.js';

const range = (cidr: string): CidrRangeJson => {
  const [addressPrefix, length] = cidr.split('/');
  return { addressPrefix: addressPrefix!, prefixLen: Number(length) };
};

const chain = (name: string, match?: FilterChainMatchJson): FilterChainJson => ({
  name,
  ...(match && { filterChainMatch: match }),
  filters: [],
});

/** A listener whose default chain is "default", or none when `defaultChain` is null. */
function listener(chains: FilterChainJson[], defaultChain: FilterChainJson | null = chain('default')): ListenerJson {
  return {
    name: 'test',
    address: { socketAddress: { address: '0.0.0.0', portValue: 15001 } },
    filterChains: chains,
    ...(defaultChain && { defaultFilterChain: defaultChain }),
  };
}

const base: FilterChainMatchInput = { sourceIp: '192.0.2.10', sourcePort: 40000, destinationIp: '198.51.100.1', destinationPort: 443 };
const pick = (l: ListenerJson, connection: Partial<FilterChainMatchInput> = {}): string | undefined =>
  selectFilterChain(l, { ...base, ...connection })?.name;

describe('selectFilterChain: destination port', () => {
  const l = listener([
    chain('port-443', { destinationPort: 443, sourcePrefixRanges: [range('10.0.0.0/8')] }),
    chain('any-port'),
  ]);

  it('takes the chain for the exact port', () => {
    assert.equal(pick(l, { sourceIp: '10.1.1.1' }), 'port-443');
  });
  it('uses port-less chains for other ports', () => {
    assert.equal(pick(l, { destinationPort: 80 }), 'any-port');
  });
  it('never falls back from a port branch to the port-less chains', () => {
    assert.equal(pick(l, { sourceIp: '192.0.2.10' }), 'default');
  });
});

describe('selectFilterChain: destination IP', () => {
  const l = listener([
    chain('wide', { prefixRanges: [range('10.0.0.0/8')] }),
    chain('narrow', { prefixRanges: [range('10.1.0.0/16')], serverNames: ['a.com'] }),
    chain('v6', { prefixRanges: [range('2001:db8::/32')] }),
    chain('anywhere', { serverNames: ['b.com'] }),
  ]);

  it('takes the longest matching prefix', () => {
    assert.equal(pick(l, { destinationIp: '10.1.2.3', serverName: 'a.com' }), 'narrow');
    assert.equal(pick(l, { destinationIp: '10.2.0.1' }), 'wide');
    assert.equal(pick(l, { destinationIp: '2001:db8::1' }), 'v6');
    assert.equal(pick(l, { destinationIp: '2001:db9::1' }), 'default');
  });
  it('never falls back from the longest prefix to a wider one', () => {
    // 10.1.0.0/16 is chosen; it has no chain for b.com, and 10.0.0.0/8 is not tried.
    assert.equal(pick(l, { destinationIp: '10.1.2.3', serverName: 'x.com' }), 'default');
  });
  it('never falls back from a prefix to chains without prefix_ranges (the brief example)', () => {
    const brief = listener([
      chain('ten-a', { prefixRanges: [range('10.0.0.0/8')], serverNames: ['a.com'] }),
      chain('any-b', { serverNames: ['b.com'] }),
    ]);
    assert.equal(pick(brief, { destinationIp: '10.1.1.1', serverName: 'b.com' }), 'default');
    assert.equal(pick(brief, { destinationIp: '11.1.1.1', serverName: 'b.com' }), 'any-b');
    assert.equal(pick(brief, { destinationIp: '10.1.1.1', serverName: 'a.com' }), 'ten-a');
  });
  it('matches host bits of a prefix as Envoy truncates them', () => {
    const sloppy = listener([chain('sloppy', { prefixRanges: [{ addressPrefix: '10.1.2.3', prefixLen: 8 }] })]);
    assert.equal(pick(sloppy, { destinationIp: '10.200.0.1' }), 'sloppy');
  });
});

describe('selectFilterChain: server names', () => {
  const l = listener([
    chain('exact', { serverNames: ['api.github.com'] }),
    chain('wild-deep', { serverNames: ['*.eu.github.com'] }),
    chain('wild', { serverNames: ['*.github.com'] }),
    chain('wild-tld', { serverNames: ['*.com'] }),
    chain('none'),
  ]);

  it('prefers the exact name', () => {
    assert.equal(pick(l, { serverName: 'api.github.com' }), 'exact');
  });
  it('then the longest wildcard suffix', () => {
    assert.equal(pick(l, { serverName: 'x.eu.github.com' }), 'wild-deep');
    assert.equal(pick(l, { serverName: 'a.b.eu.github.com' }), 'wild-deep');
    assert.equal(pick(l, { serverName: 'www.github.com' }), 'wild');
    assert.equal(pick(l, { serverName: 'github.com' }), 'wild-tld');
    assert.equal(pick(l, { serverName: 'eu.github.com' }), 'wild');
  });
  it('then chains without server_names; a wildcard never matches its apex', () => {
    assert.equal(pick(l, { serverName: 'example.org' }), 'none');
    assert.equal(pick(l, { serverName: 'com' }), 'none');
  });
  it('treats no SNI and an empty SNI alike', () => {
    assert.equal(pick(l, {}), 'none');
    assert.equal(pick(l, { serverName: '' }), 'none');
  });
  it('compares names case-insensitively, as Envoy lower-cases both', () => {
    assert.equal(pick(listener([chain('upper', { serverNames: ['API.GitHub.com'] })]), { serverName: 'api.GITHUB.com' }), 'upper');
  });
  it('never falls back from a name to a wildcard or to chains without names', () => {
    const l2 = listener([
      chain('api-from-a', { serverNames: ['api.github.com'], sourcePrefixRanges: [range('172.31.0.4/30')] }),
      chain('wild-from-b', { serverNames: ['*.github.com'], sourcePrefixRanges: [range('172.31.0.8/30')] }),
      chain('anything'),
    ]);
    assert.equal(pick(l2, { serverName: 'api.github.com', sourceIp: '172.31.0.5' }), 'api-from-a');
    assert.equal(pick(l2, { serverName: 'api.github.com', sourceIp: '172.31.0.9' }), 'default');
    assert.equal(pick(l2, { serverName: 'x.github.com', sourceIp: '172.31.0.5' }), 'default');
    assert.equal(pick(l2, { serverName: 'x.gitlab.com', sourceIp: '172.31.0.5' }), 'anything');
  });
});

describe('selectFilterChain: transport and application protocols', () => {
  const l = listener([
    chain('tls-h2', { transportProtocol: 'tls', applicationProtocols: ['h2'] }),
    chain('tls-http11', { transportProtocol: 'tls', applicationProtocols: ['http/1.1'] }),
    chain('tls-other', { transportProtocol: 'tls' }),
    chain('raw', { transportProtocol: 'raw_buffer' }),
  ]);

  it('defaults the transport protocol from the presence of SNI', () => {
    assert.equal(pick(l, { serverName: 'a.com' }), 'tls-other');
    assert.equal(pick(l, {}), 'raw');
  });
  it("takes the first of the client's ALPN values that a chain names", () => {
    assert.equal(pick(l, { serverName: 'a.com', applicationProtocols: ['h2', 'http/1.1'] }), 'tls-h2');
    assert.equal(pick(l, { serverName: 'a.com', applicationProtocols: ['http/1.1', 'h2'] }), 'tls-http11');
    assert.equal(pick(l, { serverName: 'a.com', applicationProtocols: ['h3'] }), 'tls-other');
  });
  it('never falls back from an exact transport protocol to chains without one', () => {
    const l2 = listener([chain('tls-a', { transportProtocol: 'tls', serverNames: ['a.com'], sourcePrefixRanges: [range('10.0.0.0/8')] }), chain('a', { serverNames: ['a.com'] })]);
    assert.equal(pick(l2, { serverName: 'a.com', transportProtocol: 'tls' }), 'default');
    assert.equal(pick(l2, { serverName: 'a.com', transportProtocol: 'raw_buffer' }), 'a');
  });
});

describe('selectFilterChain: sources', () => {
  it('matches the direct source before the source type and source IP', () => {
    const l = listener([
      chain('direct', { directSourcePrefixRanges: [range('10.0.0.0/8')], sourcePrefixRanges: [range('192.0.2.0/24')] }),
      chain('rest'),
    ]);
    assert.equal(pick(l, { directSourceIp: '10.1.1.1' }), 'direct');
    assert.equal(pick(l, { directSourceIp: '10.1.1.1', sourceIp: '203.0.113.1' }), 'default');
    assert.equal(pick(l, {}), 'rest');
  });

  it('uses SAME_IP_OR_LOOPBACK or EXTERNAL chains when present for the kind of peer, else ANY', () => {
    const l = listener([
      chain('local', { sourceType: 'SAME_IP_OR_LOOPBACK', sourcePrefixRanges: [range('127.0.0.0/8')] }),
      chain('any'),
    ]);
    assert.equal(pick(l, { sourceIp: '127.0.0.1' }), 'local');
    assert.equal(pick(l, { sourceIp: '192.0.2.10' }), 'any');
    // The peer is local and local chains exist: ANY is not tried even though none of them matches.
    assert.equal(pick(l, { sourceIp: '198.51.100.1', destinationIp: '198.51.100.1' }), 'default');
    const external = listener([chain('external', { sourceType: 'EXTERNAL' }), chain('any')]);
    assert.equal(pick(external, { sourceIp: '192.0.2.10' }), 'external');
    assert.equal(pick(external, { sourceIp: '::1', destinationIp: '::1' }), 'any');
  });

  it('takes the longest source prefix, then the exact source port, then port-less chains', () => {
    const l = listener([
      chain('wide', { sourcePrefixRanges: [range('10.0.0.0/8')] }),
      chain('narrow', { sourcePrefixRanges: [range('10.1.0.0/16')], sourcePorts: [5000] }),
      chain('narrow-any-port', { sourcePrefixRanges: [range('10.1.0.0/16'), range('fd00::/8')] }),
    ]);
    assert.equal(pick(l, { sourceIp: '10.1.2.3', sourcePort: 5000 }), 'narrow');
    assert.equal(pick(l, { sourceIp: '10.1.2.3', sourcePort: 5001 }), 'narrow-any-port');
    assert.equal(pick(l, { sourceIp: '10.2.0.1' }), 'wide');
    assert.equal(pick(l, { sourceIp: 'fd00::1' }), 'narrow-any-port');
    assert.equal(pick(l, { sourceIp: '11.0.0.1' }), 'default');
  });

  it('never falls back from a source prefix to a wider one', () => {
    const l = listener([
      chain('wide', { sourcePrefixRanges: [range('10.0.0.0/8')] }),
      chain('narrow-port', { sourcePrefixRanges: [range('10.1.0.0/16')], sourcePorts: [5000] }),
    ]);
    assert.equal(pick(l, { sourceIp: '10.1.2.3', sourcePort: 6000 }), 'default');
  });
});

describe('selectFilterChain: the default chain', () => {
  it('is undefined when the listener has none', () => {
    const l = listener([chain('only', { serverNames: ['a.com'] })], null);
    assert.equal(pick(l, { serverName: 'b.com' }), undefined);
    assert.equal(pick(l, { serverName: 'a.com' }), 'only');
  });
  it('takes everything when there are no other chains', () => {
    assert.equal(pick(listener([]), { serverName: 'a.com' }), 'default');
  });
});

describe('findFilterChainConflicts', () => {
  const kinds = (l: ListenerJson): string[] => findFilterChainConflicts(l).map((c) => c.kind);

  it('accepts distinct, nested and disjoint matches', () => {
    assert.deepEqual(
      kinds(listener([
        chain('a', { serverNames: ['a.com', '*.a.com'], sourcePrefixRanges: [range('10.0.0.0/8')] }),
        chain('b', { serverNames: ['a.com'], sourcePrefixRanges: [range('10.1.0.0/16')] }),
        chain('c', { prefixRanges: [range('10.0.0.0/8')] }),
        chain('d'),
      ])),
      [],
    );
  });
  it('reports two chains with the same matching rules', () => {
    const conflicts = findFilterChainConflicts(listener([chain('x', { serverNames: ['a.com'] }), chain('y', { serverNames: ['a.com'] })]));
    assert.deepEqual(conflicts.map((c) => [c.kind, c.filterChains]), [['duplicate-match', ['x', 'y']]]);
  });
  it('reports chains that share one (port, prefix, name, source) cell', () => {
    assert.deepEqual(kinds(listener([chain('x', { serverNames: ['a.com', 'b.com'] }), chain('y', { serverNames: ['b.com', 'c.com'] })])), ['overlapping-match']);
    assert.deepEqual(kinds(listener([chain('x', { serverNames: ['a.com', 'A.com'] })])), ['overlapping-match']);
    assert.deepEqual(kinds(listener([chain('x', { prefixRanges: [range('10.0.0.0/8'), { addressPrefix: '10.9.9.9', prefixLen: 8 }] })])), ['overlapping-match']);
  });
  it('refuses partial wildcards in server_names', () => {
    assert.deepEqual(kinds(listener([chain('x', { serverNames: ['a*.com'] })])), ['partial-wildcard']);
    assert.deepEqual(kinds(listener([chain('x', { serverNames: ['*'] })])), ['partial-wildcard']);
    assert.deepEqual(kinds(listener([chain('x', { serverNames: ['*.com', '*.a.com'] })])), []);
  });
  it('refuses bad prefixes and ports', () => {
    assert.deepEqual(kinds(listener([chain('x', { prefixRanges: [{ addressPrefix: '10.0.0.0', prefixLen: 33 }] })])), ['invalid-prefix']);
    assert.deepEqual(kinds(listener([chain('x', { sourcePrefixRanges: [{ addressPrefix: 'example.com', prefixLen: 8 }] })])), ['invalid-prefix']);
    assert.deepEqual(kinds(listener([chain('x', { destinationPort: 70000 })])), ['invalid-port']);
  });
  it('reports a /0 next to a chain without ranges at the same level', () => {
    assert.deepEqual(kinds(listener([chain('x', { prefixRanges: [range('0.0.0.0/0')] }), chain('y', { serverNames: ['a.com'] })])), ['ambiguous-prefix']);
  });
  it('requires some filter chain', () => {
    assert.deepEqual(kinds(listener([], null)), ['no-filter-chains']);
    assert.deepEqual(kinds(listener([])), []);
  });
});
