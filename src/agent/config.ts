// The one config struct every rule is built from, and the validation that turns
// flag strings into it. Errors name the flag; nothing here touches the system.
import { type Cidr, type IpAddress, type IpFamily, formatCidr, parseCidr, parseIp } from '../net/ip.js';
import { FlagError } from './errors.js';

export type Backend = 'iptables' | 'nftables';

/**
 * tproxy: the microVMs' traffic is sent to Envoy's transparent listener (seed 002).
 * nft-dnat: a host's (or a container namespace's) own outgoing TCP to some ports is
 * DNATed to Envoy's TLS forward-proxy listener (seed 000, `nft add rule ip nat OUTPUT
 * tcp dport 443 dnat to ADDR:10001`).
 */
export type Redirect = 'tproxy' | 'nft-dnat';

export interface DnatConfig {
  /** Envoy's address (the forward proxy's TLS listener). */
  readonly address: IpAddress;
  /** Its port (--port; default 10001, seed 000). */
  readonly port: number;
  /** Destination ports whose connections are redirected (--dnat-port; default 443). */
  readonly ports: readonly number[];
}

export interface AgentConfig {
  readonly backend: Backend;
  readonly redirect: Redirect;
  /** Envoy's transparent TCP listener (seed §6.4 ENVOY_PORT). */
  readonly port: number;
  /**
   * Envoy's UDP DNS listener (serve --dns-port, 15053): the microVMs' DNS (UDP to
   * port 53, and nothing else) is TPROXYed to it. Undefined: DNS is left alone.
   */
  readonly udpPort: number | undefined;
  /** Host ports (TCP and UDP) the microVMs may reach on the host's own addresses; everything else there is rejected. */
  readonly allowHostPorts: readonly number[];
  /** Destinations microVMs may send QUIC (UDP/443) to; to the rest it is rejected so clients fall back to TCP. */
  readonly allowQuic: readonly Cidr[];
  /** SO_MARK of Envoy's name-dialled upstream sockets (serve --upstream-mark); 0: no upstream guard. */
  readonly upstreamMark: number;
  /** Special ranges marked upstream connections may reach anyway. */
  readonly allowUpstreamCidrs: readonly Cidr[];
  /** --redirect nft-dnat only. */
  readonly dnat: DnatConfig | undefined;
  /** fwmark set by TPROXY and matched by the ip rule, always as MARK/MARK. */
  readonly mark: number;
  /** Policy-routing table holding the local default route. */
  readonly table: number;
  /** microVM ranges whose traffic is redirected; their families decide IPv4/IPv6. */
  readonly sources: readonly Cidr[];
  /** Destinations never redirected, in the order given. */
  readonly excludes: readonly Cidr[];
  readonly ipv6: boolean;
  /** Also exclude every address the host holds (read with `ip -j addr`). */
  readonly excludeHostAddresses: boolean;
  /** Set net.ipv4.conf.all.rp_filter=0 (seed §6.3); only when asked. */
  readonly relaxRpFilter: boolean;
  /**
   * At most this many open TCP connections to Envoy per source address (conntrack
   * counts them; the SYN of one more is answered with a reset); 0: no cap.
   */
  readonly maxConnectionsPerSource: number;
}

/** Names of what the agent owns; install and uninstall touch nothing else. */
export const IPTABLES_CHAIN = 'EGRESS_XDS';
export const NFT_TABLE = 'egress_xds';
export const NFT_CHAIN = 'prerouting';
/** filter table: host protection and QUIC (from INPUT and FORWARD), the upstream guard (from OUTPUT). */
export const IPTABLES_GUARD_CHAIN = 'EGRESS_XDS_GUARD';
export const IPTABLES_UPSTREAM_CHAIN = 'EGRESS_XDS_UPSTREAM';
/** filter table, from INPUT: the per-source connection cap on TPROXYed SYNs. */
export const IPTABLES_CAP_CHAIN = 'EGRESS_XDS_CAP';
/**
 * nft: the cap's own table (--redirect tproxy), apart from the TPROXY one: that one
 * is rewritten whenever the host's addresses change (a new microVM's tap), and a
 * rewrite would empty the cap's sets, so that no open connection counted any more.
 */
