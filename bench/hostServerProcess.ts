// The control plane of the server-path host scenario (bench/hostServer.ts), in a process
// of its own: the host's policies stored, then its main thread's event loop watched
// (monitorEventLoopDelay) while the benchmark connects an Envoy-like client and edits.
// Commands on stdin, one per line: "mark" answers (one JSON line) with the longest
// event-loop block and this process's CPU (all threads: the compile workers too) since
// the previous mark.
import { rm } from 'node:fs/promises';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { hostPolicies } from './hostScenario.js';
import { startBenchControlPlane } from './benchControlPlane.js';
import { readThreadStats } from './threadStats.js';
import { startControlPlane } from '../src/server/controlPlane.js';
import { silentLogger } from '../src/log.js';

const microVms = Number(process.argv[2] ?? 1000);
const workers = process.argv[3] === undefined ? undefined : Number(process.argv[3]);
// HOST_SERVER_DATA_DIR: the store's directory, kept (a restart: bench/hostServer.ts runs this
// process once with HOST_SERVER_POPULATE=1 to store the host and exit, then again to serve it,
// the policies loaded from disk as `serve` does after a restart). Else a fresh one, the host
// stored through the store's API after the start.
const givenDir = process.env['HOST_SERVER_DATA_DIR'];
// HOST_SERVER_MAX_CONNECTIONS_PER_SOURCE=0: the layout without Envoy-side caps (serve
// --max-connections-per-source 0, shared chains); default: serve's default.
const capText = process.env['HOST_SERVER_MAX_CONNECTIONS_PER_SOURCE'];
const compile = capText === undefined ? {} : { compile: { maxConnectionsPerSource: Number(capText) } };
const startedAt = performance.now();
const { cp, dataDir } = givenDir
  ? { cp: await startControlPlane({ xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir: givenDir, logger: silentLogger, ...compile, ...(workers !== undefined && { compileWorkers: workers }) }), dataDir: givenDir }
  : await startBenchControlPlane(
      'hostserver',
      // The warm-up is off by default (serve --compile-warmup): on for the 'after-warm-up' row only.
      { ...compile, ...(workers !== undefined && { compileWorkers: workers }), ...(process.env['HOST_SERVER_WARM'] && { compileWarmup: true }) },
      // HOST_SERVER_WARM below decides.
      { warmedUp: false },
    );
if (!givenDir || process.env['HOST_SERVER_POPULATE']) {
  const changes = hostPolicies(microVms).map(({ name, ...spec }) => ({ name, spec }));
  await cp.store.apply(changes, { client: 'bench', source: 'api' });
  await cp.push.idle();
  process.stderr.write(`stored ${changes.length} policies ${(performance.now() - startedAt).toFixed(0)} ms after the control plane started\n`);
  if (process.env['HOST_SERVER_POPULATE']) {
    await cp.close();
    process.stdout.write(`${JSON.stringify({ populated: changes.length })}\n`);
    process.exit(0);
  }
} else process.stderr.write(`restarted on ${cp.store.list().length} stored policies in ${(performance.now() - startedAt).toFixed(0)} ms\n`);
// HOST_SERVER_WARM=1: the client connects once the compile workers have warmed up (a server up
// for a second or two); by default at once, as an Envoy that was waiting for the server does.
if (process.env['HOST_SERVER_WARM']) {
  const reports = await cp.compilePool?.warmed();
  process.stderr.write(`warm-up: ${JSON.stringify(reports)} after ${(performance.now() - startedAt).toFixed(0)} ms\n`);
}

const histogram = monitorEventLoopDelay({ resolution: 1 });
histogram.enable();
let cpuAt = process.cpuUsage();
// Minor page faults: first touches of fresh memory (a few µs each on a VM; see bin/egress-xds).
let faultsAt = process.resourceUsage().minorPageFault;
process.stdout.write(`${JSON.stringify({ xds: cp.xdsPort, admin: cp.admin.port })}\n`);
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() !== 'mark') return;
  // HOST_SERVER_MARKS=1: each mark's monotonic time in µs (a --cpu-prof profile's clock) on stderr, to cut profiles by phase.
  if (process.env['HOST_SERVER_MARKS']) process.stderr.write(`mark ${Number(process.hrtime.bigint() / 1000n)}\n`);
  const cpu = process.cpuUsage(cpuAt);
  cpuAt = process.cpuUsage();
  const faults = process.resourceUsage().minorPageFault;
  process.stdout.write(`${JSON.stringify({ maxBlockMs: histogram.max / 1e6, cpuMs: (cpu.user + cpu.system) / 1000, faults: faults - faultsAt, threads: threadCpu() })}\n`);
  faultsAt = faults;
  histogram.reset();
});
// Each mark also answers the CPU each thread used since the previous mark (from /proc/self/task/*/schedstat,
// ns on the CPU; "main" and the others by thread id): the main thread, the compile workers, V8's helpers
// (concurrent marking, optimising compiles) and libuv's.
let threadsAt = new Map<string, number>();
function threadCpu(): Record<string, number> {
  const now = new Map<string, number>();
  const byKind: Record<string, number> = {};
  for (const { tid, main, comm, cpuNs } of readThreadStats().threads) {
    now.set(tid, cpuNs);
    const kind = main ? 'main' : `${comm}:${tid}`;
    byKind[kind] = Math.round(((byKind[kind] ?? 0) + (cpuNs - (threadsAt.get(tid) ?? 0)) / 1e6) * 10) / 10;
  }
  threadsAt = now;
  return byKind;
}
threadCpu();

const stop = () => {
  void cp.close().then(() => rm(dataDir, { recursive: true, force: true })).then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
