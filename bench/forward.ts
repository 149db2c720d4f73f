// The forward proxy's compile cost beside the transparent listener's: N microVMs, each
// its own /32 source and its own policy of K names (a few shared, most its own, some
// wildcards), compiled and strictly encoded as one node group. Rounds after the first
// run with the policy memos cold (fresh policy objects) and warm (an unchanged policy set);
// listeners are encoded with the fast encoder the snapshot cache uses (src/envoy/fastEncode.ts).
import { compileEgress, type CompileOptions } from '../src/compile/index.js';
import { fastEncodeProtoJson } from '../src/envoy/fastEncode.js';
import { TypeUrl } from '../src/envoy/typeUrls.js';
import type { Policy } from '../src/policy/model.js';
import { ms, summarize } from './stats.js';

const SHARED = ['github.com', '*.githubusercontent.com', 'pypi.org', 'files.pythonhosted.org', 'registry.npmjs.org'];

export function microVmPolicies(vms: number, names: number): Policy[] {
  return Array.from({ length: vms }, (_, i) => ({
    name: `vm${String(i).padStart(5, '0')}`,
    sources: [`172.31.${Math.floor(i / 250)}.${(i % 250) + 1}/32`],
    allow: {
      sni: [...new Set([...SHARED, ...Array.from({ length: names - SHARED.length }, (_, n) => (n % 5 === 0 ? `*.svc${n}.vm${i}.example.com` : `api${n}.vm${i}.example.com`))])].sort(),
      ...(i % 4 === 0 ? { cidrs: [{ cidr: `10.${i % 250}.0.0/16`, ports: [5432] }] } : {}),
    },
  }));
}

function run(policies: () => Policy[], options: CompileOptions, rounds: number) {
  const times: number[] = [];
  const cpu: number[] = [];
  let bytes = 0;
  for (let r = 0; r < rounds; r++) {
    const input = policies();
    const cpuStart = process.cpuUsage();
    const start = process.hrtime.bigint();
    const compiled = compileEgress(input, options);
    bytes = 0;
    for (const l of compiled.listeners) bytes += fastEncodeProtoJson(TypeUrl.Listener, l as unknown as Record<string, unknown>).length;
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
    const used = process.cpuUsage(cpuStart);
    cpu.push((used.user + used.system) / 1e3);
  }
  return { bytes, time: summarize(times.slice(1)), cpu: summarize(cpu.slice(1)) };
}

export function forwardTable(sizes: readonly number[], names: number, rounds: number): string[] {
  const lines = [
    `| microVMs × names | listeners | listener bytes | compile + encode, cold p50 (CPU) | warm p50 (CPU) |`,
    '|---|---|---|---|---|',
  ];
  for (const vms of sizes) {
    const fixed = microVmPolicies(vms, names);
    const fresh = () => fixed.map((p) => ({ ...p, allow: { ...p.allow } }));
    for (const [label, options] of [
      ['transparent (hardened)', {}],
      ['forward_http + forward_tls', { transparent: false, forwardProxy: {} }],
      ['all three', { forwardProxy: {} }],
      // One internal listener + cluster per distinct allowlist and CONNECT port (forwardInspect.ts).
      ['forward + --forward-proxy-inspect-connect', { transparent: false, forwardProxy: { inspectConnect: true } }],
    ] as const) {
      const cold = run(fresh, options, rounds + 1);
      const warm = run(() => fixed, options, rounds + 1);
      lines.push(`| ${vms} × ${names} | ${label} | ${cold.bytes.toLocaleString('en')} | ${ms(cold.time.p50)} (${ms(cold.cpu.p50)}) | ${ms(warm.time.p50)} (${ms(warm.cpu.p50)}) |`);
    }
  }
  return lines;
}
