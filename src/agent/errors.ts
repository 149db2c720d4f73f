// Errors the agent reports to a person: each says what went wrong and what to
// do about it, and carries the exit code the CLI should return.
import type { Command, CommandResult } from './runner.js';

export class AgentError extends Error {
  constructor(
    message: string,
    /** What the operator should do next. */
    readonly hint?: string,
    readonly exitCode: number = 1,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** A bad flag value: exit 2 and nothing changed. */
export class FlagError extends AgentError {
  constructor(readonly flag: string, reason: string) {
    super(`${flag}: ${reason}`, undefined, 2);
  }
}

export class PrivilegeError extends AgentError {
  constructor() {
    super(
      'needs CAP_NET_ADMIN to read and change netfilter rules and routes, and this process does not have it',
      'run it as root (sudo egress-xds agent ...), or from a unit with AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW',
    );
  }
}

const packageHints: Record<string, string> = {
  iptables: 'install iptables (Debian/Ubuntu: apt-get install iptables; RHEL/Alma: dnf install iptables-nft)',
  ip6tables: 'install iptables, which ships ip6tables (Debian/Ubuntu: apt-get install iptables; RHEL/Alma: dnf install iptables-nft)',
  nft: 'install nftables (apt-get install nftables / dnf install nftables), or use --backend iptables',
  ip: 'install iproute2 (apt-get install iproute2 / dnf install iproute)',
  sysctl: 'install procps (apt-get install procps / dnf install procps-ng)',
};

export class ToolMissingError extends AgentError {
  constructor(readonly tool: string) {
    super(`"${tool}" was not found on PATH`, packageHints[tool] ?? `install ${tool}`);
  }
}

export class TproxyUnavailableError extends AgentError {
  constructor(backend: 'iptables' | 'nftables', detail: string) {
    super(
      `the kernel or ${backend === 'iptables' ? 'iptables' : 'nft'} refused the TPROXY rule: ${detail}`,
      backend === 'iptables'
        ? 'load the modules (modprobe xt_TPROXY xt_socket nf_tproxy_ipv4 nf_tproxy_ipv6) and check with: iptables -t mangle -j TPROXY -h'
        : 'load the module (modprobe nft_tproxy) and use nftables >= 0.9.3, or use --backend iptables',
    );
  }
}

/** The per-source connection cap needs conntrack counting (nf_conncount) in the kernel. */
export class ConnCapUnavailableError extends AgentError {
  constructor(backend: 'iptables' | 'nftables', detail: string) {
    super(
      `the kernel or ${backend === 'iptables' ? 'iptables' : 'nft'} refused the per-source connection cap (--max-connections-per-source): ${detail}`,
      backend === 'iptables'
        ? 'load the module (modprobe xt_connlimit, which brings nf_conncount) and check with: iptables -m connlimit -h; or turn the cap off with --max-connections-per-source 0'
        : 'it needs "ct count" in a dynamic set: Linux >= 4.19.10 with nft_connlimit (modprobe nft_connlimit) and an nftables that accepts a set with flags dynamic; or turn the cap off with --max-connections-per-source 0',
    );
  }
}

export const formatCommand = (command: Command): string =>
  [command.file, ...command.args].map(shellQuote).join(' ');

export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export class CommandFailedError extends AgentError {
  constructor(readonly command: Command, readonly result: CommandResult) {
    const output = (result.stderr || result.stdout).trim();
    super(`command failed (exit ${result.exitCode}): ${formatCommand(command)}${output ? `\n  ${output}` : ''}`);
  }
}

/**
 * `agent run` was asked to stop (SIGTERM/SIGINT) before this command started.
 * Thrown only while a pass is still observing, so nothing has changed yet.
 */
export class StopRequestedError extends AgentError {
  constructor() {
    super('stop requested');
  }
}
