// The pure and local parts: the learn draft (names → entries, as a property),
// the JSONL file's rotation within its bounds, a slow live follower dropped
// rather than buffered, and serve's denial flags.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { draftNames, draftPolicy, WILDCARD_THRESHOLD } from '../../src/denials/suggest.js';
import { sniPatternMatches } from '../../src/policy/verdict.js';
import { JsonlFile } from '../../src/denials/jsonlFile.js';
import { DenialLog } from '../../src/denials/denialLog.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { parseDenialFlags } from '../../src/cli/denialFlags.js';
import { UsageError } from '../../src/cli/flags.js';
import type { StoredDenial } from '../../src/denials/buffer.js';

const label = fc.stringMatching(/^[a-z][a-z0-9]{0,6}$/);
const name = fc.tuple(fc.array(label, { minLength: 1, maxLength: 3 }), fc.constantFrom('example.com', 'pkg.dev', 'test.org')).map(([labels, parent]) => `${labels.join('.')}.${parent}`);

test('draftNames: every name seen is allowed by the draft, and wildcards appear only where enough subdomains were seen', () => {
  fc.assert(
    fc.property(fc.array(name, { minLength: 1, maxLength: 30 }), (names) => {
      const entries = draftNames(names);
      for (const n of names) assert.ok(entries.some((e) => sniPatternMatches(e, n)), `${n} is covered by ${entries.join(' ')}`);
      for (const entry of entries.filter((e) => e.startsWith('*.'))) {
        const parent = entry.slice(2);
        const children = new Set(names.filter((n) => n.slice(n.indexOf('.') + 1) === parent));
        assert.ok(children.size >= WILDCARD_THRESHOLD, `${entry} from ${children.size} subdomains`);
      }
      // Exact names only where no wildcard of the draft covers them.
      for (const entry of entries.filter((e) => !e.startsWith('*.'))) assert.ok(!entries.some((w) => w.startsWith('*.') && sniPatternMatches(w, entry)));
    }),
    { numRuns: 300 },
  );
  assert.deepEqual(draftNames(['a.x.io', 'b.x.io', 'x.io']), ['a.x.io', 'b.x.io', 'x.io']);
  assert.deepEqual(draftNames(['a.x.io', 'b.x.io', 'c.x.io', 'x.io']), ['*.x.io', 'x.io']);
});

test('draftPolicy: names, /32 rules with the ports seen, incurable reasons left out, valid as a policy', () => {
  const base = { seq: 1, time: '2026-12-01T00:00:00.000Z', node: 'n', source: '172.31.0.5:1000', verdict: 'denied' as const, listener: 'egress_tproxy' };
  const records: StoredDenial[] = [
    { ...base, destination: '1.2.3.4:443', serverName: 'pypi.org', reason: 'no-policy' },
    { ...base, destination: '10.0.0.9:5432', reason: 'no-policy' },
    { ...base, destination: '10.0.0.9:6379', reason: 'no-policy' },
    { ...base, destination: '169.254.169.254:80', reason: 'forbidden-address' },
    { ...base, destination: '1.2.3.4:443', serverName: 'x.org', reason: 'per-source-limit' },
  ];
  const draft = draftPolicy(records, { node: 'n', source: '172.31.0.5' });
  assert.equal(draft.name, 'learned-172-31-0-5');
  assert.deepEqual(draft.spec.allow, { sni: ['pypi.org'], cidrs: [{ cidr: '10.0.0.9/32', ports: [5432, 6379] }] });
  assert.deepEqual(draft.spec.sources, ['172.31.0.5/32']);
  assert.deepEqual(draft.spec.nodes, ['n']);
  assert.deepEqual(draft.leftOut, { 'forbidden-address': 1, 'per-source-limit': 1 });
  assert.equal(draft.used, 3);
});

test('the JSONL file rotates past its size and keeps K old files', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'egress-xds-jsonl-'));
  try {
    const path = join(dir, 'denials.jsonl');
    const file = await JsonlFile.open({ path, maxBytes: 4096, files: 2 });
    for (let i = 0; i < 500; i++) {
      file.append({ i, pad: 'x'.repeat(40) });
      if (i % 50 === 49) await new Promise((r) => setImmediate(r));
    }
    await file.close();
    assert.deepEqual((await readdir(dir)).sort(), ['denials.jsonl', 'denials.jsonl.1', 'denials.jsonl.2']);
    for (const f of await readdir(dir)) assert.ok((await stat(join(dir, f))).size <= 4096 + 4096, f);
    const last = (await readFile(path, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { i: number });
    assert.equal(last.at(-1)!.i, 499);
    // Lines are whole and in order across the rotation.
    const older = (await readFile(`${path}.1`, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { i: number });
    assert.equal(older.at(-1)!.i + 1, last[0]!.i);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a live follower that does not keep up is dropped, not buffered', async () => {
  const metrics = createMetrics();
  const log = await DenialLog.open({ metrics });
  let pushed = 0;
  let ended: string | undefined;
  const added = log.follow({ matches: () => true, push: () => ++pushed < 3, end: (why) => (ended = why) });
  assert.ok(added.ok);
  const record = { time: '2026-12-01T00:00:00.000Z', node: 'n', source: '1.1.1.1:1', destination: '2.2.2.2:443', verdict: 'denied' as const, reason: 'no-policy' as const, listener: 'l' };
  log.ingest(Array.from({ length: 10 }, () => record));
  assert.equal(pushed, 3);
  assert.equal(ended, 'slow');
  assert.equal(log.followerCount(), 0);
  assert.match(await metrics.registry.metrics(), /egress_xds_denials_dropped_total\{sink="follow",why="slow"\} 1/);
  // And followers are capped.
  const capped = await DenialLog.open({ metrics: createMetrics(), maxFollowers: 1 });
  assert.ok(capped.follow({ matches: () => true, push: () => true, end: () => undefined }).ok);
  assert.equal(capped.follow({ matches: () => true, push: () => true, end: () => undefined }).ok, false);
  await log.close();
  await capped.close();
});

test("serve's denial flags: defaults, a file, and bad values named", () => {
  assert.deepEqual(parseDenialFlags({}), { buffer: { total: 100_000, perNode: 10_000 }, metricNodes: 50 });
  assert.deepEqual(parseDenialFlags({ 'denials-log': '/tmp/d.jsonl', 'denials-log-max-bytes': '2048', 'denials-log-files': '3' }).file, { path: '/tmp/d.jsonl', maxBytes: 2048, files: 3 });
  for (const [values, flag] of [
    [{ 'denials-buffer': '0' }, '--denials-buffer'],
    [{ 'denials-per-node': 'many' }, '--denials-per-node'],
    [{ 'denials-buffer': '10', 'denials-per-node': '20' }, '--denials-per-node'],
    [{ 'denials-log-max-bytes': '100' }, '--denials-log-max-bytes'],
    [{ 'denials-log-files': '101' }, '--denials-log-files'],
    [{ 'denials-log': '' }, '--denials-log'],
  ] as const) {
    assert.throws(() => parseDenialFlags(values), (error: Error) => error instanceof UsageError && error.message.includes(flag), JSON.stringify(values));
  }
});