export const NFT_CAP_TABLE = 'egress_xds_cap';
/** nft: the cap's chain (in either table) and its per-family sets of source addresses. */
export const NFT_CAP_CHAIN = 'conncap';
export const nftCapSet = (family: IpFamily): string => `egress_conn${family}`;
/** --redirect nft-dnat: its own table, apart from the TPROXY one, so either is removed alone. */
export const NFT_DNAT_TABLE = 'egress_xds_dnat';
export const NFT_DNAT_CHAIN = 'output';

export const DEFAULTS = {
  backend: 'iptables' as Backend,
  port: 15001,
  mark: 0x1,
  table: 100,
  source: '172.31.0.0/16',
  /** serve --upstream-mark's default (src/compile/specialAddresses.ts DEFAULT_UPSTREAM_MARK). */
  upstreamMark: 0x20000,
  dnatPort: 10001,
  dnatPorts: [443],
  /** Far above what one workload needs, far below what starves a host's Envoy (its descriptors, memory). */
  maxConnectionsPerSource: 512,
};

/** Flag values as the command line gives them: strings, repeatable ones as lists. */
export interface AgentFlags {
  backend?: string | undefined;
  port?: string | undefined;
  udpPort?: string | undefined;
  mark?: string | undefined;
  table?: string | undefined;
  source?: readonly string[] | undefined;
  exclude?: readonly string[] | undefined;
  ipv6?: boolean | undefined;
  noExcludeHostAddresses?: boolean | undefined;
  relaxRpFilter?: boolean | undefined;
  allowHostPort?: readonly string[] | undefined;
  allowQuic?: readonly string[] | undefined;
  upstreamMark?: string | undefined;
  allowUpstreamCidr?: readonly string[] | undefined;
  redirect?: string | undefined;
  dnatAddress?: string | undefined;
  dnatPort?: readonly string[] | undefined;
  maxConnectionsPerSource?: string | undefined;
}

export function parsePort(flag: string, text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new FlagError(flag, `"${text}" is not a port; give a number from 1 to 65535`);
  }
  return Number(text);
}

export function parseMark(text: string): number {
  const value = /^0x[0-9a-f]{1,8}$/i.test(text) ? parseInt(text.slice(2), 16) : /^\d{1,10}$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(value) || value < 1 || value > 0xffffffff) {
    throw new FlagError('--mark', `"${text}" is not a firewall mark; give a non-zero 32-bit value such as 0x1 or 0x100`);
  }
  return value;
}

export function parseTable(text: string): number {
  if (!/^\d{1,10}$/.test(text) || Number(text) < 1 || Number(text) > 0xffffffff) {
    throw new FlagError('--table', `"${text}" is not a routing table id; give a number such as 100`);
  }
  const value = Number(text);
  if (value >= 253 && value <= 255) {
    throw new FlagError('--table', `table ${value} is the kernel's ${['default', 'main', 'local'][value - 253]} table; choose another id such as 100`);
  }
  return value;
}

export function parseCidrFlag(flag: string, text: string): Cidr {
  const result = parseCidr(text);
  if (!result.ok) throw new FlagError(flag, `"${text}" is not a CIDR: ${result.reason}`);
  // Host bits set (172.31.0.5/16) is almost always a typo: say what was meant.
  if (result.hostBitsSet) {
    throw new FlagError(flag, `"${text}" has host bits set; did you mean ${formatCidr(result.cidr)}?`);
  }
  return result.cidr;
}

/** Like parseMark, but 0 is allowed (it turns the guard off), as for serve --upstream-mark. */
export function parseUpstreamMark(text: string): number {
  if (text === '0') return 0;
  try {
    return parseMark(text);
  } catch {
    throw new FlagError('--upstream-mark', `"${text}" is not a firewall mark; give serve's --upstream-mark (default 0x20000), or 0 for no upstream guard`);
  }
}

