// Plan → nft scripts that replace one of the agent's own tables atomically
// (`nft -f`). Every rule carries a comment with a hash of its text, so status can
// tell from `nft -j list` which expected rules are there, in which order. Pure.
//
// table inet egress_xds (--redirect tproxy):
//   prerouting  (filter, mangle priority)  the TPROXY rules     = iptables mangle EGRESS_XDS
//   input, forward (filter priority)       host guard and QUIC  = iptables filter EGRESS_XDS_GUARD
//   output      (filter priority)          the upstream guard   = iptables filter EGRESS_XDS_UPSTREAM
// table inet egress_xds_cap (--redirect tproxy, its own table: see NFT_CAP_TABLE):
//   conncap     (filter priority, input)   the connection cap   = iptables filter EGRESS_XDS_CAP
// table ip egress_xds_dnat (--redirect nft-dnat):
//   output      (nat, priority -100)       seed 000's DNAT
//   conncap     (filter priority, output)  the connection cap, after the DNAT (it matches Envoy's address)
// The cap counts with `ct count` in a dynamic set of source addresses
// (egress_conn4/6): one element per address, each with its own conntrack count,
// dropped by the kernel when its count falls to zero.
import { createHash } from 'node:crypto';
import { type IpFamily, formatCidr, formatIp } from '../../net/ip.js';
import { NFT_CAP_CHAIN, NFT_CAP_TABLE, NFT_CHAIN, NFT_DNAT_CHAIN, NFT_DNAT_TABLE, NFT_TABLE, formatMark, nftCapSet } from '../config.js';
import type { NetfilterRule, Plan } from '../plan.js';

export interface NftRule {
  /** The rule without its comment. */
  readonly text: string;
  /** The comment that identifies it: "egress-xds:" + hash of text. */
  readonly id: string;
}

export interface NftHook {
  readonly type: 'filter' | 'nat';
  readonly hook: 'prerouting' | 'input' | 'forward' | 'output';
  /** As a keyword in the script; `nft -j` lists the number. */
  readonly priorityName: 'mangle' | 'filter' | '-100';
  readonly priority: number;
  readonly policy: 'accept';
}

export interface NftChain {
  readonly name: string;
  readonly hook: NftHook;
  readonly rules: readonly NftRule[];
}

/** A set the packet path fills (flags dynamic): the cap's source addresses. */
export interface NftSet {
  readonly name: string;
  readonly type: 'ipv4_addr' | 'ipv6_addr';
  /** Addresses tracked at once; a full set adds none, and a new address then passes uncapped. */
  readonly size: number;
}

export interface NftTable {
  readonly family: 'inet' | 'ip';
  readonly name: string;
  readonly sets: readonly NftSet[];
  readonly chains: readonly NftChain[];
}

const nfFamily = (family: 4 | 6): 'ip' | 'ip6' => (family === 4 ? 'ip' : 'ip6');
const markIs = (mark: number): string => `meta mark & ${formatMark(mark)} == ${formatMark(mark)}`;

