// The host's rules as data (after Kuma's transparent-proxy installer): one
// AgentConfig plus the host's addresses give one Plan; the renderers turn it into
// iptables commands or an nft script, so both backends mean the same thing.
import { type Cidr, type IpAddress, type IpFamily, cidrContains, compareCidrs, familyBits, formatCidr } from '../net/ip.js';
import { type AgentConfig, familiesOf } from './config.js';

/** `ip rule add fwmark MARK/MARK lookup TABLE` and `ip route add local default dev lo table TABLE`. */
export interface PolicyRouting {
  readonly family: IpFamily;
  readonly mark: number;
  readonly table: number;
}

/**
 * Packets that answer a connection opened from outside (SSH through a DNAT to the
 * guest, seed §6.4 "ingress stays as in Step 3") are left alone. Without this the
 * guest's replies match the TPROXY rule, land on Envoy's listener and the
 * connection dies.
 */
export interface RepliesRule {
  readonly kind: 'replies';
  readonly family: IpFamily;
}

/** Traffic to this destination is left alone (RETURN before any TPROXY rule). */
export interface ExcludeRule {
  readonly kind: 'exclude';
  readonly family: IpFamily;
  readonly destination: Cidr;
  readonly reason: 'flag' | 'host-address';
}

/** Traffic from source is handed to the local transparent listener on port, marked for policy routing. */
export interface TproxyRule {
  readonly kind: 'tproxy';
  readonly family: IpFamily;
  readonly protocol: 'tcp' | 'udp';
  readonly source: Cidr;
  readonly port: number;
  readonly mark: number;
}

export type NetfilterRule = RepliesRule | ExcludeRule | TproxyRule;

export interface SysctlSetting {
  readonly key: string;
  readonly value: string;
}

export interface Plan {
  readonly config: AgentConfig;
  readonly families: readonly IpFamily[];
  readonly routing: readonly PolicyRouting[];
  /** In evaluation order: replies, then every exclusion, before every TPROXY rule. */
  readonly rules: readonly NetfilterRule[];
  readonly sysctls: readonly SysctlSetting[];
}

export function buildPlan(config: AgentConfig, hostAddresses: readonly IpAddress[] = []): Plan {
  const families = familiesOf(config);
  const routing = families.map((family) => ({ family, mark: config.mark, table: config.table }));

  const rules: NetfilterRule[] = [];
  for (const family of families) {
    rules.push({ kind: 'replies', family });
    const flagged = config.excludes.filter((c) => c.family === family);
    for (const destination of flagged) rules.push({ kind: 'exclude', family, destination, reason: 'flag' });
    if (config.excludeHostAddresses) {
      for (const destination of hostExclusions(hostAddresses, family, flagged)) {
        rules.push({ kind: 'exclude', family, destination, reason: 'host-address' });
      }
    }
  }
  for (const family of families) {
    for (const source of config.sources.filter((s) => s.family === family)) {
      rules.push({ kind: 'tproxy', family, protocol: 'tcp', source, port: config.port, mark: config.mark });
      if (config.udpPort !== undefined) {
        rules.push({ kind: 'tproxy', family, protocol: 'udp', source, port: config.udpPort, mark: config.mark });
      }
    }
  }

  const sysctls = config.relaxRpFilter && families.includes(4) ? [{ key: 'net.ipv4.conf.all.rp_filter', value: '0' }] : [];
  return { config, families, routing, rules, sysctls };
}

/** Host addresses as /32 or /128, sorted so the plan is stable between passes, minus those already excluded. */
function hostExclusions(addresses: readonly IpAddress[], family: IpFamily, already: readonly Cidr[]): Cidr[] {
  const seen = new Set<string>();
  const result: Cidr[] = [];
  for (const address of addresses) {
    if (address.family !== family) continue;
    const cidr: Cidr = { family, network: address.value, prefixLength: familyBits(family) };
    const key = formatCidr(cidr);
    if (seen.has(key) || already.some((c) => cidrContains(c, cidr))) continue;
    seen.add(key);
    result.push(cidr);
  }
  return result.sort(compareCidrs);
}

export const rulesOf = (plan: Plan, family: IpFamily): NetfilterRule[] => plan.rules.filter((r) => r.family === family);
