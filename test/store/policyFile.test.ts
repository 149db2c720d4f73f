import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger, silentLogger } from '../../src/log.js';
import { parsePolicyFile, PolicyFileError, policyFileSource } from '../../src/store/policyFile.js';
import { watchPolicyFile, type PolicyFileOutcome } from '../../src/store/policyFileWatch.js';
import { openPolicyStore, type PolicyStore } from '../../src/store/policyStore.js';
import { spec, tempDir } from './helpers.js';

const GOOD = `policies:
  github:
    sources: [172.31.0.0/16]
    allow:
      sni: [WWW.GitHub.com, github.com.]
  internal:
    nodes: ["host-*"]
    allow:
      cidrs:
        - cidr: 10.0.0.0/8
          ports: [443, 80]
`;

test('a valid file parses to canonical policies, sorted by name', () => {
  const parsed = parsePolicyFile(GOOD);
  assert.ok(parsed.ok);
  assert.deepEqual(parsed.policies, [
    { name: 'github', sources: ['172.31.0.0/16'], allow: { sni: ['github.com', 'www.github.com'] } },
    { name: 'internal', nodes: ['host-*'], allow: { sni: [], cidrs: [{ cidr: '10.0.0.0/8', ports: [80, 443] }] } },
  ]);
  assert.deepEqual(parsePolicyFile('{"policies": {}}'), { ok: true, policies: [] });
});

const badFiles: Array<[string, string, string, RegExp]> = [
  ['empty file', '', '', /is empty/],
  ['YAML syntax', 'policies:\n  a: [\n', '', /line \d+, column \d+/],
  ['duplicate policy', 'policies:\n  a: {allow: {}}\n  a: {allow: {}}\n', '', /unique/],
  ['not a mapping', '- a\n- b\n', '', /mapping with a "policies" key/],
  ['unknown top-level key', 'policies: {}\nversion: 2\n', 'version', /unknown field/],
  ['policies a list', 'policies:\n  - name: a\n', 'policies', /mapping of policy name/],
  ['bad policy name', 'policies:\n  Bad_Name: {allow: {}}\n', 'policies.Bad_Name', /policy name must be lower-case/],
  ['missing allow', 'policies:\n  a: {sources: [10.0.0.0/8]}\n', 'policies.a.allow', /is required/],
  ['bad sni', 'policies:\n  a: {allow: {sni: [good.com, "*"]}}\n', 'policies.a.allow.sni[1]', /lone "\*"/],
  ['host bits', 'policies:\n  a: {sources: [10.1.2.3/8], allow: {}}\n', 'policies.a.sources[0]', /host bits set; the network is "10.0.0.0\/8"/],
  ['port as string', 'policies:\n  a: {allow: {cidrs: [{cidr: 10.0.0.0/8, ports: ["443"]}]}}\n', 'policies.a.allow.cidrs[0].ports[0]', /integer port/],
  ['unknown policy field', 'policies:\n  a: {allow: {}, note: hi}\n', 'policies.a.note', /unknown field/],
];

for (const [what, text, field, message] of badFiles) {
  test(`policy file refused: ${what}`, () => {
    const parsed = parsePolicyFile(text);
    assert.equal(parsed.ok, false);
    if (parsed.ok) return;
    assert.equal(parsed.errors[0]?.field, field);
    assert.match(parsed.errors[0]!.message, message);
  });
}

test('every bad file is refused at start with its field, and the store is unchanged', async () => {
  const { path, store, done } = await fixture();
  try {
    await store.put('keep', spec('keep.example.com'), { client: 'test' });
    const before = await snapshot(store);
    for (const [what, text, field, message] of badFiles) {
      await writeFile(path, text);
      await assert.rejects(watchPolicyFile({ store, path, logger: silentLogger, pollMs: 0 }), (error: unknown) => {
        assert.ok(error instanceof PolicyFileError, what);
        assert.equal(error.path, path);
        assert.equal(error.errors[0]?.field, field, what);
        assert.match(error.errors[0]!.message, message, what);
        assert.ok(error.message.startsWith(`policy file ${path} is invalid:`), what);
        return true;
      });
      assert.deepEqual(await snapshot(store), before, `${what} changed the store`);
    }
  } finally {
    await done();
  }
});

