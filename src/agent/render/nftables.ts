// Plan → one nft script that replaces the agent's own table atomically
// (`nft -f`). Every rule carries a comment with a hash of its text, so status can
// tell from `nft -j list` which expected rules are there, in which order. Pure.
import { createHash } from 'node:crypto';
import { formatCidr } from '../../net/ip.js';
import { NFT_CHAIN, NFT_TABLE, formatMark } from '../config.js';
import type { NetfilterRule, Plan } from '../plan.js';

export interface NftRule {
  /** The rule without its comment. */
  readonly text: string;
  /** The comment that identifies it: "egress-xds:" + hash of text. */
  readonly id: string;
}

const nfFamily = (family: 4 | 6): 'ip' | 'ip6' => (family === 4 ? 'ip' : 'ip6');

function ruleTexts(rule: NetfilterRule): string[] {
  const f = nfFamily(rule.family);
  // One rule serves both families in an inet table (renderNftRules keeps the first).
  if (rule.kind === 'replies') return ['ct direction reply return'];
  if (rule.kind === 'exclude') return [`${f} daddr ${formatCidr(rule.destination)} return`];
  const match = `${f} saddr ${formatCidr(rule.source)} meta l4proto ${rule.protocol}`;
  return [
    // MARK/MARK of iptables' --tproxy-mark is "set these bits": mark | MARK.
    `${match} tproxy ${f} to :${rule.port} meta mark set meta mark | ${formatMark(rule.mark)} accept`,
    // iptables' TPROXY drops when no socket listens; nft's tproxy falls through.
    // Drop here too, so a stopped Envoy never means unfiltered egress.
    `${match} drop`,
  ];
}

export const ruleId = (text: string): string => `egress-xds:${createHash('sha256').update(text).digest('hex').slice(0, 12)}`;

export function renderNftRules(plan: Plan): NftRule[] {
  const texts = [...new Set(plan.rules.flatMap(ruleTexts))];
  return texts.map((text) => ({ text, id: ruleId(text) }));
}

/** Priority mangle (-150): where iptables' mangle PREROUTING runs, before the routing decision. */
export const NFT_HOOK = { type: 'filter', hook: 'prerouting', priority: -150, policy: 'accept' } as const;

/**
 * "table …; delete table …; table … { … }" in one transaction: creates the table
 * if missing, so the delete always succeeds, then writes it fresh. Atomic, and
 * the same script twice leaves one copy.
 */
export function renderNftScript(plan: Plan): string {
  const rules = renderNftRules(plan).map((r) => `\t\t${r.text} comment "${r.id}"\n`).join('');
  return (
    `table inet ${NFT_TABLE}\n` +
    `delete table inet ${NFT_TABLE}\n` +
    `table inet ${NFT_TABLE} {\n` +
    `\tchain ${NFT_CHAIN} {\n` +
    `\t\ttype ${NFT_HOOK.type} hook ${NFT_HOOK.hook} priority mangle; policy ${NFT_HOOK.policy};\n` +
    rules +
    `\t}\n` +
    `}\n`
  );
}

/** Removes the table if it is there, and succeeds if it is not. */
export const renderNftRemoveScript = (): string => `table inet ${NFT_TABLE}\ndelete table inet ${NFT_TABLE}\n`;

/** Puts back a table saved with `nft list table inet egress_xds` (rollback). */
export const renderNftRestoreScript = (saved: string): string => `${renderNftRemoveScript()}${saved.endsWith('\n') ? saved : `${saved}\n`}`;