/** A connection count: 0 (no cap) up to 2^32-1, the kernel's limit for both connlimit and ct count. */
export function parseMaxConnections(text: string): number {
  if (!/^\d{1,10}$/.test(text) || Number(text) > 0xffffffff) {
    throw new FlagError('--max-connections-per-source', `"${text}" is not a number of connections; give a whole number such as 512, or 0 for no cap`);
  }
  return Number(text);
}

const maxConnectionsOf = (flags: AgentFlags): number =>
  flags.maxConnectionsPerSource === undefined ? DEFAULTS.maxConnectionsPerSource : parseMaxConnections(flags.maxConnectionsPerSource);

export function buildConfig(flags: AgentFlags): AgentConfig {
  const backendText = flags.backend ?? DEFAULTS.backend;
  if (backendText !== 'iptables' && backendText !== 'nftables') {
    throw new FlagError('--backend', `"${backendText}" is not a backend; choose iptables or nftables`);
  }
  const redirect = flags.redirect ?? 'tproxy';
  if (redirect !== 'tproxy' && redirect !== 'nft-dnat') {
    throw new FlagError('--redirect', `"${redirect}" is not a redirect; choose tproxy or nft-dnat`);
  }
  const upstreamMark = flags.upstreamMark === undefined ? DEFAULTS.upstreamMark : parseUpstreamMark(flags.upstreamMark);
  if (redirect === 'nft-dnat') return buildDnatConfig(flags, upstreamMark);
  for (const [flag, given] of [['--dnat-address', flags.dnatAddress], ['--dnat-port', flags.dnatPort]] as const) {
    if (given !== undefined) throw new FlagError(flag, 'applies to --redirect nft-dnat only');
  }
  const port = flags.port === undefined ? DEFAULTS.port : parsePort('--port', flags.port);
  const udpPort = flags.udpPort === undefined ? undefined : parsePort('--udp-port', flags.udpPort);
  const table = flags.table === undefined ? DEFAULTS.table : parseTable(flags.table);
  const ipv6 = flags.ipv6 ?? false;

  const sourceTexts = flags.source && flags.source.length > 0 ? flags.source : [DEFAULTS.source];
  const sources = dedupe(sourceTexts.map((text) => parseCidrFlag('--source', text)));
  const families = new Set(sources.map((s) => s.family));
  if (!ipv6 && families.has(6)) {
    const v6 = sources.find((s) => s.family === 6)!;
    throw new FlagError('--source', `${formatCidr(v6)} is IPv6; add --ipv6 to redirect IPv6 traffic too`);
  }
  if (ipv6 && !families.has(6)) {
    throw new FlagError('--source', 'with --ipv6, give at least one IPv6 --source (e.g. --source fd00:31::/64) for the microVMs\' IPv6 range');
  }

  const excludes = dedupe((flags.exclude ?? []).map((text) => parseCidrFlag('--exclude', text)));
  for (const exclude of excludes) {
    if (!families.has(exclude.family)) {
      throw new FlagError('--exclude', `${formatCidr(exclude)} is IPv${exclude.family}, but no IPv${exclude.family} --source is redirected`);
    }
  }

  const mark = flags.mark === undefined ? DEFAULTS.mark : parseMark(flags.mark);
  if ((upstreamMark & mark) !== 0) {
    throw new FlagError(
      '--upstream-mark',
      `${formatMark(upstreamMark)} shares bits with --mark ${formatMark(mark)}: Envoy's marked upstream packets would be routed to the local table; choose bits apart (defaults 0x20000 and 0x1)`,
    );
  }
  const allowHostPorts = [...new Set((flags.allowHostPort ?? []).map((text) => parsePort('--allow-host-port', text)))].sort((a, b) => a - b);
  const familyChecked = (flag: string, texts: readonly string[] | undefined): Cidr[] => {
    const cidrs = dedupe((texts ?? []).map((text) => parseCidrFlag(flag, text)));
    for (const cidr of cidrs) {
      if (!families.has(cidr.family)) throw new FlagError(flag, `${formatCidr(cidr)} is IPv${cidr.family}, but no IPv${cidr.family} --source is redirected`);
    }
    return cidrs;
  };

  return {
    backend: backendText,
    redirect: 'tproxy',
    port,
    udpPort,
    allowHostPorts,
    allowQuic: familyChecked('--allow-quic', flags.allowQuic),
    upstreamMark,
    allowUpstreamCidrs: familyChecked('--allow-upstream-cidr', flags.allowUpstreamCidr),
    dnat: undefined,
    mark,
    table,
    sources,
    excludes,
    ipv6,
    excludeHostAddresses: !(flags.noExcludeHostAddresses ?? false),
    relaxRpFilter: flags.relaxRpFilter ?? false,
    maxConnectionsPerSource: maxConnectionsOf(flags),
  };
}