test('every invalid policy of a file is reported, not just the first', () => {
  const parsed = parsePolicyFile('policies:\n  a: {allow: {sni: ["a b"]}}\n  b: {allow: {}}\n  c: {nodes: [], allow: {}}\n');
  assert.ok(!parsed.ok);
  assert.deepEqual(parsed.errors.map((e) => e.field), ['policies.a.allow.sni[0]', 'policies.c.nodes']);
});

/** Resolves with the next outcome the watcher reports that satisfies `want`. */
function outcomes() {
  const waiting: Array<{ want: (o: PolicyFileOutcome) => boolean; resolve: (o: PolicyFileOutcome) => void }> = [];
  return {
    onOutcome: (outcome: PolicyFileOutcome) => {
      for (const w of [...waiting]) if (w.want(outcome)) { waiting.splice(waiting.indexOf(w), 1); w.resolve(outcome); }
    },
    next: (want: (o: PolicyFileOutcome) => boolean) =>
      new Promise<PolicyFileOutcome>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no policy file outcome within 5 s')), 5000);
        waiting.push({ want, resolve: (o) => { clearTimeout(timer); resolve(o); } });
      }),
  };
}

/** Saves like an editor: write a sibling, rename it over the file. */
async function save(path: string, text: string): Promise<void> {
  await writeFile(`${path}.swp`, text);
  await rename(`${path}.swp`, path);
}

const snapshot = async (store: PolicyStore) => ({ list: store.list(), history: (await store.history({ limit: 1000 })).entries.length, revision: store.revision });

async function fixture() {
  const dir = await tempDir('egress-xds-policy-file-');
  const path = join(dir.path, 'policies.yaml');
  const store = await openPolicyStore(join(dir.path, 'data'));
  return { dir, path, store, done: async () => { await store.close(); await dir.remove(); } };
}

test('an invalid file at start is refused whole and the store is unchanged', async () => {
  const { path, store, done } = await fixture();
  try {
    await store.put('keep', spec('keep.example.com'), { client: 'test' });
    const before = await snapshot(store);
    await writeFile(path, `${GOOD}  broken:\n    allow: {sni: ["a*.example.com"]}\n`);
    await assert.rejects(watchPolicyFile({ store, path, logger: silentLogger, pollMs: 0 }), (error: unknown) =>
      error instanceof PolicyFileError && error.message.includes(path) && error.message.includes('policies.broken.allow.sni[0]'));
    assert.deepEqual(await snapshot(store), before);
    await assert.rejects(watchPolicyFile({ store, path: join(path, '..', 'missing.yaml'), logger: silentLogger, pollMs: 0 }), /cannot be read \(ENOENT\)/);
    assert.deepEqual(await snapshot(store), before);
  } finally {
    await done();
  }
});

