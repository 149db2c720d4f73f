// How many connections the per-source cap refused, per address family, read from
// the kernel's own counters: the packet counter of each cap rule (iptables keeps
// one on every rule; the nft rule carries a `counter`). A refused connection is one
// SYN (the reset ends it, so the client does not retransmit), so packets are
// connections. The counters start at zero when install writes the rules.
import type { IpFamily } from '../net/ip.js';
import { IPTABLES_CAP_CHAIN, NFT_CAP_CHAIN, NFT_CAP_TABLE, NFT_DNAT_TABLE } from './config.js';
import { CommandFailedError } from './errors.js';
import type { Plan } from './plan.js';
import { iptablesIn } from './render/iptables.js';
import { capRuleIds } from './render/nftables.js';
import { listNftJson, type NftJsonRule } from './parts/nftables.js';
import { type Runner, command } from './runner.js';

export interface CapRefusals {
  readonly family: IpFamily;
  /** Connections refused since install; undefined when the cap's rules are not there to read. */
  readonly refused: number | undefined;
}

export async function readCapRefusals(plan: Plan, runner: Runner): Promise<CapRefusals[]> {
  const families = [...new Set(plan.cap.map((r) => r.family))];
  if (families.length === 0) return [];
  return plan.config.backend === 'nftables' ? readNft(plan, families, runner) : readIptables(families, runner);
}

/**
 * `-L -v -x -n`: the one listing whose counters both flavours print alike
 * (pkts first, exact with -x). Every REJECT in the agent's cap chain is a cap rule.
 */
async function readIptables(families: readonly IpFamily[], runner: Runner): Promise<CapRefusals[]> {
  const result: CapRefusals[] = [];
  for (const family of families) {
    const list = iptablesIn(family, 'filter', '-L', IPTABLES_CAP_CHAIN, '-v', '-x', '-n');
    const listed = await runner.run(list);
    if (listed.exitCode === 1) {
      result.push({ family, refused: undefined });
      continue;
    }
    if (listed.exitCode !== 0) throw new CommandFailedError(list, listed);
    let refused = 0;
    for (const line of listed.stdout.split('\n')) {
      const words = line.trim().split(/\s+/);
      if (words[2] === 'REJECT' && /^\d+$/.test(words[0] ?? '')) refused += Number(words[0]);
    }
    result.push({ family, refused });
  }
  return result;
}

async function readNft(plan: Plan, families: readonly IpFamily[], runner: Runner): Promise<CapRefusals[]> {
  const [tableFamily, table] = plan.config.redirect === 'nft-dnat' ? ['ip', NFT_DNAT_TABLE] : ['inet', NFT_CAP_TABLE];
  const items = await listNftJson(runner, command('nft', '-j', 'list', 'chain', tableFamily, table, NFT_CAP_CHAIN));
  if (items === undefined) return families.map((family) => ({ family, refused: undefined }));
  const packets = new Map<string, number>();
  for (const item of items) {
    const rule = item['rule'] as NftJsonRule | undefined;
    if (rule?.comment === undefined) continue;
    for (const expr of rule.expr ?? []) {
      const counter = expr['counter'] as { packets?: unknown } | undefined;
      if (typeof counter?.packets === 'number') packets.set(rule.comment, (packets.get(rule.comment) ?? 0) + counter.packets);
    }
  }
  const ids = capRuleIds(plan);
  return families.map((family) => {
    const own = ids.filter((r) => r.family === family && packets.has(r.id));
    return { family, refused: own.length === 0 ? undefined : own.reduce((sum, r) => sum + packets.get(r.id)!, 0) };
  });
}
