// Plan → iptables/ip6tables commands. Everything the agent adds lives in its own
// chains, each reached by one jump per hook, so install and uninstall never touch
// anyone else's rules. Pure.
//   mangle EGRESS_XDS           from PREROUTING       the TPROXY rules (seed §6.4)
//   filter EGRESS_XDS_GUARD     from INPUT, FORWARD   the host's own ports, QUIC
//   filter EGRESS_XDS_UPSTREAM  from OUTPUT           Envoy's marked upstream to special addresses
//   filter EGRESS_XDS_CAP       from INPUT            the per-source connection cap
// The cap is in filter INPUT because REJECT is valid only in the filter table, and
// a TPROXYed SYN passes there: the fwmark rule routes it to the local table, so it
// is delivered locally (INPUT), never forwarded.
import { type IpFamily, formatCidr } from '../../net/ip.js';
import { IPTABLES_CAP_CHAIN, IPTABLES_CHAIN, IPTABLES_GUARD_CHAIN, IPTABLES_UPSTREAM_CHAIN, formatMark } from '../config.js';
import { type NetfilterRule, type Plan, rulesOf } from '../plan.js';
import { type Command, command } from '../runner.js';

export type IptablesTool = 'iptables' | 'ip6tables';

export const iptablesTool = (family: IpFamily): IptablesTool => (family === 4 ? 'iptables' : 'ip6tables');

const markIs = (mark: number): string[] => ['-m', 'mark', '--mark', `${formatMark(mark)}/${formatMark(mark)}`];
const local = ['-m', 'addrtype', '--dst-type', 'LOCAL'];

/** The rule after `-A CHAIN`, in the seed's spelling (§6.4). */
export function ruleSpec(rule: NetfilterRule): string[] {
  switch (rule.kind) {
    case 'replies':
      return ['-m', 'conntrack', '--ctdir', 'REPLY', '-j', 'RETURN'];
    case 'exclude':
      return ['-d', formatCidr(rule.destination), '-j', 'RETURN'];
    case 'tproxy': {
      const mark = formatMark(rule.mark);
      const dport = rule.dport === undefined ? [] : ['-m', rule.protocol, '--dport', String(rule.dport)];
      return ['-p', rule.protocol, '-s', formatCidr(rule.source), ...dport, '-j', 'TPROXY', '--tproxy-mark', `${mark}/${mark}`, '--on-port', String(rule.port)];
    }
    case 'tproxied':
      return [...markIs(rule.mark), '-j', 'RETURN'];
    case 'host-allow':
      return ['-s', formatCidr(rule.source), '-p', rule.protocol, ...local, '-m', rule.protocol, '--dport', String(rule.port), '-j', 'RETURN'];
    case 'host-ndp':
      return ['-s', formatCidr(rule.source), '-p', 'ipv6-icmp', '-m', 'icmp6', '--icmpv6-type', rule.type, '-j', 'RETURN'];
    case 'host-reject':
      return ['-s', formatCidr(rule.source), ...local, '-j', 'REJECT'];
    case 'quic-allow':
      return ['-s', formatCidr(rule.source), '-d', formatCidr(rule.destination), '-p', 'udp', '-m', 'udp', '--dport', '443', '-j', 'RETURN'];
    case 'quic-reject':
      return ['-s', formatCidr(rule.source), '-p', 'udp', '-m', 'udp', '--dport', '443', '-j', 'REJECT'];
    case 'upstream-allow':
      return ['-d', formatCidr(rule.destination), ...markIs(rule.mark), '-j', 'RETURN'];
    case 'upstream-reject':
      return rule.destination === 'local' ? [...markIs(rule.mark), ...local, '-j', 'REJECT'] : ['-d', formatCidr(rule.destination), ...markIs(rule.mark), '-j', 'REJECT'];
    case 'conn-cap': {
      if (!('source' in rule.match)) throw new Error('--redirect nft-dnat is rendered for nftables only');
      // connlimit counts the connections whose packets it saw and conntrack still
      // holds open; seeing only SYNs of TPROXYed connections (the mark), it counts
      // exactly the connections sent to Envoy. Mask: per address, not per range.
      return [
        '-s', formatCidr(rule.match.source), '-p', 'tcp', '--syn', ...markIs(rule.match.mark),
        '-m', 'connlimit', '--connlimit-above', String(rule.limit), '--connlimit-mask', rule.family === 4 ? '32' : '128', '--connlimit-saddr',
        '-j', 'REJECT', '--reject-with', 'tcp-reset',
      ];
    }
    case 'dnat-skip':
    case 'dnat':
      throw new Error('--redirect nft-dnat is rendered for nftables only');
  }
}

