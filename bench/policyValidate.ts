// Cost of validating one policy body, as a PUT or each item of a batch pays it:
// the schema pass (ajv, compiled once) alone, and the whole of validatePolicySpec
// (schema pass + CIDR / DNS-name checks + canonical form). CPU time per call.
//   node dist/bench/policyValidate.js [BASELINE.js]
// BASELINE.js: another build's dist/src/policy/validate.js (e.g. the hand-written
// validator before ajv, from `git worktree add /tmp/old d8d04dd && npm run build`
// there), timed on the same bodies for comparison.
import { pathToFileURL } from 'node:url';
import { policySpecShape, validatePolicySpec } from '../src/policy/validate.js';

type Validate = (body: unknown) => { ok: boolean };

const names = (n: number) => Array.from({ length: n }, (_, i) => `svc-${i}.example${i % 7}.com`);
export const BODIES: Record<string, unknown> = {
  'seed (2 names, 1 source)': { sources: ['172.31.0.0/16'], allow: { sni: ['github.com', 'www.github.com'] } },
  'microVM (20 names, 2 cidrs)': {
    sources: ['172.31.4.7/32'],
    nodes: ['host-*'],
    allow: { sni: names(20), cidrs: [{ cidr: '10.1.0.0/16', ports: [443, 5432] }, { cidr: '192.168.5.5' }] },
  },
  'large (1,000 names, 100 cidrs)': {
    sources: Array.from({ length: 20 }, (_, i) => `10.${i}.0.0/16`),
    allow: { sni: names(1000), cidrs: Array.from({ length: 100 }, (_, i) => ({ cidr: `172.16.${i}.0/24`, ports: [443, 8443] })) },
  },
  'refused (bad port, last item)': { allow: { sni: names(20), cidrs: [{ cidr: '10.0.0.0/8', ports: [443, '8443'] }] } },
};

/** CPU microseconds per call: the median of 7 rounds of `calls` calls, after a warm-up. */
export function timePerCall(fn: () => void, calls: number): number {
  for (let i = 0; i < calls; i++) fn();
  const rounds: number[] = [];
  for (let r = 0; r < 7; r++) {
    const start = process.cpuUsage();
    for (let i = 0; i < calls; i++) fn();
    const used = process.cpuUsage(start);
    rounds.push((used.user + used.system) / calls);
  }
  return rounds.sort((a, b) => a - b)[3]!;
}

export async function policyValidateTable(baselinePath?: string): Promise<string[]> {
  const baseline = baselinePath ? ((await import(pathToFileURL(baselinePath).href)) as { validatePolicySpec: Validate }).validatePolicySpec : undefined;
  const lines = [
    `| body | schema pass (ajv) | validatePolicySpec |${baseline ? ' baseline |' : ''}`,
    `|---|---|---|${baseline ? '---|' : ''}`,
  ];
  for (const [what, body] of Object.entries(BODIES)) {
    const calls = what.startsWith('large') ? 200 : 20_000;
    const schema = timePerCall(() => policySpecShape(body), calls);
    const full = timePerCall(() => validatePolicySpec(body), calls);
    const base = baseline ? timePerCall(() => baseline(body), calls) : undefined;
    lines.push(`| ${what} | ${schema.toFixed(2)} µs | ${full.toFixed(2)} µs |${base === undefined ? '' : ` ${base.toFixed(2)} µs |`}`);
  }
  return lines;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (const line of await policyValidateTable(process.argv[2])) console.log(line);
}
