// Per-thread CPU of this process (Linux): /proc/self/task/TID/schedstat (ns on the CPU) and
// comm, and the main thread's wake-ups (voluntary context switches: each sleep in epoll_wait
// is one; on the benchmark VM a wake-up costs ~0.1 ms). The server processes of the benches
// split a push's or an edit's CPU by who spent it: the main thread, the compile workers, V8's
// helpers (parallel scavenges, concurrent marking, optimising compiles) and libuv's pool.
import { readdirSync, readFileSync } from 'node:fs';

export interface ThreadCpu {
  readonly tid: string;
  readonly main: boolean;
  /** The thread's name ("node" for most of them here). */
  readonly comm: string;
  readonly cpuNs: number;
}

export interface ThreadStats {
  readonly threads: readonly ThreadCpu[];
  /** The main thread's voluntary context switches since it started. */
  readonly mainWakeups: number;
}

export function readThreadStats(): ThreadStats {
  const threads: ThreadCpu[] = [];
  const mainTid = String(process.pid);
  let mainWakeups = NaN;
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const cpuNs = Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      const comm = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
      const main = tid === mainTid;
      if (main) mainWakeups = Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/self/task/${tid}/status`, 'utf8'))?.[1] ?? NaN);
      threads.push({ tid, main, comm, cpuNs });
    } catch {
      // A thread that ended meanwhile.
    }
  }
  return { threads, mainWakeups };
}
