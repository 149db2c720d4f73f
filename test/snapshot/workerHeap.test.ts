// The wrapper's --max-semi-space-size is for the main thread's fan-out; the compile
// workers keep V8's default young generation (src/snapshot/workerHeap.ts). V8 flags are
// per process, so without the reset a worker gets the larger one: both are checked, in a
// child node started as the wrapper starts the server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const workerHeap = fileURLToPath(new URL('../../src/snapshot/workerHeap.js', import.meta.url));

// Objects that survive scavenges make V8 grow the young generation up to its maximum.
const churn = "let keep = []; for (let i = 0; i < 3e6; i++) { keep.push({ a: i, b: 'x' + i }); if (keep.length > 5e5) keep = []; }";
const newSpaceMiB = "require('node:v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 1048576";

/** new_space sizes (MiB) of a worker started after defaultYoungGenerationForWorkers() or not, and of the main thread, in a child started with flags. */
function youngGenerations(flags: string[], reset: boolean): { worker: number; main: number } {
  const script = `
    const { Worker } = await import('node:worker_threads');
    const { createRequire } = await import('node:module');
    const require = createRequire(import.meta.url);
    if (${String(reset)}) (await import(${JSON.stringify(workerHeap)})).defaultYoungGenerationForWorkers();
    const worker = await new Promise((resolve, reject) => {
      const w = new Worker(${JSON.stringify(`${churn}; require('node:worker_threads').parentPort.postMessage(${newSpaceMiB});`)}, { eval: true });
      w.once('message', (m) => { void w.terminate(); resolve(m); });
      w.once('error', reject);
    });
    ${churn}
    console.log(JSON.stringify({ worker, main: ${newSpaceMiB} }));`;
  // A file, not -e: --input-type=module would reach the worker's eval'd (CommonJS) code too.
  const dir = mkdtempSync(join(tmpdir(), 'egress-xds-worker-heap-'));
  const file = join(dir, 'main.mjs');
  writeFileSync(file, script);
  const run = spawnSync(process.execPath, [...flags, file], { encoding: 'utf8', timeout: 60_000 });
  rmSync(dir, { recursive: true, force: true });
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout) as { worker: number; main: number };
}

test('workerHeap: with --max-semi-space-size=64 the main thread may grow its young generation past the default, a compile worker may not', () => {
  const without = youngGenerations(['--max-semi-space-size=64'], false);
  assert.ok(without.worker > 64, `without the reset a worker gets the flag too (new space ${without.worker} MiB)`);
  const withReset = youngGenerations(['--max-semi-space-size=64'], true);
  assert.ok(withReset.worker <= 32, `the worker keeps V8's default (new space ${withReset.worker} MiB)`);
  assert.ok(withReset.main > 32, `the main thread keeps the flag (new space ${withReset.main} MiB)`);
});

test('workerHeap: without the flag nothing changes', () => {
  const plain = youngGenerations([], true);
  assert.ok(plain.worker <= 32 && plain.main <= 32, JSON.stringify(plain));
});
