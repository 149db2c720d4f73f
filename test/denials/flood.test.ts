// Bounds: a flood of 100,000 records through the real ALS keeps the buffer at
// its configured count and the process within a memory bound; many nodes stay
// within the total; the metric's node labels stay capped.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { silentLogger } from '../../src/log.js';
import { startControlPlane, type ControlPlane } from '../../src/server/controlPlane.js';
import { DenialBuffer } from '../../src/denials/buffer.js';
import { DenialLog } from '../../src/denials/denialLog.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { TAG, type DenialRecord } from '../../src/denials/record.js';

// Measured on a 2-vCPU VM: about 12 MiB retained (10,000 records; all 100,000 would be ~115 MiB),
// 100-170 MiB peak growth (the flood's garbage between collections).
const RETAINED_MIB = 40;
const PEAK_MIB = 300;
// The test runner gives no --expose-gc; this is how a test asks V8 for a full collection anyway.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const record = (node: string, i: number): DenialRecord => ({
  time: new Date(1_700_000_000_000 + i).toISOString(),
  node,
  source: `172.31.${(i >> 8) & 255}.${i & 255}:40000`,
  destination: '93.184.216.34:443',
  serverName: `n${i}.example.com`,
  reason: 'no-policy',
  verdict: 'denied',
  listener: 'egress_tproxy',
});

test('the buffer keeps at most perNode per node and total in all; a flooding node evicts its own history first', () => {
  const buffer = new DenialBuffer({ perNode: 100, total: 250 });
  for (let i = 0; i < 50; i++) buffer.add(record('quiet', i));
  for (let i = 0; i < 10_000; i++) buffer.add(record('loud', i));
  assert.equal(buffer.size(), 150);
  assert.equal([...buffer.newestFirst('loud')].length, 100);
  assert.equal([...buffer.newestFirst('quiet')].length, 50);
  assert.equal([...buffer.newestFirst('loud')][0]!.serverName, 'n9999.example.com');
  // Many nodes: the total holds, the least recently written nodes go.
  for (let n = 0; n < 1000; n++) buffer.add(record(`node-${n}`, n));
  assert.equal(buffer.size(), 250);
  assert.ok(buffer.nodeCount() <= 250);
  assert.equal(buffer.nodes().includes('node-999'), true);
  assert.equal(buffer.nodes().includes('quiet'), false);
  // Reads across nodes are newest first, and the limit holds.
  const newest = buffer.newest(40, () => true);
  assert.equal(newest.length, 40);
  assert.deepEqual(newest.map((r) => r.seq), [...newest.map((r) => r.seq)].sort((a, b) => b - a));
  assert.equal(newest[0]!.node, 'node-999');
  assert.deepEqual(buffer.newest(5, (r) => r.node === 'node-990' || r.node === 'node-991').map((r) => r.node), ['node-991', 'node-990']);
});

test('the metric keeps at most metricNodes node labels; the rest are "other"', async () => {
  const metrics = createMetrics();
  const log = await DenialLog.open({ metrics, metricNodes: 3 });
  for (let n = 0; n < 20; n++) log.ingest([record(`node-${n}`, n)]);
  const text = await metrics.registry.metrics();
  const labels = new Set([...text.matchAll(/egress_xds_denials_total\{node="([^"]+)"/g)].map((m) => m[1]));
  assert.deepEqual([...labels].sort(), ['node-0', 'node-1', 'node-2', 'other']);
  assert.match(text, /egress_xds_denials_total\{node="other",reason="no-policy",verdict="denied"\} 17/);
  await log.close();
});

describe('a flood through the Access Log Service', () => {
  let dir: string;
  let cp: ControlPlane;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'egress-xds-flood-'));
    cp = await startControlPlane({
      xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir: join(dir, 'data'), embeddedDefault: true, logger: silentLogger,
      denials: { buffer: { perNode: 4_000, total: 10_000 } },
    });
  });
  after(async () => {
    await cp.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('100,000 records from a flooding child process keep the buffer at its bound and the server within a memory bound', async () => {
    const NODES = 4;
    const BATCH = 250;
    const TOTAL = 100_000;
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    const rssBefore = process.memoryUsage().rss;
    let peakRss = rssBefore;
    // The client runs in its own process: what is measured here is the server's memory alone.
    const child = fork(fileURLToPath(new URL('../support/alsFlood.js', import.meta.url)), [`127.0.0.1:${cp.xdsPort}`, String(NODES), String(TOTAL), String(BATCH)], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
    const deadline = setTimeout(() => child.kill('SIGKILL'), 120_000);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(deadline);
    clearInterval(sampler);
    assert.equal(code, 0, 'the flooding client exited cleanly (within its 120 s bound)');
    assert.deepEqual(JSON.parse(output).errors, Array(NODES).fill(null));
    const received = await (async () => {
      const text = await cp.metrics.registry.getSingleMetricAsString('egress_xds_als_records_total');
      return Number(/egress_xds_als_records_total\{type="tcp"\} (\d+)/.exec(text)?.[1] ?? 0);
    })();
    assert.equal(received, TOTAL);
    assert.equal(cp.denials.buffer.size(), 10_000);
    for (let n = 0; n < NODES; n++) assert.ok([...cp.denials.buffer.newestFirst(`flood-${n}`)].length <= 4_000);
    // The newest record is kept; the oldest is gone.
    const newest = cp.denials.query({ verdicts: ['denied'], limit: 1, destination: `h${TOTAL - 1}.example.com` });
    assert.equal(newest.length, 1);
    assert.equal(cp.denials.query({ verdicts: ['denied'], limit: 1, destination: 'h0.example.com' }).length, 0);
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    // What the server keeps: the 10,000 buffered records and their indexes.
    gc();
    const retainedMiB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    assert.ok(retainedMiB < RETAINED_MIB, `the server retained ${retainedMiB.toFixed(1)} MiB of heap after the flood`);
    // Its peak: the same plus decoding garbage not yet collected and gRPC's flow-control windows.
    const growthMiB = (peakRss - rssBefore) / 2 ** 20;
    assert.ok(growthMiB < PEAK_MIB, `server RSS grew ${growthMiB.toFixed(0)} MiB`);
  });
});
