// The model of Envoy's filter_chain_matcher on hand-written trees: each case is a rule
// read in Envoy's source (see src/envoy/filterChainMatcher.ts for the files).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { actionChainName, evaluateMatcher, findMatcherProblems, selectByMatcher } from '../../src/envoy/filterChainMatcher.js';
import type { FilterChainMatchInput } from '../../src/envoy/filterChainMatch.js';
import type { ListenerJson, MatcherJson, OnMatchJson } from '../../src/envoy/resources.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';

const to = (name: string): OnMatchJson => ({ action: { name: 'filter-chain-name', typedConfig: { '@type': TypeUrl.StringValue, value: name } } });
const input = (typeUrl: string) => ({ name: 'input', typedConfig: { '@type': typeUrl } });
const range = (cidr: string) => ({ addressPrefix: cidr.split('/')[0]!, prefixLen: Number(cidr.split('/')[1]) });
const ipTree = (typeUrl: string, rangeMatchers: { ranges: string[]; onMatch: OnMatchJson; exclusive?: boolean }[], onNoMatch?: OnMatchJson): MatcherJson => ({
  matcherTree: {
    input: input(typeUrl),
    customMatch: { name: 'ip', typedConfig: { '@type': TypeUrl.IpMatcher, rangeMatchers: rangeMatchers.map((r) => ({ ...r, ranges: r.ranges.map(range) })) } },
  },
  ...(onNoMatch && { onNoMatch }),
});
const names = (domainMatchers: { domains: string[]; onMatch: OnMatchJson }[], onNoMatch?: OnMatchJson): MatcherJson => ({
  matcherTree: { input: input(TypeUrl.ServerNameInput), customMatch: { name: 'sni', typedConfig: { '@type': TypeUrl.ServerNameMatcher, domainMatchers } } },
  ...(onNoMatch && { onNoMatch }),
});
const conn = (over: Partial<FilterChainMatchInput> = {}): FilterChainMatchInput => ({ sourceIp: '10.0.0.5', destinationIp: '192.0.2.1', destinationPort: 443, ...over });
const chainOf = (m: MatcherJson, c: FilterChainMatchInput): string | undefined => actionChainName(evaluateMatcher(m, c).action);

describe('filter_chain_matcher model: IPMatcher (trie_matcher.h)', () => {
  const never: OnMatchJson = { matcher: ipTree(TypeUrl.DestinationIpInput, [{ ranges: ['203.0.113.0/24'], onMatch: to('never') }]) };
  it('takes the longest range holding the address, whatever the declaration order', () => {
    const m = ipTree(TypeUrl.SourceIpInput, [{ ranges: ['10.0.0.0/8'], onMatch: to('wide') }, { ranges: ['10.0.0.4/30'], onMatch: to('narrow') }], to('none'));
    assert.equal(chainOf(m, conn()), 'narrow');
    assert.equal(chainOf(m, conn({ sourceIp: '10.9.0.1' })), 'wide');
    assert.equal(chainOf(m, conn({ sourceIp: '192.0.2.9' })), 'none');
    assert.equal(chainOf(m, conn({ sourceIp: 'fd00::1' })), 'none');
  });
  it('hands a nested no-match to the next range unless that one is exclusive, and reports it as backtracking (every release since 1.22)', () => {
    const open = ipTree(TypeUrl.SourceIpInput, [{ ranges: ['10.0.0.0/8'], onMatch: to('wide') }, { ranges: ['10.0.0.4/30'], onMatch: never }], to('none'));
    const result = evaluateMatcher(open, conn());
    assert.equal(actionChainName(result.action), 'wide');
    assert.equal(result.backtracked, true);
    assert.equal(result.fellThrough, false);
    const toNoMatch = evaluateMatcher(ipTree(TypeUrl.SourceIpInput, [{ ranges: ['10.0.0.4/30'], onMatch: never }], to('none')), conn());
    assert.deepEqual([actionChainName(toNoMatch.action), toNoMatch.backtracked, toNoMatch.fellThrough], ['none', true, false]);
    const exclusive = ipTree(TypeUrl.SourceIpInput, [{ ranges: ['10.0.0.0/8'], onMatch: to('wide'), exclusive: true }, { ranges: ['10.0.0.4/30'], onMatch: never }], to('none'));
    assert.equal(chainOf(exclusive, conn()), 'none');
  });
});