test('the file applies as one commit, owns its policies, and live edits apply', async () => {
  const { path, store, done } = await fixture();
  const events = outcomes();
  await store.put('github', spec('old.example.com'), { client: 'test' }); // to be taken over
  await store.put('by-api', spec('api.example.com'), { client: 'test' });
  await writeFile(path, GOOD);
  const watcher = await watchPolicyFile({ store, path, logger: silentLogger, debounceMs: 20, pollMs: 0, onOutcome: events.onOutcome });
  try {
    assert.equal(store.revision, 3);
    assert.deepEqual(store.list().map((p) => [p.name, p.source]), [
      ['by-api', 'api'], ['github', policyFileSource(path)], ['internal', policyFileSource(path)],
    ]);
    assert.equal((await store.history({ limit: 1 })).entries[0]?.client, `policy-file:${path}`);

    // The API may not write what the file owns, and the refusal changes nothing.
    const before = await snapshot(store);
    const put = await store.put('github', spec('x.example.com'), { client: 'test' });
    assert.equal(put.ok ? undefined : put.error.code, 'conflict');
    assert.match(put.ok ? '' : put.error.message, new RegExp(`managed by the policy file ${path}`));
    const del = await store.delete('internal', { client: 'test' });
    assert.equal(del.ok ? undefined : del.error.code, 'conflict');
    assert.deepEqual(await snapshot(store), before);

    // Live edit: change one policy, drop another -> one commit.
    const applied = events.next((o) => o.status === 'applied');
    await save(path, 'policies:\n  github:\n    allow: {sni: [github.com]}\n');
    assert.deepEqual(await applied, { status: 'applied', changed: ['github', 'internal'], storeRevision: 4 });
    assert.deepEqual(store.list().map((p) => p.name), ['by-api', 'github']);
    assert.deepEqual(store.get('github')?.allow.sni, ['github.com']);

    // An invalid edit is refused; the last good policies stay.
    const stable = await snapshot(store);
    const refused = events.next((o) => o.status === 'refused');
    await save(path, 'policies:\n  github:\n    allow: {sni: ["bad name"]}\n');
    const outcome = await refused;
    assert.equal(outcome.status === 'refused' ? outcome.errors[0]?.field : '', 'policies.github.allow.sni[0]');
    assert.deepEqual(await snapshot(store), stable);

    // A deleted file is refused too (never read as "no policies").
    const missing = events.next((o) => o.status === 'refused');
    await unlink(path);
    await missing;
    assert.deepEqual(await snapshot(store), stable);

    // Fixing the file applies again.
    const fixed = events.next((o) => o.status === 'applied');
    await save(path, 'policies:\n  github:\n    allow: {sni: [github.com, api.github.com]}\n');
    await fixed;
    assert.deepEqual(store.get('github')?.allow.sni, ['api.github.com', 'github.com']);
  } finally {
    await watcher.close();
  }
  try {
    // Once the file is no longer loaded, its former policies are the API's to change.
    const put = await store.put('github', spec('x.example.com'), { client: 'test' });
    assert.ok(put.ok);
    assert.equal(store.get('github')?.source, 'api');
  } finally {
    await done();
  }
});

test('a refusal is logged once per bad content, and again when the same bad edit comes back', async () => {
  const { path, store, done } = await fixture();
  const refusals: string[] = [];
  const logger = createLogger({ write: (line) => { if (line.includes('policy file refused')) refusals.push(line); } });
  const BAD = 'policies:\n  github:\n    allow: {sni: ["bad name"]}\n';
  await writeFile(path, GOOD);
  // Only explicit reloads: no poll, and no directory event fires within the test.
  const watcher = await watchPolicyFile({ store, path, logger, debounceMs: 60_000, pollMs: 0 });
  try {
    await save(path, BAD);
    assert.equal((await watcher.reload()).status, 'refused');
    assert.equal((await watcher.reload()).status, 'refused');
    assert.equal(refusals.length, 1, 'an unchanged bad file is not logged on every poll');
    await save(path, GOOD);
    assert.equal((await watcher.reload()).status, 'unchanged');
    await save(path, BAD);
    assert.equal((await watcher.reload()).status, 'refused');
    assert.equal(refusals.length, 2, 'the bad edit made again is logged again');
  } finally {
    await watcher.close();
    await done();
  }
});

test('policies removed from the file while the server was down are deleted at start', async () => {
  const { path, store, done } = await fixture();
  try {
    await writeFile(path, GOOD);
    await (await watchPolicyFile({ store, path, logger: silentLogger, pollMs: 0 })).close();
    await writeFile(path, 'policies:\n  internal:\n    allow: {sni: [internal.example.com]}\n');
    const watcher = await watchPolicyFile({ store, path, logger: silentLogger, pollMs: 0 });
    await watcher.close();
    assert.deepEqual(store.list().map((p) => [p.name, p.allow.sni]), [['internal', ['internal.example.com']]]);
    // Starting again on the same file changes nothing.
    const before = await snapshot(store);
    await (await watchPolicyFile({ store, path, logger: silentLogger, pollMs: 0 })).close();
    assert.deepEqual(await snapshot(store), before);
  } finally {
    await done();
  }
});