function ruleTexts(rule: NetfilterRule): string[] {
  const f = nfFamily(rule.family);
  switch (rule.kind) {
    // One rule serves both families in an inet table (renderNftRules keeps the first).
    case 'replies':
      return ['ct direction reply return'];
    case 'exclude':
      return [`${f} daddr ${formatCidr(rule.destination)} return`];
    case 'tproxy': {
      const match = `${f} saddr ${formatCidr(rule.source)} meta l4proto ${rule.protocol}${rule.dport === undefined ? '' : ` th dport ${rule.dport}`}`;
      return [
        // MARK/MARK of iptables' --tproxy-mark is "set these bits": mark | MARK.
        `${match} tproxy ${f} to :${rule.port} meta mark set meta mark | ${formatMark(rule.mark)} accept`,
        // iptables' TPROXY drops when no socket listens; nft's tproxy falls through.
        // Drop here too, so a stopped Envoy never means unfiltered egress.
        `${match} drop`,
      ];
    }
    case 'tproxied':
      return [`${markIs(rule.mark)} return`];
    case 'host-allow':
      return [`${f} saddr ${formatCidr(rule.source)} fib daddr type local ${rule.protocol} dport ${rule.port} return`];
    case 'host-ndp':
      return [`ip6 saddr ${formatCidr(rule.source)} icmpv6 type ${rule.type === 'neighbour-solicitation' ? 'nd-neighbor-solicit' : 'nd-neighbor-advert'} return`];
    case 'host-reject':
      return [`${f} saddr ${formatCidr(rule.source)} fib daddr type local reject`];
    case 'quic-allow':
      return [`${f} saddr ${formatCidr(rule.source)} ${f} daddr ${formatCidr(rule.destination)} udp dport 443 return`];
    case 'quic-reject':
      return [`${f} saddr ${formatCidr(rule.source)} udp dport 443 reject`];
    case 'upstream-allow':
      return [`${markIs(rule.mark)} ${f} daddr ${formatCidr(rule.destination)} return`];
    case 'upstream-reject':
      return [rule.destination === 'local' ? `${markIs(rule.mark)} fib daddr type local reject` : `${markIs(rule.mark)} ${f} daddr ${formatCidr(rule.destination)} reject`];
    case 'conn-cap': {
      // --syn's spelling; `add @set { … ct count over N }` breaks the rule (so the
      // counter and reject are skipped) while the address has N or fewer.
      const syn = 'tcp flags & (fin | syn | rst | ack) == syn';
      const match = 'source' in rule.match ? `${markIs(rule.match.mark)} ${f} saddr ${formatCidr(rule.match.source)} ${syn}` : `${syn} ct status dnat ip daddr ${formatIp(rule.match.dnatTo.address)} tcp dport ${rule.match.dnatTo.port}`;
      return [`${match} add @${nftCapSet(rule.family)} { ${f} saddr ct count over ${rule.limit} } counter reject with tcp reset`];
    }
    case 'dnat-skip':
      return ['mark' in rule.match ? `${markIs(rule.match.mark)} return` : `ip daddr ${formatCidr(rule.match.destination)} return`];
    case 'dnat': {
      const ports = rule.dports.length === 1 ? String(rule.dports[0]) : `{ ${rule.dports.join(', ')} }`;
      return [`tcp dport ${ports} dnat to ${formatIp(rule.to.address)}:${rule.to.port}`];
    }
  }
}

export const ruleId = (text: string): string => `egress-xds:${createHash('sha256').update(text).digest('hex').slice(0, 12)}`;

const toNftRules = (rules: readonly NetfilterRule[]): NftRule[] => [...new Set(rules.flatMap(ruleTexts))].map((text) => ({ text, id: ruleId(text) }));

/** The TPROXY chain's rules (prerouting). */
export const renderNftRules = (plan: Plan): NftRule[] => toNftRules(plan.rules);

/** Priority mangle (-150): where iptables' mangle PREROUTING runs, before the routing decision. */
export const NFT_HOOK: NftHook = { type: 'filter', hook: 'prerouting', priorityName: 'mangle', priority: -150, policy: 'accept' };
const filterHook = (hook: 'input' | 'forward' | 'output'): NftHook => ({ type: 'filter', hook, priorityName: 'filter', priority: 0, policy: 'accept' });
// dstnat's value; nft accepts the name "dstnat" in prerouting only, so the number.
const DNAT_HOOK: NftHook = { type: 'nat', hook: 'output', priorityName: '-100', priority: -100, policy: 'accept' };

/** The agent's nft table for this plan, chains in a fixed order; a chain with no rules is left out. */
export function renderNftTable(plan: Plan): NftTable {
  if (plan.config.redirect === 'nft-dnat') {
    const chains: NftChain[] = [
      { name: NFT_DNAT_CHAIN, hook: DNAT_HOOK, rules: toNftRules(plan.dnat) },
      { name: NFT_CAP_CHAIN, hook: filterHook('output'), rules: toNftRules(plan.cap) },
    ];
    return { family: 'ip', name: NFT_DNAT_TABLE, sets: capSets(plan), chains: chains.filter((c) => c.rules.length > 0) };
  }
  const guard = toNftRules(plan.guard);
  const chains: NftChain[] = [
    { name: NFT_CHAIN, hook: NFT_HOOK, rules: renderNftRules(plan) },
    // The same guard in both hooks: to the host (input), and through it (forward, QUIC).
    { name: 'input', hook: filterHook('input'), rules: guard },
    { name: 'forward', hook: filterHook('forward'), rules: guard },
    { name: 'output', hook: filterHook('output'), rules: toNftRules(plan.upstream) },
  ];
  return { family: 'inet', name: NFT_TABLE, sets: [], chains: chains.filter((c) => c.rules.length > 0) };
}