describe('filter_chain_matcher model: ServerNameMatcher (domain_matcher.h)', () => {
  const m = names(
    [
      { domains: ['api.github.com'], onMatch: to('exact') },
      { domains: ['*.github.com'], onMatch: to('wild') },
      { domains: ['*.com'], onMatch: to('com') },
    ],
    to('none'),
  );
  it('exact first, then wildcards by longest suffix; a wildcard never matches its apex', () => {
    assert.equal(chainOf(m, conn({ serverName: 'api.github.com' })), 'exact');
    assert.equal(chainOf(m, conn({ serverName: 'a.b.github.com' })), 'wild');
    assert.equal(chainOf(m, conn({ serverName: 'github.com' })), 'com');
    assert.equal(chainOf(m, conn({ serverName: 'example.org' })), 'none');
    assert.equal(chainOf(m, conn()), 'none', 'no SNI: on_no_match');
  });
  it('"*" is tried last', () => {
    const g = names([{ domains: ['*'], onMatch: to('any') }, { domains: ['*.io'], onMatch: to('io') }]);
    assert.equal(chainOf(g, conn({ serverName: 'x.io' })), 'io');
    assert.equal(chainOf(g, conn({ serverName: 'x.org' })), 'any');
  });
});

describe('filter_chain_matcher model: exact_match_map and the listener', () => {
  const root: MatcherJson = {
    matcherTree: { input: input(TypeUrl.DestinationPortInput), exactMatchMap: { map: { '15001': to('loop') } } },
    onNoMatch: { matcher: names([{ domains: ['github.com'], onMatch: to('gh') }], to('reject')) },
  };
  const listener: ListenerJson = {
    name: 'l',
    address: { socketAddress: { address: '0.0.0.0', portValue: 15001 } },
    filterChains: ['loop', 'gh', 'reject'].map((name) => ({ name, filters: [] })),
    filterChainMatcher: root,
  };
  it('looks the port up as decimal text, else on_no_match', () => {
    assert.equal(selectByMatcher(listener, conn({ destinationPort: 15001, serverName: 'github.com' })).chain?.name, 'loop');
    const gh = selectByMatcher(listener, conn({ serverName: 'github.com' }));
    assert.equal(gh.chain?.name, 'gh');
    assert.deepEqual(gh.path, ['destination_port=443: no entry', 'server_name github.com = github.com', '→ gh']);
    assert.equal(gh.fellThrough, false);
  });
  it('a map whose nested matcher does not match takes its on_no_match only in newer releases: reported as a fall-through', () => {
    const nested: MatcherJson = {
      matcherTree: { input: input(TypeUrl.DestinationPortInput), exactMatchMap: { map: { '443': { matcher: names([{ domains: ['github.com'], onMatch: to('gh') }]) } } } },
      onNoMatch: to('reject'),
    };
    const result = evaluateMatcher(nested, conn({ serverName: 'example.org' }));
    assert.deepEqual([actionChainName(result.action), result.fellThrough, result.backtracked], ['reject', true, false]);
  });
  it('falls to the default chain when the action names no chain, and finds that problem', () => {
    const dangling: ListenerJson = { ...listener, filterChains: listener.filterChains.filter((c) => c.name !== 'gh'), defaultFilterChain: { name: 'dflt', filters: [] } };
    assert.equal(selectByMatcher(dangling, conn({ serverName: 'github.com' })).chain?.name, 'dflt');
    assert.deepEqual(findMatcherProblems(dangling).map((p) => p.message), ['filterChainMatcher.onNoMatch.domainMatchers[0]: action names "gh", which no filter chain has']);
    assert.deepEqual(findMatcherProblems(listener), []);
  });
  it('finds duplicate domains and bad wildcards, as Envoy refuses them', () => {
    const bad: ListenerJson = { ...listener, filterChainMatcher: names([{ domains: ['a.com', 'x*.com'], onMatch: to('gh') }, { domains: ['a.com'], onMatch: to('gh') }]) };
    assert.equal(findMatcherProblems(bad).length, 2);
  });
});
