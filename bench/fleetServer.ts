// The server side of bench/fleet.ts, in a process of its own: the real
// control plane (store on disk, compile workers, ADS, admin API) holding one
// policy per host (`nodes: [host-i]`, its own /30, its own name) plus one
// global policy. Driven over IPC: {usage} (CPU µs, RSS), {idle} (every commit
// pushed), {stop}. argv[2]: the number of hosts; argv[3]: extra server names
// in the global policy (a large listener for bench/hostileMix.ts); argv[4]:
// xDS limits as JSON.
import { rm } from 'node:fs/promises';
import { writeHeapSnapshot } from 'node:v8';
import type { PolicySpec } from '../src/policy/model.js';
import type { FanoutUsage } from './fanoutServer.js';
import { globalSpec, hostSpec } from './fleetSpecs.js';
import { startBenchControlPlane } from './benchControlPlane.js';
import { startMainThreadTrace, type MainThreadTrace } from './mainThreadTrace.js';

export type FleetServerCommand = { usage: true } | { idle: true } | { trace: true } | { heapSnapshot: string } | { stop: true };

const usage = (): FanoutUsage & { heapUsedBytes: number; externalBytes: number; applies: number; commits: number; superseded: number } => {
  const cpu = process.cpuUsage();
  const memory = process.memoryUsage();
  // Pushes made and commits they covered (bench/hostileMix.ts: coalescing under a burst).
  return { cpuMicros: cpu.user + cpu.system, rssBytes: memory.rss, heapUsedBytes: memory.heapUsed, externalBytes: memory.external, applies: cp.push.applies, commits: cp.push.commits, superseded: cp.push.superseded };
};

const hosts = Number(process.argv[2] ?? 1000);
const extraNames = Number(process.argv[3] ?? 0);
const limits = JSON.parse(process.argv[4] ?? '{}') as Record<string, number>;
const { cp, dataDir } = await startBenchControlPlane('fleet', {
  xdsLimits: { maxStreams: 100_000, ...limits },
});
const put: Record<string, PolicySpec> = { global: globalSpec('a', extraNames) };
for (let i = 0; i < hosts; i++) put[`host-${i}`] = hostSpec(i);
const loaded = await cp.store.batch({ put }, { client: 'bench' });
if (!loaded.ok) throw new Error(`loading the fleet's policies: ${loaded.error.message}`);
await cp.push.idle();

// The main thread's GCs and admin requests on the wall clock, for bench/fleet.ts to line its
// PUTs up with (the server's own time for each). FLEET_TRACE=1 (diagnosis) adds event-loop
// stalls (a 2 ms timer), store writes and applies.
const tracing = process.env.FLEET_TRACE === '1';
const trace: MainThreadTrace = startMainThreadTrace(tracing ? 8 : undefined);
if (tracing) {
  const store = cp.store as { put: typeof cp.store.put };
  const put = store.put.bind(cp.store);
  store.put = (...args) => trace.span('store.put', () => put(...args));
  const cache = cp.cache as { applyChanges: typeof cp.cache.applyChanges };
  const apply = cache.applyChanges.bind(cp.cache);
  cache.applyChanges = (...args) => trace.span('apply', () => apply(...args));
}

process.on('message', (command: FleetServerCommand) => {
  void (async () => {
    try {
      if ('usage' in command) process.send!(usage());
      else if ('trace' in command) process.send!({ events: trace.take() });
      else if ('heapSnapshot' in command) process.send!({ path: writeHeapSnapshot(command.heapSnapshot) });
      else if ('idle' in command) {
        await cp.push.idle();
        process.send!({ idle: true });
      } else {
        await cp.close();
        await rm(dataDir, { recursive: true, force: true });
        process.exit(0);
      }
    } catch (error) {
      process.send!({ error: String(error) });
    }
  })();
});
process.send!({ xdsPort: cp.xdsPort, adminPort: cp.admin.port, usage: usage() });