/** Flags that mean something to TPROXY only; refused with --redirect nft-dnat rather than ignored. */
const TPROXY_ONLY: readonly [keyof AgentFlags, string][] = [
  ['backend', '--backend'],
  ['udpPort', '--udp-port'],
  ['mark', '--mark'],
  ['table', '--table'],
  ['source', '--source'],
  ['exclude', '--exclude'],
  ['ipv6', '--ipv6'],
  ['noExcludeHostAddresses', '--no-exclude-host-addresses'],
  ['relaxRpFilter', '--relax-rp-filter'],
  ['allowHostPort', '--allow-host-port'],
  ['allowQuic', '--allow-quic'],
  ['allowUpstreamCidr', '--allow-upstream-cidr'],
];

function buildDnatConfig(flags: AgentFlags, upstreamMark: number): AgentConfig {
  for (const [key, flag] of TPROXY_ONLY) {
    if (flags[key] !== undefined && !(key === 'backend' && flags.backend === 'nftables')) {
      throw new FlagError(flag, 'does not apply to --redirect nft-dnat (which is nftables only)');
    }
  }
  if (flags.dnatAddress === undefined) {
    throw new FlagError('--dnat-address', "missing; with --redirect nft-dnat give Envoy's address (its forward-proxy TLS listener), e.g. --dnat-address 172.20.0.2");
  }
  const address = parseIp(flags.dnatAddress);
  if (!address || address.family !== 4) {
    throw new FlagError('--dnat-address', `"${flags.dnatAddress}" is not an IPv4 address (nft-dnat rewrites IPv4, as seed 000's "ip nat" table)`);
  }
  const port = flags.port === undefined ? DEFAULTS.dnatPort : parsePort('--port', flags.port);
  const ports =
    flags.dnatPort === undefined || flags.dnatPort.length === 0
      ? DEFAULTS.dnatPorts
      : [...new Set(flags.dnatPort.map((text) => parsePort('--dnat-port', text)))].sort((a, b) => a - b);
  return {
    backend: 'nftables',
    redirect: 'nft-dnat',
    port,
    udpPort: undefined,
    allowHostPorts: [],
    allowQuic: [],
    upstreamMark,
    allowUpstreamCidrs: [],
    dnat: { address, port, ports },
    mark: DEFAULTS.mark,
    table: DEFAULTS.table,
    sources: [],
    excludes: [],
    ipv6: false,
    excludeHostAddresses: false,
    relaxRpFilter: false,
    maxConnectionsPerSource: maxConnectionsOf(flags),
  };
}

export const defaultConfig = (): AgentConfig => buildConfig({});

/** IPv4 first, then IPv6, for the families that have sources. */
export const familiesOf = (config: AgentConfig): IpFamily[] =>
  ([4, 6] as const).filter((family) => config.sources.some((s) => s.family === family));

export const formatMark = (mark: number): string => `0x${mark.toString(16)}`;

function dedupe(cidrs: Cidr[]): Cidr[] {
  const seen = new Set<string>();
  return cidrs.filter((cidr) => {
    const key = formatCidr(cidr);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
