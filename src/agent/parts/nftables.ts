// The netfilter rules with nftables: the agent's own `table inet egress_xds`,
// written whole and atomically with `nft -f`, removed with one delete.
import { NFT_CHAIN, NFT_TABLE } from '../config.js';
import { CommandFailedError, TproxyUnavailableError } from '../errors.js';
import type { Plan } from '../plan.js';
import { NFT_HOOK, renderNftRemoveScript, renderNftRestoreScript, renderNftRules, renderNftScript } from '../render/nftables.js';
import { type Command, type Runner, command } from '../runner.js';
import type { Step } from '../steps.js';
import type { Part, PartState, PieceStatus } from './part.js';

interface Observed {
  tableExists: boolean;
  chainOk: boolean;
  /** Comments of the chain's rules in order ("" for a rule without one). */
  ruleIds: string[];
  /** Chains in the table other than ours. */
  otherChains: number;
  /** `nft list table` text, to put the old table back on rollback. */
  saved: string | undefined;
}

export const nftApply = (script: string): Command => ({ file: 'nft', args: ['-f', '-'], input: script });
const listJson = (): Command => command('nft', '-j', 'list', 'table', 'inet', NFT_TABLE);
const listText = (): Command => command('nft', 'list', 'table', 'inet', NFT_TABLE);

export function nftablesPart(plan: Plan): Part {
  const rules = renderNftRules(plan);
  const script = renderNftScript(plan);
  const tableText = `nft table inet ${NFT_TABLE}`;

  const state = (observed: Observed): PartState => {
    const exact =
      observed.tableExists &&
      observed.chainOk &&
      observed.otherChains === 0 &&
      observed.ruleIds.length === rules.length &&
      rules.every((r, i) => observed.ruleIds[i] === r.id);
    const pieces: PieceStatus[] = [
      { id: 'nft-table', description: tableText, present: observed.tableExists },
      {
        id: 'nft-chain',
        description: `nft chain inet ${NFT_TABLE} ${NFT_CHAIN} (type ${NFT_HOOK.type} hook ${NFT_HOOK.hook} priority mangle; policy ${NFT_HOOK.policy})`,
        present: observed.chainOk,
      },
      ...rules.map((r) => ({ id: `nft-rule/${r.id}`, description: `nft rule: ${r.text}`, present: observed.ruleIds.includes(r.id) })),
      {
        id: 'nft-chain-exact',
        description: `${NFT_CHAIN} holds exactly the ${rules.length} expected rules, in order`,
        present: exact,
        ...(observed.tableExists && !exact ? { detail: `it holds ${observed.ruleIds.length}${observed.otherChains ? ` and ${observed.otherChains} other chain(s)` : ''}` } : {}),
      },
    ];

    const install = (): Step[] => {
      if (exact) return [];
      const undo = observed.tableExists && observed.saved !== undefined ? renderNftRestoreScript(observed.saved) : renderNftRemoveScript();
      return [
        {
          description: `${observed.tableExists ? 'rewrite' : 'create'} ${tableText} (atomically, nft -f)`,
          command: nftApply(script),
          undo: [nftApply(undo)],
          explain: (result) =>
            /tproxy/i.test(result.stderr) ? new TproxyUnavailableError('nftables', result.stderr.trim()) : undefined,
        },
      ];
    };

    const remove = (): Step[] =>
      observed.tableExists
        ? [{ description: `delete ${tableText}`, command: command('nft', 'delete', 'table', 'inet', NFT_TABLE), undo: [] }]
        : [];

    return { pieces, install, remove };
  };

  return {
    name: tableText,
    observe: async ({ runner }) => state(await observe(runner)),
    assumeAbsent: () => state({ tableExists: false, chainOk: false, ruleIds: [], otherChains: 0, saved: undefined }),
    assumePresent: () => state({ tableExists: true, chainOk: true, ruleIds: rules.map((r) => r.id), otherChains: 0, saved: undefined }),
  };
}

interface NftJsonChain {
  family?: string;
  table?: string;
  name?: string;
  type?: string;
  hook?: string;
  prio?: number;
  policy?: string;
}

interface NftJsonRule {
  family?: string;
  table?: string;
  chain?: string;
  comment?: string;
}

async function observe(runner: Runner): Promise<Observed> {
  const result = await runner.run(listJson());
  if (result.exitCode !== 0) {
    if (/No such file or directory|does not exist/i.test(result.stderr)) {
      return { tableExists: false, chainOk: false, ruleIds: [], otherChains: 0, saved: undefined };
    }
    throw new CommandFailedError(listJson(), result);
  }
  const items = ((JSON.parse(result.stdout) as { nftables?: unknown[] }).nftables ?? []) as Record<string, unknown>[];
  const chains = items.map((i) => i['chain'] as NftJsonChain | undefined).filter((c): c is NftJsonChain => c !== undefined);
  const ours = chains.find((c) => c.name === NFT_CHAIN);
  const chainOk =
    ours !== undefined &&
    ours.type === NFT_HOOK.type &&
    ours.hook === NFT_HOOK.hook &&
    ours.prio === NFT_HOOK.priority &&
    ours.policy === NFT_HOOK.policy;
  const ruleIds = items
    .map((i) => i['rule'] as NftJsonRule | undefined)
    .filter((r): r is NftJsonRule => r !== undefined && r.chain === NFT_CHAIN)
    .map((r) => r.comment ?? '');
  const saved = await runner.run(listText());
  return {
    tableExists: true,
    chainOk,
    ruleIds,
    otherChains: chains.filter((c) => c.name !== NFT_CHAIN).length,
    saved: saved.exitCode === 0 ? saved.stdout : undefined,
  };
}
