// The host's rules as data (after Kuma's transparent-proxy installer): one
// AgentConfig plus the host's addresses give one Plan; the renderers turn it into
// iptables commands or an nft script, so both backends mean the same thing.
import { type Cidr, type IpAddress, type IpFamily, cidrContains, compareCidrs, familyBits, formatCidr } from '../net/ip.js';
import { type AgentConfig, type DnatConfig, familiesOf } from './config.js';
import { specialRanges } from './specialRanges.js';

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
  /** Only this destination port (DNS: 53); undefined: every port. */
  readonly dport?: number;
  readonly port: number;
  readonly mark: number;
}

// The guard chain (filter table, reached from INPUT and FORWARD): what microVMs
// may reach on the host itself, and QUIC.

/** Packets TPROXY delivered to Envoy (they carry its mark): not the guard's business, even when addressed to the host (DNS). */
export interface TproxiedRule {
  readonly kind: 'tproxied';
  readonly family: IpFamily;
  readonly mark: number;
}

/** From source to any of the host's own addresses (addrtype LOCAL, so it follows address changes), this port is open. */
export interface HostAllowRule {
  readonly kind: 'host-allow';
  readonly family: IpFamily;
  readonly source: Cidr;
  readonly protocol: 'tcp' | 'udp';
  readonly port: number;
}

/**
 * IPv6 neighbour discovery from source to the host passes: the host learns a
 * microVM's link-layer address from its neighbour advertisement, sent to the
 * host's own (link-local or global) address. Rejected, the host cannot reach
 * any microVM address it has to solicit (a second address, or one whose entry
 * went stale) and the microVM's IPv6 stops. IPv4's ARP is not IP: no rule needed.
 */
export interface HostNdpRule {
  readonly kind: 'host-ndp';
  readonly family: 6;
  readonly source: Cidr;
  readonly type: 'neighbour-solicitation' | 'neighbour-advertisement';
}

/** Everything else from source to the host's own addresses is rejected. */
export interface HostRejectRule {
  readonly kind: 'host-reject';
  readonly family: IpFamily;
  readonly source: Cidr;
}

/** UDP/443 from source to destination passes (--allow-quic). */
export interface QuicAllowRule {
  readonly kind: 'quic-allow';
  readonly family: IpFamily;
  readonly source: Cidr;
  readonly destination: Cidr;
}

/** UDP/443 (QUIC) from source is rejected (ICMP port unreachable), so clients fall back to TCP, where SNI is seen. */
export interface QuicRejectRule {
  readonly kind: 'quic-reject';
  readonly family: IpFamily;
  readonly source: Cidr;
}

// The upstream chain (filter table, from OUTPUT): Envoy's name-dialled sockets
// carry serve's --upstream-mark; they may not reach special addresses.

export interface UpstreamAllowRule {
  readonly kind: 'upstream-allow';
  readonly family: IpFamily;
  readonly mark: number;
  readonly destination: Cidr;
}

export interface UpstreamRejectRule {
  readonly kind: 'upstream-reject';
  readonly family: IpFamily;
  readonly mark: number;
  /** 'local': any of the host's own addresses (addrtype LOCAL). */
  readonly destination: Cidr | 'local';
  readonly what: string;
}

// --redirect nft-dnat (seed 000): the nat OUTPUT chain of the host or a container namespace.

/** Left alone: Envoy's own marked connections, loopback, the proxy itself. */
export interface DnatSkipRule {
  readonly kind: 'dnat-skip';
  readonly family: 4;
  readonly match: { readonly mark: number } | { readonly destination: Cidr };
}

export interface DnatRule {
  readonly kind: 'dnat';
  readonly family: 4;
  readonly dports: readonly number[];
  readonly to: DnatConfig;
}

// The connection cap (filter table: INPUT for TPROXY, OUTPUT after the DNAT for
// nft-dnat): a new TCP connection to Envoy is refused with a reset at its SYN when
// its source address already has `limit` open ones. Counted by conntrack, in the
// kernel, before Envoy accepts anything.

export interface ConnCapRule {
  readonly kind: 'conn-cap';
  readonly family: IpFamily;
  readonly limit: number;
  /**
   * Which connections are Envoy's: TPROXYed ones from a microVM range (they carry
   * the TPROXY mark), or those the nft-dnat rule rewrote to Envoy's address.
   */
  readonly match: { readonly source: Cidr; readonly mark: number } | { readonly dnatTo: DnatConfig };
}

export type GuardRule = RepliesRule | TproxiedRule | HostAllowRule | HostNdpRule | HostRejectRule | QuicAllowRule | QuicRejectRule;
export type UpstreamRule = UpstreamAllowRule | UpstreamRejectRule;
export type NetfilterRule = RepliesRule | ExcludeRule | TproxyRule | GuardRule | UpstreamRule | DnatSkipRule | DnatRule | ConnCapRule;

export interface SysctlSetting {
  readonly key: string;
  readonly value: string;
}

export interface Plan {
  readonly config: AgentConfig;
  readonly families: readonly IpFamily[];
  readonly routing: readonly PolicyRouting[];
  /** mangle PREROUTING, in evaluation order: replies, flag exclusions, DNS, host addresses, then TPROXY. */
  readonly rules: readonly NetfilterRule[];
  /** filter INPUT and FORWARD: host protection and QUIC. */
  readonly guard: readonly GuardRule[];
  /** filter OUTPUT: Envoy's marked upstream connections to special addresses. */
  readonly upstream: readonly UpstreamRule[];
  /** --redirect nft-dnat: nat OUTPUT (then every other list is empty). */
  readonly dnat: readonly (DnatSkipRule | DnatRule)[];
  /** The per-source connection cap, per family and source range; empty with --max-connections-per-source 0. */
  readonly cap: readonly ConnCapRule[];
  readonly sysctls: readonly SysctlSetting[];
}

