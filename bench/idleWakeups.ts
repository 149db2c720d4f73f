// What an idle control plane (no stream, nothing pushed) costs: CPU per second and
// the main thread's wake-ups per second (voluntary context switches: each sleep in
// epoll_wait is one), per thread. On this Firecracker VM a wake-up costs 75-100 µs,
// so a timer that fires every few ms is a cost every push pays too (BENCHMARKS.md,
// "Fan-out: the fixed CPU of a push"). Linux only.
// Alone: node dist/bench/idleWakeups.js [seconds, default 3]
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { startBenchControlPlane } from './benchControlPlane.js';
import { rerunWithShippedEnv } from './shippedEnv.js';
import { readThreadStats, type ThreadStats } from './threadStats.js';

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function idleWakeups(seconds: number): Promise<{ cpuMsPerS: number; mainWakeupsPerS: number; mainCpuMsPerS: number }> {
  const { cp, dataDir } = await startBenchControlPlane('idle', { embeddedDefault: true });
  try {
    await pause(2000); // start-up's own work settles (the compile worker loads its protos)
    const before = readThreadStats();
    const cpu = process.cpuUsage();
    await pause(seconds * 1000);
    const used = process.cpuUsage(cpu);
    const after = readThreadStats();
    const mainCpuNs = (stats: ThreadStats) => stats.threads.find((thread) => thread.main)!.cpuNs;
    return {
      cpuMsPerS: (used.user + used.system) / 1000 / seconds,
      mainWakeupsPerS: (after.mainWakeups - before.mainWakeups) / seconds,
      mainCpuMsPerS: (mainCpuNs(after) - mainCpuNs(before)) / 1e6 / seconds,
    };
  } finally {
    await cp.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  rerunWithShippedEnv();
  const seconds = Number(process.argv[2] ?? 3);
  const r = await idleWakeups(seconds);
  console.log(`idle control plane over ${seconds} s: ${r.cpuMsPerS.toFixed(1)} ms CPU a second (main thread ${r.mainCpuMsPerS.toFixed(1)}), main thread woken ${r.mainWakeupsPerS.toFixed(1)} times a second`);
  process.exit(0);
}
