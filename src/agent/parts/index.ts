// Which parts make up a host's setup, in the order install applies them: policy
// routing and sysctls first, the netfilter rules (and their jump) last, so
// traffic is redirected only once it can be delivered. Uninstall goes the other way.
import type { IpFamily } from '../../net/ip.js';
import type { Plan } from '../plan.js';
import { iptablesPart } from './iptables.js';
import { nftablesPart } from './nftables.js';
import type { Part } from './part.js';
import { routingPart } from './routing.js';
import { rpFilterPart } from './rpFilter.js';

const netfilterParts = (plan: Plan, families: readonly IpFamily[]): Part[] =>
  plan.config.backend === 'nftables' ? [nftablesPart(plan)] : families.map((family) => iptablesPart(plan, family));

export function installParts(plan: Plan): Part[] {
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

/** Both families, whatever the flags say: an earlier install may have had --ipv6. */
export function uninstallParts(plan: Plan): UninstallPart[] {
  const families: IpFamily[] = [4, 6];
  const optional = (family: IpFamily) => !plan.families.includes(family);
  const netfilter: UninstallPart[] =
    plan.config.backend === 'nftables'
      ? [{ part: nftablesPart(plan), optional: false }]
      : families.map((family) => ({ part: iptablesPart(plan, family), optional: optional(family) }));
  return [
    ...netfilter,
    ...families.map((family) => ({
      part: routingPart({ family, mark: plan.config.mark, table: plan.config.table }),
      optional: optional(family),
    })),
    { part: rpFilterPart(false), optional: false },
  ];
}

/** For a dry-run uninstall: only what this plan would have installed. */
export const plannedUninstallParts = (plan: Plan): Part[] => [
  ...netfilterParts(plan, plan.families),
  ...plan.routing.map(routingPart),
  ...(plan.sysctls.length > 0 ? [rpFilterPart(true)] : []),
];
