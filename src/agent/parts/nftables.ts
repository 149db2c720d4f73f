// The netfilter rules with nftables: one of the agent's own tables, written whole
// and atomically with `nft -f`, removed with one delete.
import { NFT_CHAIN } from '../config.js';
import { type AgentError, CommandFailedError, ConnCapUnavailableError, TproxyUnavailableError } from '../errors.js';
import { type NftTable, renderNftRemoveScript, renderNftRestoreScript, renderNftTableScript } from '../render/nftables.js';
import { type Command, type Runner, command } from '../runner.js';
import type { Step } from '../steps.js';
import type { Part, PartState, PieceStatus } from './part.js';

interface ObservedChain {
  type?: string | undefined;
  hook?: string | undefined;
  prio?: number | undefined;
  policy?: string | undefined;
  /** Comments of the chain's rules in order ("" for a rule without one). */
  ruleIds: string[];
}

interface ObservedSet {
  type?: string | undefined;
}

interface Observed {
  tableExists: boolean;
  chains: Map<string, ObservedChain>;
  sets: Map<string, ObservedSet>;
  /** `nft list table` text, to put the old table back on rollback. */
  saved: string | undefined;
}

/**
 * nft prints the script line it could not process; which feature that line uses
 * says what the kernel lacks (tproxy: nft_tproxy; ct count: nft_connlimit).
 */
export function explainNft(stderr: string): AgentError | undefined {
  if (/tproxy/i.test(stderr)) return new TproxyUnavailableError('nftables', stderr.trim());
  if (/ct count|egress_conn[46]|connlimit/i.test(stderr)) return new ConnCapUnavailableError('nftables', stderr.trim());
  return undefined;
}

export const nftApply = (script: string): Command => ({ file: 'nft', args: ['-f', '-'], input: script });

/**
 * Piece ids: the TPROXY chain keeps the ids it had before the table grew other
 * chains ("nft-chain", "nft-rule/<comment>"), so fleet tooling keeps working.
 */
const chainSuffix = (table: NftTable, chain: string): string => (table.family === 'inet' && chain === NFT_CHAIN ? '' : `/${chain}`);

export function nftablesPart(table: NftTable): Part {
  const script = renderNftTableScript(table);
  const tableText = `nft table ${table.family} ${table.name}`;
  const listJson = (): Command => command('nft', '-j', 'list', 'table', table.family, table.name);
  const listText = (): Command => command('nft', 'list', 'table', table.family, table.name);
  const expectedNames = new Set(table.chains.map((c) => c.name));

  const state = (observed: Observed): PartState => {
    const chainOk = (name: string): boolean => {
      const want = table.chains.find((c) => c.name === name)!;
      const got = observed.chains.get(name);
      return got !== undefined && got.type === want.hook.type && got.hook === want.hook.hook && got.prio === want.hook.priority && got.policy === want.hook.policy;
    };
    const others = [...observed.chains.keys()].filter((name) => !expectedNames.has(name));
    const otherSets = [...observed.sets.keys()].filter((name) => !table.sets.some((s) => s.name === name));
    const pieces: PieceStatus[] = [{ id: table.family === 'inet' ? 'nft-table' : `nft-table/${table.name}`, description: tableText, present: observed.tableExists }];
    let exact = observed.tableExists && others.length === 0 && otherSets.length === 0;
    for (const set of table.sets) {
      const got = observed.sets.get(set.name);
      // The type only: nft -j (1.0.6) does not list a set's dynamic flag, though `nft list` does.
      const setOk = got !== undefined && got.type === set.type;
      exact &&= setOk;
      pieces.push({ id: `nft-set/${set.name}`, description: `nft set ${table.family} ${table.name} ${set.name} (type ${set.type}; flags dynamic)`, present: setOk });
    }
    if (otherSets.length > 0) {
      pieces.push({ id: `nft-no-other-sets${table.family === 'inet' ? '' : `/${table.name}`}`, description: `${tableText} holds no other set`, present: false, detail: `also: ${otherSets.join(', ')}` });
    }
    for (const chain of table.chains) {
      const suffix = chainSuffix(table, chain.name);
      const got = observed.chains.get(chain.name);
      const ids = got?.ruleIds ?? [];
      const chainExact = chainOk(chain.name) && ids.length === chain.rules.length && chain.rules.every((r, i) => ids[i] === r.id);
      exact &&= chainExact;
      pieces.push(
        {
          id: `nft-chain${suffix}`,
          description: `nft chain ${table.family} ${table.name} ${chain.name} (type ${chain.hook.type} hook ${chain.hook.hook} priority ${chain.hook.priorityName}; policy ${chain.hook.policy})`,
          present: chainOk(chain.name),
        },
        ...chain.rules.map((r) => ({ id: `nft-rule${suffix}/${r.id}`, description: `nft rule (${chain.name}): ${r.text}`, present: ids.includes(r.id) })),
        {
          id: `nft-chain-exact${suffix}`,
          description: `${chain.name} holds exactly the ${chain.rules.length} expected rules, in order`,
          present: chainExact,
          ...(got !== undefined && !chainExact ? { detail: `it holds ${ids.length}` } : {}),
        },
      );
    }
    if (others.length > 0) {
      pieces.push({ id: `nft-no-other-chains${table.family === 'inet' ? '' : `/${table.name}`}`, description: `${tableText} holds no other chain`, present: false, detail: `also: ${others.join(', ')}` });
    }

    const install = (): Step[] => {
      if (exact) return [];
      const undo = observed.tableExists && observed.saved !== undefined ? renderNftRestoreScript(observed.saved, table) : renderNftRemoveScript(table);
      return [
        {
          description: `${observed.tableExists ? 'rewrite' : 'create'} ${tableText} (atomically, nft -f)`,
          command: nftApply(script),
          undo: [nftApply(undo)],
          explain: (result) => explainNft(result.stderr),
        },
      ];
    };

    const remove = (): Step[] =>
      observed.tableExists ? [{ description: `delete ${tableText}`, command: command('nft', 'delete', 'table', table.family, table.name), undo: [] }] : [];

    return { pieces, install, remove };
  };

  const present = (): Observed => ({
    tableExists: true,
    chains: new Map(
      table.chains.map((c) => [c.name, { type: c.hook.type, hook: c.hook.hook, prio: c.hook.priority, policy: c.hook.policy, ruleIds: c.rules.map((r) => r.id) }]),
    ),
    sets: new Map(table.sets.map((s) => [s.name, { type: s.type }])),
    saved: undefined,
  });

  return {
    name: tableText,
    observe: async ({ runner }) => state(await observe(runner, listJson(), listText())),
    assumeAbsent: () => state({ tableExists: false, chains: new Map(), sets: new Map(), saved: undefined }),
    assumePresent: () => state(present()),
  };
}

