// Checks before touching anything, so the common failures come out as one clear
// sentence (not root, a tool missing, no TPROXY) instead of a failed command.
import { readFile } from 'node:fs/promises';
import type { AgentContext } from './context.js';
import { CommandFailedError, ConnCapUnavailableError, PrivilegeError, TproxyUnavailableError } from './errors.js';
import { explainNft } from './parts/nftables.js';
import { iptablesTool } from './render/iptables.js';
import { renderNftScripts } from './render/nftables.js';
import type { Plan } from './plan.js';
import { command } from './runner.js';

const CAP_NET_ADMIN = 12n;

/** From /proc/self/status; undefined when it cannot be read (not Linux). */
export async function hasNetAdmin(): Promise<boolean | undefined> {
  try {
    const status = await readFile('/proc/self/status', 'utf8');
    const match = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
    if (!match) return undefined;
    return ((BigInt(`0x${match[1]}`) >> CAP_NET_ADMIN) & 1n) === 1n;
  } catch {
    return undefined;
  }
}

export type Action = 'install' | 'uninstall' | 'status' | 'run';

export async function preflight(
  plan: Plan,
  context: AgentContext,
  action: Action,
  privileged: () => Promise<boolean | undefined> = hasNetAdmin,
): Promise<void> {
  if ((await privileged()) === false) throw new PrivilegeError();
  const { runner } = context;

  // Each throws ToolMissingError, with the package to install, when absent.
  await runner.run(command('ip', '-V'));
  if (plan.config.backend === 'nftables') {
    await runner.run(command('nft', '--version'));
  } else {
    for (const family of plan.families) await runner.run(command(iptablesTool(family), '-V'));
  }
  if (plan.sysctls.length > 0) await runner.run(command('sysctl', '-V'));

  if (action !== 'install' && action !== 'run') return;
  if (plan.config.backend === 'iptables') {
    for (const family of plan.families) {
      // The userspace extension; the kernel module is checked when the rule goes in.
      const help = await runner.run(command(iptablesTool(family), '-t', 'mangle', '-j', 'TPROXY', '-h'));
      if (!help.stdout.includes('TPROXY target options')) {
        throw new TproxyUnavailableError('iptables', `${iptablesTool(family)} has no TPROXY extension (libxt_TPROXY)`);
      }
    }
    for (const family of new Set(plan.cap.map((r) => r.family))) {
      // Likewise the connlimit extension; its kernel module (xt_connlimit) is checked when the rule goes in.
      const help = await runner.run(command(iptablesTool(family), '-m', 'connlimit', '-h'));
      if (!help.stdout.includes('connlimit match options')) {
        throw new ConnCapUnavailableError('iptables', `${iptablesTool(family)} has no connlimit extension (libxt_connlimit)`);
      }
    }
  } else {
    // nft -c runs the whole transaction through the kernel and throws it away.
    const check = { file: 'nft', args: ['-c', '-f', '-'], input: renderNftScripts(plan) };
    const result = await runner.run(check);
    if (result.exitCode !== 0) {
      throw explainNft(result.stderr) ?? new CommandFailedError(check, result);
    }
  }
}
