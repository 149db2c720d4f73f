// The small resources a compile worker sends with their bytes arrive packed: one transferred
// buffer per reply and a view of it per resource, not a buffer each (an edit of the policy
// every microVM shares changes every source's route table: a thousand buffers to clone and
// collect at 1,000 microVMs). The bytes and versions are what the main thread would encode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CompilePool } from '../../src/snapshot/compilePool.js';
import { egressGroupCompiler } from '../../src/snapshot/egressGroups.js';
import { encodeResource, LARGE_RESOURCE_BYTES, type EncodedResource } from '../../src/snapshot/encodedResource.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import type { Policy } from '../../src/policy/model.js';

const host = (sharedName: string): Policy[] => [
  { name: 'shared', allow: { sni: ['a.shared.example', sharedName] } },
  ...Array.from({ length: 40 }, (_, i) => ({ name: `vm-${i}`, sources: [`10.0.${i}.0/30`], allow: { sni: [`a.vm${i}.example`] } })),
];
const onMainThread = (policies: Policy[]) => egressGroupCompiler()(policies).resources.map((r) => encodeResource(r.typeUrl, r.name, r.json));

test('an edit of the shared policy: every changed route table arrives as a view of one buffer, with the bytes the main thread would encode', async () => {
  const pool = new CompilePool({}, 1, { warmup: false });
  try {
    const [first] = await pool.build([host('b.shared.example')]);
    const [edited] = await pool.build([host('c.shared.example')]);
    const want = onMainThread(host('c.shared.example'));
    assert.equal(edited!.length, want.length);
    edited!.forEach((r, i) => {
      assert.equal(r.name, want[i]!.name);
      assert.equal(r.version, want[i]!.version, `${r.name}: the version`);
      assert.equal(Buffer.compare(r.bytes, want[i]!.bytes), 0, `${r.name}: the bytes`);
    });
    const tables = (list: readonly EncodedResource[]) => list.filter((r) => r.typeUrl === TypeUrl.RouteConfiguration);
    const changed = tables(edited!).filter((r, i) => r !== tables(first!)[i]);
    assert.ok(changed.length >= 40, `every source's table changed: ${changed.length}`);
    const fresh = edited!.filter((r) => !first!.includes(r) && r.bytes.byteLength < LARGE_RESOURCE_BYTES);
    const buffers = new Set(fresh.map((r) => r.bytes.buffer));
    assert.equal(buffers.size, 1, `${fresh.length} new small resources in ${buffers.size} buffers`);
    const [buffer] = buffers;
    assert.equal(buffer!.byteLength, fresh.reduce((n, r) => n + r.bytes.byteLength, 0), 'the buffer holds exactly their bytes');
  } finally {
    await pool.close();
  }
});
