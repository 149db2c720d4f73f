// How `egress-xds policy suggest` prints a drafted policy: the YAML to apply
// (as `policy put NAME --file -` reads it), then what it would change.
import { stringify as toYaml } from 'yaml';

interface Effect {
  connection: { destinationIp: string; destinationPort: number; serverName?: string };
  count: number;
  before: { verdict: string; policy?: string };
  after: { verdict: string; policy?: string };
}

interface Suggestion {
  node: string;
  source: string;
  since: string;
  name: string;
  policy: unknown;
  records: number;
  leftOut: Record<string, number>;
  inForce: string[];
  adds: { sni: string[]; cidrs: { cidr: string; ports?: number[] }[] };
  effects: Effect[];
  newlyAllowed: number;
  stillDenied: number;
}

const target = (e: Effect) => `${e.connection.serverName ?? e.connection.destinationIp}:${e.connection.destinationPort}`;

export function formatSuggestion(s: Suggestion): string {
  const lines: string[] = [];
  if (s.records === 0) {
    lines.push(`# no denials of ${s.source} on node ${s.node} since ${s.since} that a policy could allow`);
  }
  lines.push(`# drafted from ${s.records} denial(s) of ${s.source} on node ${s.node} since ${s.since}`);
  lines.push(`# apply: egress-xds policy put ${s.name} --file - < this-file`);
  lines.push(toYaml(s.policy).trimEnd());
  lines.push('');
  lines.push(`# policies in force on ${s.node}: ${s.inForce.length > 0 ? s.inForce.join(', ') : '(none)'}`);
  const adds = [...s.adds.sni, ...s.adds.cidrs.map((c) => (c.ports ? `${c.cidr}:${c.ports.join(',')}` : c.cidr))];
  lines.push(`# it adds: ${adds.length > 0 ? adds.join(' ') : 'nothing new'}`);
  for (const e of s.effects) {
    const change = e.before.verdict === e.after.verdict ? `stays ${e.after.verdict}${e.after.policy ? ` (${e.after.policy})` : ''}` : `${e.before.verdict} → ${e.after.verdict}`;
    lines.push(`#   ${target(e)} (${e.count}×): ${change}`);
  }
  lines.push(`# ${s.newlyAllowed} destination(s) newly allowed, ${s.stillDenied} still denied`);
  const left = Object.entries(s.leftOut);
  if (left.length > 0) lines.push(`# left out (no allowlist entry allows these): ${left.map(([reason, n]) => `${reason} ${n}`).join(', ')}`);
  return `${lines.join('\n')}\n`;
}
