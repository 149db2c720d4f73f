// A compile worker warms up (compiles a synthetic host and its edits) before its first
// request, so a fresh server's first compile does not run in V8's interpreter; the warm-up
// yields to a real request at once and changes nothing a real compile produces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CompilePool } from '../../src/snapshot/compilePool.js';
import { WARMUP_STEPS, warmupHost, warmupSets } from '../../src/snapshot/compileWarmup.js';
import { egressGroupCompiler } from '../../src/snapshot/egressGroups.js';
import { encodeResource, type EncodedResource } from '../../src/snapshot/encodedResource.js';
import { validatePolicySpec } from '../../src/policy/validate.js';
import type { Policy } from '../../src/policy/model.js';

const host = (extra?: string, microVms = 300): Policy[] =>
  Array.from({ length: microVms }, (_, i) => ({
    name: `vm-${i}`,
    sources: [`10.${i >> 8}.${i & 255}.0/30`],
    allow: { sni: [`a.vm${i}.example`, `*.b.vm${i}.example`, ...(i === 3 && extra ? [extra] : [])] },
  }));
const onMainThread = (policies: Policy[]) => egressGroupCompiler()(policies).resources.map((r) => encodeResource(r.typeUrl, r.name, r.json));
const sameBytes = (got: readonly EncodedResource[], want: readonly EncodedResource[]) =>
  got.length === want.length && got.every((r, i) => r.name === want[i]!.name && r.version === want[i]!.version && Buffer.compare(r.bytes, want[i]!.bytes) === 0);

test('the warm-up host is valid policies, the shapes real hosts take', () => {
  const policies = warmupHost();
  for (const { name, ...spec } of policies) {
    const checked = validatePolicySpec(spec);
    assert.ok(checked.ok, `${name}: ${JSON.stringify(checked)}`);
    assert.deepEqual(checked.value, spec, `${name} is already in canonical form, as the store would hand it over`);
  }
  assert.ok(policies.some((p) => p.mode === 'audit') && policies.some((p) => p.log === 'all') && policies.some((p) => p.upstream === 'original-destination'));
  assert.ok(policies.some((p) => p.sources?.[0]?.includes(':')), 'an IPv6 source');
  assert.equal([...warmupSets()].length, WARMUP_STEPS);
});

test('a worker left alone runs its warm-up to the end, then compiles the same bytes as the main thread', async () => {
  const pool = new CompilePool({}, 1, { warmup: true });
  try {
    const [report] = await pool.warmed();
    assert.deepEqual(report, { steps: WARMUP_STEPS, completed: true });
    const [first] = await pool.build([host()]);
    assert.ok(sameBytes(first!, onMainThread(host())), 'byte-identical after the warm-up');
    const [edited] = await pool.build([host('new.example')]);
    assert.ok(sameBytes(edited!, onMainThread(host('new.example'))), 'an edit too');
  } finally {
    await pool.close();
  }
});

test('a request stops the warm-up: it is answered after at most one step, not after the warm-up', async () => {
  const pool = new CompilePool({}, 1, { warmup: true });
  try {
    const built = pool.build([host()]);
    const [report] = await pool.warmed();
    assert.equal(report!.completed, false, 'the request ended the warm-up');
    assert.ok(report!.steps < WARMUP_STEPS, `stopped after ${report!.steps} of ${WARMUP_STEPS} steps`);
    const [first] = await built;
    assert.ok(sameBytes(first!, onMainThread(host())));
  } finally {
    await pool.close();
  }
});

test('without warm-up a worker compiles nothing before its first request, and says so at once', async () => {
  const pool = new CompilePool({}, 1, { warmup: false });
  try {
    assert.deepEqual(await pool.warmed(), [{ steps: 0, completed: false }]);
    await pool.build([host()]);
  } finally {
    await pool.close();
  }
});
