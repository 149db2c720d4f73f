// What bin/egress-xds's allocator settings change, in one process each way:
// a one-name edit's listener encode at N microVMs × 20 names (the multi-MB
// buffer every push builds), and a bare copy of a buffer that size. Each run
// is a fresh child so glibc reads its settings at start, as in the server:
// EGRESS_XDS_MALLOC=system (glibc's defaults) beside what the wrapper ships.
// Reports CPU beside wall (the machine is shared) and the minor page faults,
// the cost the settings remove: ~3.3 µs per 4 KiB page first touched on a VM.
// Alone: node dist/bench/allocator.js [microVMs=1000] [edits=40]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { compileEgress } from '../src/compile/index.js';
import { encodeListener } from '../src/compile/encodeListener.js';
import { hostPolicies, withExtraName } from './hostScenario.js';
import { MALLOC_VARIABLES } from '../src/cli/mallocSettings.js';
import { shippedEnv, shippedNodeFlags } from './shippedEnv.js';

interface Sample {
  listenerBytes: number;
  encodeCpuMs: number;
  encodeWallMs: number;
  encodeFaults: number;
  copyMs: number;
  copyFaults: number;
  rssMiB: number;
}

function measure(microVms: number, edits: number): Sample {
  const base = hostPolicies(microVms);
  encodeListener(compileEgress(base).listeners[0]!);
  const listeners = Array.from({ length: edits }, (_, r) => compileEgress(withExtraName(base, 'vm-00001', `edit${r}.example.com`)).listeners[0]!);
  let faults = process.resourceUsage().minorPageFault;
  let cpu = process.cpuUsage();
  let wall = performance.now();
  let listenerBytes = 0;
  for (const listener of listeners) listenerBytes = encodeListener(listener).length;
  const cpuUsed = process.cpuUsage(cpu);
  const encodeWallMs = (performance.now() - wall) / edits;
  const encodeFaults = (process.resourceUsage().minorPageFault - faults) / edits;
  // A bare copy of a buffer that size (what slice/concat/transfer of a listener does).
  const source = new Uint8Array(listenerBytes).fill(7);
  let kept = source.slice();
  faults = process.resourceUsage().minorPageFault;
  wall = performance.now();
  for (let i = 0; i < edits; i++) kept = source.slice();
  const copyMs = (performance.now() - wall) / edits;
  const copyFaults = (process.resourceUsage().minorPageFault - faults) / edits;
  if (kept.length !== source.length) throw new Error('copy lost bytes');
  cpu = cpuUsed;
  return {
    listenerBytes,
    encodeCpuMs: (cpu.user + cpu.system) / 1000 / edits,
    encodeWallMs,
    encodeFaults,
    copyMs,
    copyFaults,
    rssMiB: process.memoryUsage().rss / 2 ** 20,
  };
}

function child(mode: 'system' | 'tuned', microVms: number, edits: number): Sample {
  const base: NodeJS.ProcessEnv = { ...process.env, EGRESS_XDS_MALLOC: mode };
  if (mode === 'system') for (const name of MALLOC_VARIABLES) delete base[name];
  const env = shippedEnv(base);
  const run = spawnSync(process.execPath, [...shippedNodeFlags(env), fileURLToPath(import.meta.url), '--child', String(microVms), String(edits)], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 600_000 });
  if (run.status !== 0) throw new Error(`allocator bench child (${mode}) exited ${run.status ?? run.signal}`);
  return JSON.parse(run.stdout) as Sample;
}

export function allocatorTable(microVms = 1000, edits = 40): string[] {
  const lines = [
    `| allocator | listener bytes | one-name edit's encode: CPU / wall per edit | page faults per encode | copy of that many bytes: wall / page faults | RSS after |`,
    '|---|---|---|---|---|---|',
  ];
  for (const mode of ['system', 'tuned'] as const) {
    const s = child(mode, microVms, edits);
    const label = mode === 'system' ? 'glibc defaults (EGRESS_XDS_MALLOC=system)' : 'bin/egress-xds (shipped)';
    lines.push(`| ${label} | ${s.listenerBytes} | ${s.encodeCpuMs.toFixed(1)} / ${s.encodeWallMs.toFixed(1)} ms | ${s.encodeFaults.toFixed(0)} | ${s.copyMs.toFixed(2)} ms / ${s.copyFaults.toFixed(0)} | ${s.rssMiB.toFixed(0)} MiB |`);
  }
  return lines;
}

if (process.argv[2] === '--child') {
  process.stdout.write(JSON.stringify(measure(Number(process.argv[3]), Number(process.argv[4]))));
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const line of allocatorTable(Number(process.argv[2] ?? 1000), Number(process.argv[3] ?? 40))) console.log(line);
}
