// The netfilter rules with iptables/ip6tables (legacy or nft flavour: only -S,
// -C and plain edits are used, which both print and accept alike). One part per
// agent chain and family (render/iptables.ts lists them): the chain, its rules,
// and one jump from each of its hooks.
import { CommandFailedError, ConnCapUnavailableError, TproxyUnavailableError } from '../errors.js';
import { type IptablesChain, chainCommands, iptablesTool, splitSaveLine } from '../render/iptables.js';
import type { CommandResult, Runner } from '../runner.js';
import type { Step } from '../steps.js';
import type { Part, PartState, PieceStatus } from './part.js';

interface Observed {
  chainExists: boolean;
  /** The chain's rules as `iptables -S` prints them, without "-A EGRESS_XDS". */
  chainRules: string[][];
  /** Per expected rule: does `-C` find it. */
  expectedPresent: boolean[];
  /** Per hook, how many jumps to the chain. */
  jumpCounts: number[];
}

export function iptablesPart(chain: IptablesChain): Part {
  const { family, table, hooks } = chain;
  const name = chain.chain;
  const tool = iptablesTool(family);
  const cmd = chainCommands(chain);
  const specs = chain.specs.map((s) => [...s]);
  const show = (spec: readonly string[]): string => `${tool} -t ${table} -A ${name} ${spec.join(' ')}`;
  const jumpText = (hook: string): string => `${tool} -t ${table} ${chain.jumpAt === 'end' ? '-A' : '-I'} ${hook} -j ${name}`;
  // The TPROXY chain keeps the ids it had before the guards existed.
  const prefix = chain.key === '' ? 'iptables' : `iptables-${chain.key}`;
  const jumpId = (hook: string): string => (chain.key === '' ? `iptables-jump/${family}` : `${prefix}-jump/${family}/${hook}`);

  const explainTproxy = (result: CommandResult) =>
    /TPROXY|No chain\/target\/match|not supported|missing kernel module|Couldn't load|No such file or directory/i.test(result.stderr)
      ? new TproxyUnavailableError('iptables', result.stderr.trim() || `exit ${result.exitCode}`)
      : undefined;
  const explainConnlimit = (result: CommandResult) =>
    /connlimit|No chain\/target\/match|not supported|missing kernel module|Couldn't load|No such file or directory/i.test(result.stderr)
      ? new ConnCapUnavailableError('iptables', result.stderr.trim() || `exit ${result.exitCode}`)
      : undefined;
  const addStep = (spec: string[], position?: number): Step => ({
    description: `add ${show(spec)}`,
    command: position === undefined ? cmd.append(spec) : cmd.insert(position, spec),
    undo: [cmd.delete(spec)],
    ...(spec.includes('TPROXY') ? { explain: explainTproxy } : spec.includes('connlimit') ? { explain: explainConnlimit } : {}),
  });

  const state = (observed: Observed): PartState => {
    const exact = observed.chainExists && observed.chainRules.length === specs.length && observed.expectedPresent.every(Boolean);
    const pieces: PieceStatus[] = [
      { id: `${prefix}-chain/${family}`, description: `${tool} -t ${table} chain ${name}`, present: observed.chainExists },
      ...specs.map((spec, i) => ({ id: `${prefix}-rule/${family}/${i + 1}`, description: show(spec), present: observed.expectedPresent[i] ?? false })),
      {
        id: `${prefix}-chain-exact/${family}`,
        description: `${name} holds exactly the ${specs.length} expected rules`,
        present: exact,
        ...(observed.chainExists && !exact ? { detail: `it holds ${observed.chainRules.length}` } : {}),
      },
      ...hooks.map((hook, h) => ({
        id: jumpId(hook),
        description: jumpText(hook),
        present: observed.jumpCounts[h] === 1,
        ...(observed.jumpCounts[h]! > 1 ? { detail: `present ${observed.jumpCounts[h]} times` } : {}),
      })),
    ];

    const install = (): Step[] => {
      const steps: Step[] = [];
      if (!observed.chainExists) {
        steps.push({ description: `create ${tool} -t ${table} chain ${name}`, command: cmd.create(), undo: [cmd.remove()] });
        specs.forEach((spec) => steps.push(addStep(spec)));
      } else if (!exact) {
        // Make before break: the new rules go in front, then the old ones are
        // deleted from behind them, so the chain never stands empty.
        specs.forEach((spec, i) => steps.push(addStep(spec, i + 1)));
        const firstOld = specs.length + 1;
        for (const old of observed.chainRules) {
          steps.push({
            description: `delete stale ${show(old)}`,
            command: cmd.deleteAt(firstOld),
            undo: [cmd.insert(firstOld, old)],
          });
        }
      }
      hooks.forEach((hook, h) => {
        const count = observed.jumpCounts[h]!;
        if (count === 0) steps.push({ description: `add ${jumpText(hook)}`, command: cmd.addJump(hook), undo: [cmd.deleteJump(hook)] });
        for (let i = 1; i < count; i++) {
          steps.push({ description: `delete a duplicate ${jumpText(hook)}`, command: cmd.deleteJump(hook), undo: [cmd.addJump(hook)] });
        }
      });
      return steps;
    };

    const remove = (): Step[] => {
      const steps: Step[] = [];
      hooks.forEach((hook, h) => {
        for (let i = 0; i < observed.jumpCounts[h]!; i++) {
          steps.push({ description: `delete ${jumpText(hook)}`, command: cmd.deleteJump(hook), undo: [cmd.addJump(hook)] });
        }
      });
      if (observed.chainExists) {
        steps.push({ description: `flush ${tool} -t ${table} chain ${name}`, command: cmd.flush(), undo: [] });
        steps.push({ description: `delete ${tool} -t ${table} chain ${name}`, command: cmd.remove(), undo: [cmd.create()] });
      }
      return steps;
    };

    return { pieces, install, remove };
  };

  return {
    name: `${tool} ${table} ${name}`,
    observe: async ({ runner }) => state(await observe(chain, specs, runner)),
    assumeAbsent: () => state({ chainExists: false, chainRules: [], expectedPresent: specs.map(() => false), jumpCounts: hooks.map(() => 0) }),
    assumePresent: () => state({ chainExists: true, chainRules: specs, expectedPresent: specs.map(() => true), jumpCounts: hooks.map(() => 1) }),
  };
}

