// A compile worker sends a resource's bytes once: what the encoder's memo hands out again (the
// route tables and clusters an edit did not reach) goes back to the main thread by name and
// version, and the pool resolves it to the object it holds. An edit of one microVM then costs
// the event loop one route table, not a host's thousand; the versions are the hashes of the
// bytes; and a reference to something the main thread let go of is answered with the bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const fixture = fileURLToPath(new URL('./fixtures/poolRefs.js', import.meta.url));

test('unchanged resources come back from a compile worker as the objects already held; a reference to one let go of is answered with its bytes', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', fixture], { timeout: 60_000 });
  const r = JSON.parse(stdout) as {
    routeTables: number;
    changedTables: string[];
    firstCorrect: boolean;
    editedCorrect: boolean;
    fullRequestsBefore: number;
    heldBefore: number;
    heldAfter: number;
    againCorrect: boolean;
    fullRequestsAfter: number;
  };
  assert.ok(r.routeTables >= 40, `a route table per source: ${r.routeTables}`);
  assert.ok(r.firstCorrect && r.editedCorrect, 'the same bytes and versions as encoded on the main thread, each version the hash of its bytes');
  assert.deepEqual(r.changedTables, ['http|10.0.3.0/30'], 'only the edited source\'s table is a new object');
  assert.equal(r.fullRequestsBefore, 0, 'every reference resolved');
  assert.ok(r.heldBefore > r.routeTables && r.heldAfter === 0, `held by content while referenced, then let go of: ${r.heldBefore} → ${r.heldAfter}`);
  assert.ok(r.againCorrect, 'compiled again after the main thread let go: the right bytes');
  assert.equal(r.fullRequestsAfter, 1, 'the references the main thread could not resolve were answered by one request for the bytes');
});
