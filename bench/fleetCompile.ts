// One thread's compile + encode of N fleet groups ({global, host-i}), then of the same N
// groups after each of a few global changes: the per-group cost a global change pays in
// a compile worker whose memos are warm (the worker that compiled the group before).
// node dist/bench/fleetCompile.js [N]
import { egressGroupCompiler } from '../src/snapshot/egressGroups.js';
import { encodeResource } from '../src/snapshot/encodedResource.js';
import { Snapshot } from '../src/snapshot/snapshot.js';
import type { Policy } from '../src/policy/model.js';
import { globalSpec, hostSpec } from './fleetSpecs.js';

export function fleetCompile(n: number, changes = 4): { cpuMsPerGroup: number[] } {
  const compile = egressGroupCompiler({});
  const hosts: Policy[] = Array.from({ length: n }, (_, i) => ({ name: `host-${i}`, ...hostSpec(i) }) as Policy);
  const cpuMsPerGroup: number[] = [];
  for (let change = 0; change < changes; change++) {
    const global = { name: 'global', ...globalSpec(`g${change}`) } as Policy;
    const before = process.cpuUsage();
    for (const host of hosts) new Snapshot(compile([global, host]).resources.map((r) => encodeResource(r.typeUrl, r.name, r.json)), 0n);
    const used = process.cpuUsage(before);
    cpuMsPerGroup.push((used.user + used.system) / 1000 / n);
  }
  return { cpuMsPerGroup };
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const n = Number(process.argv[2] ?? 2000);
  const { cpuMsPerGroup } = fleetCompile(n);
  console.log(`${n} groups: CPU ms per group, cold then after each global change: ${cpuMsPerGroup.map((v) => v.toFixed(3)).join(', ')}`);
}
