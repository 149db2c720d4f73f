// The server side of bench/fleet.ts, in a process of its own: the real
// control plane (store on disk, compile workers, ADS, admin API) holding one
// policy per host (`nodes: [host-i]`, its own /30, its own name) plus one
// global policy. Driven over IPC: {usage} (CPU µs, RSS), {idle} (every commit
// pushed), {stop}. argv[2]: the number of hosts; argv[3]: extra server names
// in the global policy (a large listener for bench/hostileMix.ts); argv[4]:
// xDS limits as JSON.
import { rm } from 'node:fs/promises';
import type { PolicySpec } from '../src/policy/model.js';
import type { FanoutUsage } from './fanoutServer.js';
import { globalSpec, hostSpec } from './fleetSpecs.js';
import { startBenchControlPlane } from './benchControlPlane.js';

export type FleetServerCommand = { usage: true } | { idle: true } | { stop: true };

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

process.on('message', (command: FleetServerCommand) => {
  void (async () => {
    try {
      if ('usage' in command) process.send!(usage());
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