/**
 * --redirect tproxy: the cap's table (no chain and no set with the cap off). TPROXYed
 * packets are delivered locally, so the input hook sees them; filter priority, as
 * REJECT in iptables' filter INPUT.
 */
export function renderNftCapTable(plan: Plan): NftTable {
  const rules = toNftRules(plan.cap);
  return { family: 'inet', name: NFT_CAP_TABLE, sets: capSets(plan), chains: rules.length === 0 ? [] : [{ name: NFT_CAP_CHAIN, hook: filterHook('input'), rules }] };
}

/** Addresses tracked at once: more microVMs than a host runs (elements go when their count reaches zero). */
const CAP_SET_SIZE = 65535;

/** One set per family the cap covers. */
const capSets = (plan: Plan): NftSet[] =>
  ([4, 6] as const)
    .filter((family) => plan.cap.some((r) => r.family === family))
    .map((family) => ({ name: nftCapSet(family), type: family === 4 ? 'ipv4_addr' : 'ipv6_addr', size: CAP_SET_SIZE }));

/** The cap's rule ids, each with its family: where `agent status` reads the refusal counters. */
export const capRuleIds = (plan: Plan): { family: IpFamily; id: string }[] =>
  plan.cap.flatMap((rule) => ruleTexts(rule).map((text) => ({ family: rule.family, id: ruleId(text) })));

/** Every table the agent may own, whatever the flags. */
export const NFT_TABLES: readonly { family: 'inet' | 'ip'; name: string }[] = [
  { family: 'inet', name: NFT_TABLE },
  { family: 'inet', name: NFT_CAP_TABLE },
  { family: 'ip', name: NFT_DNAT_TABLE },
];

/**
 * "table …; delete table …; table … { … }" in one transaction: creates the table
 * if missing, so the delete always succeeds, then writes it fresh. Atomic, and
 * the same script twice leaves one copy.
 */
export function renderNftTableScript(table: NftTable): string {
  const sets = table.sets.map((set) => `\tset ${set.name} {\n\t\ttype ${set.type}; size ${set.size}; flags dynamic;\n\t}\n`).join('');
  const chains = table.chains
    .map(
      (chain) =>
        `\tchain ${chain.name} {\n` +
        `\t\ttype ${chain.hook.type} hook ${chain.hook.hook} priority ${chain.hook.priorityName}; policy ${chain.hook.policy};\n` +
        chain.rules.map((r) => `\t\t${r.text} comment "${r.id}"\n`).join('') +
        `\t}\n`,
    )
    .join('');
  return `${renderNftRemoveScript(table)}table ${table.family} ${table.name} {\n${sets}${chains}}\n`;
}

export const renderNftScript = (plan: Plan): string => renderNftTableScript(renderNftTable(plan));

/** Every table this plan writes, in one script (what preflight's `nft -c` checks). */
export const renderNftScripts = (plan: Plan): string => {
  const cap = plan.config.redirect === 'tproxy' ? renderNftCapTable(plan) : undefined;
  return `${cap && cap.chains.length > 0 ? renderNftTableScript(cap) : ''}${renderNftScript(plan)}`;
};

/** Removes the table if it is there, and succeeds if it is not. */
export const renderNftRemoveScript = (table: { family: string; name: string } = { family: 'inet', name: NFT_TABLE }): string =>
  `table ${table.family} ${table.name}\ndelete table ${table.family} ${table.name}\n`;

/** Puts back a table saved with `nft list table …` (rollback). */
export const renderNftRestoreScript = (saved: string, table?: { family: string; name: string }): string =>
  `${renderNftRemoveScript(table)}${saved.endsWith('\n') ? saved : `${saved}\n`}`;
