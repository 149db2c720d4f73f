// An idle control plane leaves its event loop asleep. prom-client's default
// event-loop-delay sampling (a 10 ms timer) woke the main thread 100 times a
// second, ~11 ms of CPU a second on the benchmark VM, paid inside every push's
// window too (BENCHMARKS.md, "Fan-out: the fixed CPU of a push"). The lag
// metrics stay exported. Linux only: wake-ups are the main thread's voluntary
// context switches (each sleep in epoll_wait is one).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/log.js';
import { startControlPlane, type ControlPlane } from '../../src/server/controlPlane.js';

const STATUS = `/proc/self/task/${process.pid}/status`;
const wakeups = (): number => Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(STATUS, 'utf8'))![1]);
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let dataDir: string;
let cp: ControlPlane;

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'egress-xds-idle-'));
  cp = await startControlPlane({ xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir, embeddedDefault: true, logger: silentLogger, compileWorkers: 1 });
});
after(async () => {
  await cp.close();
  await rm(dataDir, { recursive: true, force: true });
});

test('an idle server wakes its main thread a few times a second, not a hundred', { skip: existsSync(STATUS) ? false : 'no /proc/self/task (not Linux)' }, async () => {
  await pause(300); // start-up's own work settles
  const before = wakeups();
  await pause(2000);
  const perSecond = (wakeups() - before) / 2;
  // 100 ms event-loop sampling, the store's 1 s health sample, this test's timer: ~12 a
  // second. A 10 ms timer anywhere would make it over 100 (a loaded machine makes timers
  // fire late, never more often).
  assert.ok(perSecond < 40, `${perSecond} wake-ups a second while idle`);
});

test('the event-loop lag metrics are still exported', async () => {
  await pause(250); // at least two samples
  const response = await fetch(`http://127.0.0.1:${cp.admin.port}/metrics`);
  assert.equal(response.status, 200);
  const text = await response.text();
  const p99 = /^egress_xds_nodejs_eventloop_lag_p99_seconds (\S+)$/m.exec(text);
  assert.ok(p99, 'egress_xds_nodejs_eventloop_lag_p99_seconds is exported');
  assert.ok(Number(p99[1]) > 0, `a sampled lag, not the empty histogram's: ${p99[1]}`);
});
