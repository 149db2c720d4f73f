// A compile worker keeps the policies it was sent (by id, so a host's edit does not clone the
// host), but not forever: a version the main thread let go of (superseded or deleted) is
// forgotten by the worker with the next request. Without it, a fleet writing a thousand
// policies a second fills each worker with a minute of superseded allowlists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const fixture = fileURLToPath(new URL('./fixtures/poolForget.js', import.meta.url));

test('superseded policy versions are forgotten by the compile workers', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', fixture], { timeout: 60_000 });
  const { before, after, compiled } = JSON.parse(stdout) as { before: number; after: number; compiled: number };
  assert.ok(before >= 200, `every version was held while referenced: ${before}`);
  assert.ok(after <= 2, `only the versions still referenced are held after a collection: ${after} of ${before}`);
  assert.ok(compiled > 0, 'a compile after the forgetting still works');
});
