// The one config struct every rule is built from, and the validation that turns
// flag strings into it. Errors name the flag; nothing here touches the system.
import { type Cidr, type IpFamily, formatCidr, parseCidr } from '../net/ip.js';
import { FlagError } from './errors.js';

export type Backend = 'iptables' | 'nftables';

export interface AgentConfig {
  readonly backend: Backend;
  /** Envoy's transparent TCP listener (seed §6.4 ENVOY_PORT). */
  readonly port: number;
  /** A UDP listener (DNS) to TPROXY UDP to; undefined: UDP is left alone. */
  readonly udpPort: number | undefined;
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
}

/** Names of what the agent owns; install and uninstall touch nothing else. */
export const IPTABLES_CHAIN = 'EGRESS_XDS';
export const NFT_TABLE = 'egress_xds';
export const NFT_CHAIN = 'prerouting';

export const DEFAULTS = {
  backend: 'iptables' as Backend,
  port: 15001,
  mark: 0x1,
  table: 100,
  source: '172.31.0.0/16',
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

export function buildConfig(flags: AgentFlags): AgentConfig {
  const backendText = flags.backend ?? DEFAULTS.backend;
  if (backendText !== 'iptables' && backendText !== 'nftables') {
    throw new FlagError('--backend', `"${backendText}" is not a backend; choose iptables or nftables`);
  }
  const port = flags.port === undefined ? DEFAULTS.port : parsePort('--port', flags.port);
  const udpPort = flags.udpPort === undefined ? undefined : parsePort('--udp-port', flags.udpPort);
  const mark = flags.mark === undefined ? DEFAULTS.mark : parseMark(flags.mark);
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

  return {
    backend: backendText,
    port,
    udpPort,
    mark,
    table,
    sources,
    excludes,
    ipv6,
    excludeHostAddresses: !(flags.noExcludeHostAddresses ?? false),
    relaxRpFilter: flags.relaxRpFilter ?? false,
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