interface NftJsonChain {
  name?: string;
  type?: string;
  hook?: string;
  prio?: number;
  policy?: string;
}

interface NftJsonSet {
  name?: string;
  type?: string;
}

/** A rule as `nft -j` lists it: its chain, its comment (the agent's rule id) and its expressions (counters among them). */
export interface NftJsonRule {
  chain?: string;
  comment?: string;
  expr?: Record<string, unknown>[];
}

/**
 * The items `nft -j list …` prints (tables, chains, sets, rules); undefined when what it
 * lists is not there. Any other failure is an error naming the command.
 */
export async function listNftJson(runner: Runner, list: Command): Promise<Record<string, unknown>[] | undefined> {
  const result = await runner.run(list);
  if (result.exitCode !== 0) {
    if (/No such file or directory|does not exist/i.test(result.stderr)) return undefined;
    throw new CommandFailedError(list, result);
  }
  return ((JSON.parse(result.stdout) as { nftables?: unknown[] }).nftables ?? []) as Record<string, unknown>[];
}

async function observe(runner: Runner, listJson: Command, listText: Command): Promise<Observed> {
  const items = await listNftJson(runner, listJson);
  if (items === undefined) return { tableExists: false, chains: new Map(), sets: new Map(), saved: undefined };
  const chains = new Map<string, ObservedChain>();
  for (const item of items) {
    const chain = item['chain'] as NftJsonChain | undefined;
    if (chain?.name !== undefined) chains.set(chain.name, { type: chain.type, hook: chain.hook, prio: chain.prio, policy: chain.policy, ruleIds: [] });
  }
  for (const item of items) {
    const rule = item['rule'] as NftJsonRule | undefined;
    if (rule?.chain !== undefined) chains.get(rule.chain)?.ruleIds.push(rule.comment ?? '');
  }
  const sets = new Map<string, ObservedSet>();
  for (const item of items) {
    const set = item['set'] as NftJsonSet | undefined;
    if (set?.name !== undefined) sets.set(set.name, { type: set.type });
  }
  const saved = await runner.run(listText);
  return { tableExists: true, chains, sets, saved: saved.exitCode === 0 ? saved.stdout : undefined };
}
