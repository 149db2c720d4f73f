// Which parts make up a host's setup, in the order install applies them: policy
// routing and sysctls first, then the guards (host protection, QUIC, upstream),
// the TPROXY rules (and their jump) last, so traffic is redirected only once it
// can be delivered and the host is protected. Uninstall goes the other way.
// --redirect nft-dnat is one part: its own nft table.
// The connection cap is a part of its own (an iptables chain per family, or its own
// nft table) installed before the TPROXY rules, so no connection reaches Envoy
// uncapped; turned off (--max-connections-per-source 0), install removes it.
import type { IpFamily } from '../../net/ip.js';
import type { Plan } from '../plan.js';
import { iptablesChains } from '../render/iptables.js';
import { renderNftCapTable, renderNftTable } from '../render/nftables.js';
import { absent } from './absent.js';
import { iptablesPart } from './iptables.js';
import { nftablesPart } from './nftables.js';
import type { Part } from './part.js';
import { routingPart } from './routing.js';
import { rpFilterPart } from './rpFilter.js';

/** Guards before the TPROXY chain (install order). */
const iptablesParts = (plan: Plan, families: readonly IpFamily[], all = false): Part[] =>
  families.flatMap((family) => {
    const chains = iptablesChains(plan, family, all);
    return [...chains.filter((c) => c.key !== ''), ...chains.filter((c) => c.key === '')].map(iptablesPart);
  });

/** The cap's chain of a family the plan leaves without one: to be removed if found. */
const iptablesCapOff = (plan: Plan, families: readonly IpFamily[]): Part[] =>
  families.flatMap((family) => iptablesChains(plan, family, true).filter((c) => c.key === 'cap' && c.specs.length === 0).map((c) => absent(iptablesPart(c))));

/** The cap's nft table: the plan's, or (cap off) one to be removed if found. */
const nftCapPart = (plan: Plan): Part => {
  const table = renderNftCapTable(plan);
  return table.chains.length > 0 ? nftablesPart(table) : absent(nftablesPart(table));
};

const netfilterParts = (plan: Plan, families: readonly IpFamily[]): Part[] =>
  plan.config.backend === 'nftables' ? [nftCapPart(plan), nftablesPart(renderNftTable(plan))] : [...iptablesCapOff(plan, families), ...iptablesParts(plan, families)];

export function installParts(plan: Plan): Part[] {
  if (plan.config.redirect === 'nft-dnat') return [nftablesPart(renderNftTable(plan))];
  return [
    ...plan.routing.map(routingPart),
    ...(plan.sysctls.length > 0 ? [rpFilterPart(true)] : []),
    ...netfilterParts(plan, plan.families),
  ];
}

export interface UninstallPart {
  readonly part: Part;
  /** A part of a family the flags did not ask for: removed when found, skipped when it cannot even be read. */
  readonly optional: boolean;
}

/**
 * Both families and every agent chain, whatever the flags say: an earlier
 * install may have had --ipv6, or a guard these flags leave out.
 */
export function uninstallParts(plan: Plan): UninstallPart[] {
  if (plan.config.redirect === 'nft-dnat') return [{ part: nftablesPart(renderNftTable(plan)), optional: false }];
  const families: IpFamily[] = [4, 6];
  const optional = (family: IpFamily) => !plan.families.includes(family);
  const netfilter: UninstallPart[] =
    plan.config.backend === 'nftables'
      ? [nftablesPart(renderNftTable(plan)), nftablesPart(renderNftCapTable(plan))].map((part) => ({ part, optional: false }))
      : families.flatMap((family) => iptablesParts(plan, [family], true).reverse().map((part) => ({ part, optional: optional(family) })));
  return [
    ...netfilter,
    ...families.map((family) => ({
      part: routingPart({ family, mark: plan.config.mark, table: plan.config.table }),
      optional: optional(family),
    })),
    { part: rpFilterPart(false), optional: false },
  ];
}

/** For a dry-run uninstall: only what this plan would have installed, TPROXY first. */
export const plannedUninstallParts = (plan: Plan): Part[] =>
  plan.config.redirect === 'nft-dnat'
    ? installParts(plan)
    : [
        ...(plan.config.backend === 'nftables' ? netfilterParts(plan, plan.families).reverse() : plan.families.flatMap((f) => iptablesParts(plan, [f]).reverse())),
        ...plan.routing.map(routingPart),
        ...(plan.sysctls.length > 0 ? [rpFilterPart(true)] : []),
      ];
