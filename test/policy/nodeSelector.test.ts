import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { globMatches, isLiteralGlob, policySelectsNode } from '../../src/policy/nodeSelector.js';
import { validatePolicySpec } from '../../src/policy/validate.js';

/** The meaning of a glob, by definition (dynamic programming over both strings): the reference the matcher is held to. */
function reference(glob: string, id: string): boolean {
  const g = [...glob];
  const s = [...id];
  // m[i][j]: g[0..i) matches s[0..j)
  let row = new Array<boolean>(s.length + 1).fill(false);
  row[0] = true;
  for (const c of g) {
    const next = new Array<boolean>(s.length + 1).fill(false);
    if (c === '*') next[0] = row[0]!;
    for (let j = 1; j <= s.length; j++) {
      if (c === '*') next[j] = row[j]! || next[j - 1]!;
      else next[j] = row[j - 1]! && (c === '?' || c === s[j - 1]);
    }
    row = next;
  }
  return row[s.length]!;
}

test('globs: "*" any run (none included), "?" exactly one character, the rest literal', () => {
  const cases: [string, string, boolean][] = [
    ['web-1', 'web-1', true],
    ['web-1', 'web-12', false],
    ['web-?', 'web-1', true],
    ['web-?', 'web-12', false],
    ['web-?', 'web-', false],
    ['web-*', 'web-', true],
    ['web-*', 'web-12', true],
    ['*', '', true],
    ['*-db-?', 'eu-1-db-7', true],
    ['*-db-?', 'eu-1-db-77', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'acb', false],
    ['a*ab', 'aab', true],
    ['a*ab', 'ab', false],
    ['??', 'é€', true],
    ['?', '😀', true],
    ['build.*:7', 'build.x:7', true],
  ];
  for (const [glob, id, expected] of cases) assert.equal(globMatches(glob, id), expected, `${glob} ~ ${id}`);
  assert.equal(isLiteralGlob('web-1'), true);
  assert.equal(isLiteralGlob('web-?'), false);
  assert.equal(isLiteralGlob('web-*'), false);
});

test('globs agree with the definition on any glob and id (property)', () => {
  const alphabet = fc.constantFrom('a', 'b', '-');
  const glob = fc.array(fc.oneof(alphabet, fc.constant('*'), fc.constant('?')), { maxLength: 8 }).map((c) => c.join(''));
  const id = fc.array(alphabet, { maxLength: 12 }).map((c) => c.join(''));
  fc.assert(fc.property(glob, id, (g, s) => globMatches(g, s) === reference(g, s)), { numRuns: 5000 });
});

test('a hostile node id against a many-star glob is matched without backtracking (finishes; a RegExp took seconds per match)', { timeout: 60_000 }, () => {
  const id = 'a'.repeat(100_000);
  const glob = `${'a*'.repeat(100)}b`;
  // 1,000 matches: quadratic or exponential work would not finish within the test's timeout.
  for (let i = 0; i < 1000; i++) assert.equal(globMatches(glob, id), false);
  assert.equal(globMatches(`${'a*'.repeat(100)}a`, id), true);
});

test('policies select by any of their globs; no globs selects every node', () => {
  assert.equal(policySelectsNode({ allow: { sni: [] } }, 'anything'), true);
  assert.equal(policySelectsNode({ nodes: ['x', 'web-?'], allow: { sni: [] } }, 'web-3'), true);
  assert.equal(policySelectsNode({ nodes: ['x', 'web-?'], allow: { sni: [] } }, 'db-3'), false);
});

test('validation accepts "?" in node globs and says what a glob may hold', () => {
  const ok = validatePolicySpec({ nodes: ['web-?', 'db-*'], allow: { sni: [] } });
  assert.equal(ok.ok, true);
  const bad = validatePolicySpec({ nodes: ['web/1'], allow: { sni: [] } });
  assert.equal(bad.ok, false);
  if (!bad.ok) {
    assert.equal(bad.error.field, 'nodes[0]');
    assert.match(bad.error.message, /"\*" \(any run of characters\) and "\?" \(exactly one character\)/);
  }
});