export interface IptablesChain {
  readonly family: IpFamily;
  readonly table: 'mangle' | 'filter';
  readonly chain: string;
  /** Built-in chains that jump to it. */
  readonly hooks: readonly string[];
  /**
   * Where the jump goes: appended (the TPROXY chain, as in the seed, so rules
   * others put first in PREROUTING keep their place), or first (the guards: an
   * earlier ACCEPT in INPUT must not open the host to microVMs).
   */
  readonly jumpAt: 'end' | 'start';
  /** "" for the TPROXY chain (its piece ids predate the others), else "guard" / "upstream" / "cap". */
  readonly key: string;
  readonly specs: readonly (readonly string[])[];
}

/** Per family, the agent's chains in install order, those with rules only (all of them for uninstall). */
export function iptablesChains(plan: Plan, family: IpFamily, all = false): IptablesChain[] {
  const chains: IptablesChain[] = [
    { family, table: 'mangle', chain: IPTABLES_CHAIN, hooks: ['PREROUTING'], jumpAt: 'end', key: '', specs: rulesOf(plan, family).map(ruleSpec) },
    { family, table: 'filter', chain: IPTABLES_GUARD_CHAIN, hooks: ['INPUT', 'FORWARD'], jumpAt: 'start', key: 'guard', specs: plan.guard.filter((r) => r.family === family).map(ruleSpec) },
    { family, table: 'filter', chain: IPTABLES_UPSTREAM_CHAIN, hooks: ['OUTPUT'], jumpAt: 'start', key: 'upstream', specs: plan.upstream.filter((r) => r.family === family).map(ruleSpec) },
    { family, table: 'filter', chain: IPTABLES_CAP_CHAIN, hooks: ['INPUT'], jumpAt: 'start', key: 'cap', specs: plan.cap.filter((r) => r.family === family).map(ruleSpec) },
  ];
  return all ? chains : chains.filter((c) => c.specs.length > 0);
}

/** `-w 5`: wait for the xtables lock (iptables-legacy) instead of failing when another tool holds it. */
export const iptablesIn = (family: IpFamily, table: string, ...args: string[]): Command => command(iptablesTool(family), '-w', '5', '-t', table, ...args);
export const mangle = (family: IpFamily, ...args: string[]): Command => iptablesIn(family, 'mangle', ...args);

export const chainCommands = (c: Pick<IptablesChain, 'family' | 'table' | 'chain' | 'jumpAt'>) => {
  const t = (...args: string[]) => iptablesIn(c.family, c.table, ...args);
  return {
    create: () => t('-N', c.chain),
    flush: () => t('-F', c.chain),
    remove: () => t('-X', c.chain),
    list: () => t('-S', c.chain),
    append: (spec: readonly string[]) => t('-A', c.chain, ...spec),
    insert: (position: number, spec: readonly string[]) => t('-I', c.chain, String(position), ...spec),
    check: (spec: readonly string[]) => t('-C', c.chain, ...spec),
    delete: (spec: readonly string[]) => t('-D', c.chain, ...spec),
    deleteAt: (position: number) => t('-D', c.chain, String(position)),
    addJump: (hook: string) => (c.jumpAt === 'end' ? t('-A', hook, '-j', c.chain) : t('-I', hook, '1', '-j', c.chain)),
    checkJump: (hook: string) => t('-C', hook, '-j', c.chain),
    deleteJump: (hook: string) => t('-D', hook, '-j', c.chain),
    listHook: (hook: string) => t('-S', hook),
  };
};

/** Per family: the TPROXY chain's rules in order. */
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
