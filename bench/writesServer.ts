// The server side of bench/writes.ts, in a process of its own: the real
// control plane (file store in a fresh data dir, compile workers, ADS, admin
// API), holding only the global policy of bench/fleetSpecs.ts at start; the
// driver creates the hosts' own policies over HTTP. Driven over IPC:
// {usage} (CPU µs, RSS, the store's commit counters), {idle} (every commit
// pushed), {stop}. The driver may also SIGKILL it (pid in the hello) to check
// that every acknowledged write is on disk. argv[2]: xDS limits as JSON;
// WRITES_COMPILE_WORKERS in the environment: the compile threads.
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { globalSpec } from './fleetSpecs.js';
import { startBenchControlPlane } from './benchControlPlane.js';

export type WritesServerCommand = { usage: true } | { idle: true } | { profile: 'start' | string } | { stop: true };

export interface WritesServerUsage {
  readonly cpuMicros: number;
  readonly rssBytes: number;
  /** CPU µs of the event loop's thread alone (the rest: compile workers, fsync threads, GC helpers). */
  readonly loopCpuMicros: number;
  /** The store's group commit (src/store/policyStore.ts), when it reports it. */
  readonly commits?: number;
  readonly fsyncs?: number;
  /** Pushes (cache applies) made and the commits they covered. */
  readonly applies: number;
  readonly appliedCommits: number;
}

const limits = JSON.parse(process.argv[2] ?? '{}') as Record<string, number>;
const { cp, dataDir } = await startBenchControlPlane('writes', {
  xdsLimits: { maxStreams: 100_000, ...limits },
  // WRITES_COMPILE_WORKERS: serve's --compile-workers (default: cores - 1, so one on two cores).
  ...(process.env.WRITES_COMPILE_WORKERS ? { compileWorkers: Number(process.env.WRITES_COMPILE_WORKERS) } : {}),
});
const loaded = await cp.store.put('global', globalSpec('a'), { client: 'bench' });
if (!loaded.ok) throw new Error(`storing the global policy: ${loaded.error.message}`);
await cp.push.idle();

/** utime + stime of this process's main thread (Linux: /proc/self/task/PID/stat), in µs. */
const loopCpuMicros = (): number => {
  const fields = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100;
};

const usage = (): WritesServerUsage => {
  const cpu = process.cpuUsage();
  const stats = (cp.store as { groupCommit?: () => { commits: number; fsyncs: number } }).groupCommit?.();
  return {
    cpuMicros: cpu.user + cpu.system,
    rssBytes: process.memoryUsage.rss(),
    loopCpuMicros: loopCpuMicros(),
    ...(stats ? { commits: stats.commits, fsyncs: stats.fsyncs } : {}),
    applies: cp.push.applies,
    appliedCommits: cp.push.commits,
  };
};

const inspector = new Session();
inspector.connect();

process.on('message', (command: WritesServerCommand) => {
  void (async () => {
    try {
      if ('usage' in command) process.send!(usage());
      else if ('profile' in command) {
        // The event loop's CPU profile over one phase (compile workers not included).
        if (command.profile === 'start') {
          await inspector.post('Profiler.enable');
          await inspector.post('Profiler.start');
        } else {
          const { profile } = await inspector.post('Profiler.stop');
          await writeFile(command.profile, JSON.stringify(profile));
        }
        process.send!({ profile: command.profile });
      } else if ('idle' in command) {
        await cp.push.idle();
        process.send!({ idle: true });
      } else {
        await cp.close();
        process.exit(0);
      }
    } catch (error) {
      process.send!({ error: String(error) });
    }
  })();
});
process.send!({ xdsPort: cp.xdsPort, adminPort: cp.admin.port, dataDir, pid: process.pid, usage: usage() });
