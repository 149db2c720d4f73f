// What each kind of hostile client costs the server, alone: server CPU
// (process.cpuUsage of bench/fleetServer.ts, the real control plane) while
// bench/hostileClients.ts, in its own process, opens 100 streams that never
// read, or floods 5 × N identical first requests, or toggles 5 Delta
// subscriptions N times. Over IPC, 4 s after the clients are started.
// node dist/bench/hostileCost.js [N=10000]; HOSTILE_COST_SERVER=/abs/dist/bench/fleetServer.js
// measures another build's server (a before/after comparison).
import { Child } from './fanout.js';
import type { FanoutUsage } from './fanoutServer.js';
import type { FleetServerCommand } from './fleetServer.js';
import type { HostileClientsCommand, HostileClientsSpec } from './hostileClients.js';
import { shippedEnv, shippedNodeFlags } from './shippedEnv.js';

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function hostileCostTable(n = 10_000): Promise<string[]> {
  const { child: srv, hello } = await Child.start<FleetServerCommand>(process.env.HOSTILE_COST_SERVER || './fleetServer.js', ['0', '2000', JSON.stringify({ stuckWriteMs: 60_000 })], shippedNodeFlags(), 30_000, shippedEnv());
  const address = `127.0.0.1:${String(hello.xdsPort)}`;
  const cpu = async () => (await srv.ask<FanoutUsage>({ usage: true })).cpuMicros / 1000;
  const kinds: [string, number, Omit<HostileClientsSpec, 'address'>][] = [
    ['nothing (baseline)', 1, { stuck: 0, flooders: 0, floodRequests: 0, toggles: 0 }],
    ['100 streams that never read', 100, { stuck: 100, flooders: 0, floodRequests: 0, toggles: 0 }],
    [`5 × ${n} identical first requests (SotW)`, 5 * n, { stuck: 0, flooders: 5, floodRequests: n, toggles: 0 }],
    [`5 × ${n} subscription toggles (Delta)`, 5 * n, { stuck: 0, flooders: 5, floodRequests: 1, toggles: n }],
  ];
  const lines = ['| hostile clients | server CPU | per stream / request |', '|---|---|---|'];
  try {
    await pause(1000);
    for (const [name, count, spec] of kinds) {
      const c0 = await cpu();
      const { child } = await Child.start<HostileClientsCommand>('./hostileClients.js', []);
      try {
        await child.ask({ start: { address, ...spec } });
        await pause(4000);
      } finally {
        await child.stop();
      }
      const ms = (await cpu()) - c0;
      lines.push(`| ${name} | ${ms.toFixed(0)} ms | ${((ms * 1000) / count).toFixed(1)} µs |`);
      await pause(1000);
    }
  } finally {
    await srv.stop();
  }
  return lines;
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  for (const line of await hostileCostTable(Number(process.argv[2] ?? 10_000))) console.log(line);
}
