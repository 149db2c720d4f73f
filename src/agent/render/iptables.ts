// Plan → iptables/ip6tables commands in the mangle table. Everything the agent
// adds lives in its own chain, reached from PREROUTING by one jump, so install
// and uninstall never touch anyone else's rules. Pure.
import { type IpFamily, formatCidr } from '../../net/ip.js';
import { IPTABLES_CHAIN, formatMark } from '../config.js';
import { type NetfilterRule, type Plan, rulesOf } from '../plan.js';
import { type Command, command } from '../runner.js';

export type IptablesTool = 'iptables' | 'ip6tables';

export const iptablesTool = (family: IpFamily): IptablesTool => (family === 4 ? 'iptables' : 'ip6tables');

/** The rule after `-A CHAIN`, in the seed's spelling (§6.4). */
export function ruleSpec(rule: NetfilterRule): string[] {
  if (rule.kind === 'replies') return ['-m', 'conntrack', '--ctdir', 'REPLY', '-j', 'RETURN'];
  if (rule.kind === 'exclude') return ['-d', formatCidr(rule.destination), '-j', 'RETURN'];
  const mark = formatMark(rule.mark);
  return ['-p', rule.protocol, '-s', formatCidr(rule.source), '-j', 'TPROXY', '--tproxy-mark', `${mark}/${mark}`, '--on-port', String(rule.port)];
}

export const JUMP_SPEC: readonly string[] = ['-j', IPTABLES_CHAIN];

/** `-w 5`: wait for the xtables lock (iptables-legacy) instead of failing when another tool holds it. */
export const mangle = (family: IpFamily, ...args: string[]): Command =>
  command(iptablesTool(family), '-w', '5', '-t', 'mangle', ...args);

export const chainCommands = (family: IpFamily) => ({
  create: () => mangle(family, '-N', IPTABLES_CHAIN),
  flush: () => mangle(family, '-F', IPTABLES_CHAIN),
  remove: () => mangle(family, '-X', IPTABLES_CHAIN),
  list: () => mangle(family, '-S', IPTABLES_CHAIN),
  append: (spec: readonly string[]) => mangle(family, '-A', IPTABLES_CHAIN, ...spec),
  insert: (position: number, spec: readonly string[]) => mangle(family, '-I', IPTABLES_CHAIN, String(position), ...spec),
  check: (spec: readonly string[]) => mangle(family, '-C', IPTABLES_CHAIN, ...spec),
  delete: (spec: readonly string[]) => mangle(family, '-D', IPTABLES_CHAIN, ...spec),
  deleteAt: (position: number) => mangle(family, '-D', IPTABLES_CHAIN, String(position)),
  // Appended, as in the seed, so rules others put first in PREROUTING keep their place.
  addJump: () => mangle(family, '-A', 'PREROUTING', ...JUMP_SPEC),
  checkJump: () => mangle(family, '-C', 'PREROUTING', ...JUMP_SPEC),
  deleteJump: () => mangle(family, '-D', 'PREROUTING', ...JUMP_SPEC),
  listPrerouting: () => mangle(family, '-S', 'PREROUTING'),
});

/** Per family: the chain's rules in order. */
export function renderIptables(plan: Plan): { family: IpFamily; tool: IptablesTool; specs: string[][] }[] {
  return plan.families.map((family) => ({
    family,
    tool: iptablesTool(family),
    specs: rulesOf(plan, family).map(ruleSpec),
  }));
}

/**
 * Splits one line of `iptables -S` into words, honouring the double quotes both
 * flavours put around comments, so a saved rule can be put back on rollback.
 */
export function splitSaveLine(line: string): string[] {
  const words: string[] = [];
  let current = '';
  let inWord = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '\\' && i + 1 < line.length) current += line[++i];
      else if (ch === '"') quoted = false;
      else current += ch;
    } else if (ch === '"') {
      quoted = true;
      inWord = true;
    } else if (ch === ' ' || ch === '\t') {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else {
      current += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(current);
  return words;
}
