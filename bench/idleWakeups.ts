// What an idle control plane (no stream, nothing pushed) costs: CPU per second and
// the main thread's wake-ups per second (voluntary context switches: each sleep in
// epoll_wait is one), per thread. On this Firecracker VM a wake-up costs 75-100 µs,
// so a timer that fires every few ms is a cost every push pays too (BENCHMARKS.md,
// "Fan-out: the fixed CPU of a push"). Linux only.
// Alone: node dist/bench/idleWakeups.js [seconds, default 3]
import { readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { startBenchControlPlane } from './benchControlPlane.js';
import { rerunWithShippedEnv } from './shippedEnv.js';

interface ThreadReading {
  readonly wakeups: number;
  readonly cpuNs: number;
}

function readThreads(): Map<string, ThreadReading> {
  const threads = new Map<string, ThreadReading>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const wakeups = Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/self/task/${tid}/status`, 'utf8'))?.[1]);
      const cpuNs = Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      threads.set(tid === String(process.pid) ? 'main' : tid, { wakeups, cpuNs });
    } catch {
      // A thread that ended meanwhile.
    }
  }
  return threads;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function idleWakeups(seconds: number): Promise<{ cpuMsPerS: number; mainWakeupsPerS: number; mainCpuMsPerS: number }> {
  const { cp, dataDir } = await startBenchControlPlane('idle', { embeddedDefault: true });
  try {
    await pause(2000); // start-up's own work settles (the compile worker loads its protos)
    const before = readThreads();
    const cpu = process.cpuUsage();
    await pause(seconds * 1000);
    const used = process.cpuUsage(cpu);
    const after = readThreads();
    const main = { wakeups: after.get('main')!.wakeups - before.get('main')!.wakeups, cpuNs: after.get('main')!.cpuNs - before.get('main')!.cpuNs };
    return { cpuMsPerS: (used.user + used.system) / 1000 / seconds, mainWakeupsPerS: main.wakeups / seconds, mainCpuMsPerS: main.cpuNs / 1e6 / seconds };
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