async function observe(chain: IptablesChain, specs: string[][], runner: Runner): Promise<Observed> {
  const cmd = chainCommands(chain);
  const list = await runner.run(cmd.list());
  // Exit 1 is "no such chain" in both flavours; anything else is a real failure.
  if (list.exitCode !== 0 && list.exitCode !== 1) throw new CommandFailedError(cmd.list(), list);
  const chainExists = list.exitCode === 0;
  const prefix = `-A ${chain.chain} `;
  const chainRules = chainExists
    ? list.stdout.split('\n').filter((l) => l.startsWith(prefix)).map((l) => splitSaveLine(l.slice(prefix.length)))
    : [];

  const expectedPresent: boolean[] = [];
  for (const spec of specs) {
    if (!chainExists) {
      expectedPresent.push(false);
      continue;
    }
    expectedPresent.push(await checks(runner, cmd.check(spec)));
  }

  const jumpCounts: number[] = [];
  for (const hook of chain.hooks) {
    const listed = await runner.run(cmd.listHook(hook));
    if (listed.exitCode !== 0) throw new CommandFailedError(cmd.listHook(hook), listed);
    let count = listed.stdout.split('\n').filter((l) => l.trim() === `-A ${hook} -j ${chain.chain}`).length;
    // Should a flavour ever print the jump differently, -C still sees one.
    if (count === 0 && chainExists && (await checks(runner, cmd.checkJump(hook)))) count = 1;
    jumpCounts.push(count);
  }
  return { chainExists, chainRules, expectedPresent, jumpCounts };
}

/** `iptables -C`: 0 present, 1 absent, anything else an error. */
async function checks(runner: Runner, check: ReturnType<ReturnType<typeof chainCommands>['check']>): Promise<boolean> {
  const result = await runner.run(check);
  if (result.exitCode === 0) return true;
  if (result.exitCode === 1) return false;
  throw new CommandFailedError(check, result);
}