export function buildPlan(config: AgentConfig, hostAddresses: readonly IpAddress[] = []): Plan {
  if (config.dnat) return buildDnatPlan(config, config.dnat);
  const families = familiesOf(config);
  const routing = families.map((family) => ({ family, mark: config.mark, table: config.table }));

  const rules: NetfilterRule[] = [];
  for (const family of families) {
    rules.push({ kind: 'replies', family });
    const flagged = config.excludes.filter((c) => c.family === family);
    for (const destination of flagged) rules.push({ kind: 'exclude', family, destination, reason: 'flag' });
    // DNS before the host addresses: a microVM whose resolver is its gateway (a
    // host address) is answered by Envoy's DNS listener too.
    if (config.udpPort !== undefined) {
      for (const source of config.sources.filter((s) => s.family === family)) {
        rules.push({ kind: 'tproxy', family, protocol: 'udp', source, dport: 53, port: config.udpPort, mark: config.mark });
      }
    }
    if (config.excludeHostAddresses) {
      for (const destination of hostExclusions(hostAddresses, family, flagged)) {
        rules.push({ kind: 'exclude', family, destination, reason: 'host-address' });
      }
    }
  }
  for (const family of families) {
    for (const source of config.sources.filter((s) => s.family === family)) {
      rules.push({ kind: 'tproxy', family, protocol: 'tcp', source, port: config.port, mark: config.mark });
    }
  }

  const sysctls = config.relaxRpFilter && families.includes(4) ? [{ key: 'net.ipv4.conf.all.rp_filter', value: '0' }] : [];
  return { config, families, routing, rules, guard: guardRules(config, families), upstream: upstreamRules(config, families), dnat: [], cap: capRules(config, families), sysctls };
}

/**
 * Per family: replies and TPROXYed packets pass; from each microVM range, the
 * host's own addresses only on --allow-host-port (TCP and UDP), QUIC only to
 * --allow-quic. With --no-exclude-host-addresses the host's addresses are sent
 * to Envoy like any destination, so the host rules are left out.
 */
function guardRules(config: AgentConfig, families: readonly IpFamily[]): GuardRule[] {
  const rules: GuardRule[] = [];
  for (const family of families) {
    rules.push({ kind: 'replies', family }, { kind: 'tproxied', family, mark: config.mark });
    const sources = config.sources.filter((s) => s.family === family);
    for (const source of sources) {
      if (config.excludeHostAddresses) {
        for (const port of config.allowHostPorts) {
          for (const protocol of ['tcp', 'udp'] as const) rules.push({ kind: 'host-allow', family, source, protocol, port });
        }
        if (family === 6) {
          for (const type of ['neighbour-solicitation', 'neighbour-advertisement'] as const) rules.push({ kind: 'host-ndp', family, source, type });
        }
        rules.push({ kind: 'host-reject', family, source });
      }
      for (const destination of config.allowQuic.filter((c) => c.family === family)) rules.push({ kind: 'quic-allow', family, source, destination });
      rules.push({ kind: 'quic-reject', family, source });
    }
  }
  return rules;
}

/** Per family: --allow-upstream-cidr first, then every special range and the host's own addresses rejected. */
function upstreamRules(config: AgentConfig, families: readonly IpFamily[]): UpstreamRule[] {
  const mark = config.upstreamMark;
  if (mark === 0) return [];
  const rules: UpstreamRule[] = [];
  for (const family of families) {
    for (const destination of config.allowUpstreamCidrs.filter((c) => c.family === family)) rules.push({ kind: 'upstream-allow', family, mark, destination });
    for (const range of specialRanges(family)) rules.push({ kind: 'upstream-reject', family, mark, destination: range.cidr, what: range.what });
    rules.push({ kind: 'upstream-reject', family, mark, destination: 'local', what: "the host's own addresses" });
  }
  return rules;
}

/** One rule per microVM range: TCP TPROXYed to Envoy (UDP, DNS, is not counted; nor the host's own ports, which are not TPROXYed). */
function capRules(config: AgentConfig, families: readonly IpFamily[]): ConnCapRule[] {
  const limit = config.maxConnectionsPerSource;
  if (limit === 0) return [];
  return families.flatMap((family) =>
    config.sources.filter((s) => s.family === family).map((source): ConnCapRule => ({ kind: 'conn-cap', family, limit, match: { source, mark: config.mark } })),
  );
}

/** Seed 000's one DNAT rule, with what must never be sent back to the proxy in front of it. */
function buildDnatPlan(config: AgentConfig, dnat: DnatConfig): Plan {
  const rules: (DnatSkipRule | DnatRule)[] = [];
  // Envoy's own upstream connections, when it runs in this namespace: back to itself would loop.
  if (config.upstreamMark !== 0) rules.push({ kind: 'dnat-skip', family: 4, match: { mark: config.upstreamMark } });
  rules.push(
    { kind: 'dnat-skip', family: 4, match: { destination: { family: 4, network: 0x7f000000n, prefixLength: 8 } } },
    { kind: 'dnat-skip', family: 4, match: { destination: { family: 4, network: dnat.address.value, prefixLength: 32 } } },
    { kind: 'dnat', family: 4, dports: dnat.ports, to: dnat },
  );
  const cap: ConnCapRule[] = config.maxConnectionsPerSource === 0 ? [] : [{ kind: 'conn-cap', family: 4, limit: config.maxConnectionsPerSource, match: { dnatTo: dnat } }];
  return { config, families: [4], routing: [], rules: [], guard: [], upstream: [], dnat: rules, cap, sysctls: [] };
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
