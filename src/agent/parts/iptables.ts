// The netfilter rules with iptables/ip6tables (legacy or nft flavour: only -S,
// -C and plain edits are used, which both print and accept alike). The rules live
// in the mangle chain EGRESS_XDS, reached from PREROUTING by one jump.
import type { IpFamily } from '../../net/ip.js';
import { IPTABLES_CHAIN } from '../config.js';
import { CommandFailedError, TproxyUnavailableError } from '../errors.js';
import { type Plan, rulesOf } from '../plan.js';
import { chainCommands, iptablesTool, mangle, ruleSpec, splitSaveLine } from '../render/iptables.js';
import type { CommandResult, Runner } from '../runner.js';
import type { Step } from '../steps.js';
import type { Part, PartState, PieceStatus } from './part.js';

interface Observed {
  chainExists: boolean;
  /** The chain's rules as `iptables -S` prints them, without "-A EGRESS_XDS". */
  chainRules: string[][];
  /** Per expected rule: does `-C` find it. */
  expectedPresent: boolean[];
  jumpCount: number;
}

export function iptablesPart(plan: Plan, family: IpFamily): Part {
  const tool = iptablesTool(family);
  const cmd = chainCommands(family);
  const specs = rulesOf(plan, family).map(ruleSpec);
  const show = (spec: readonly string[]): string => `${tool} -t mangle -A ${IPTABLES_CHAIN} ${spec.join(' ')}`;
  const jumpText = `${tool} -t mangle -A PREROUTING -j ${IPTABLES_CHAIN}`;

  const explainTproxy = (result: CommandResult) =>
    /TPROXY|No chain\/target\/match|not supported|missing kernel module|Couldn't load|No such file or directory/i.test(result.stderr)
      ? new TproxyUnavailableError('iptables', result.stderr.trim() || `exit ${result.exitCode}`)
      : undefined;
  const addStep = (spec: string[], position?: number): Step => ({
    description: `add ${show(spec)}`,
    command: position === undefined ? cmd.append(spec) : cmd.insert(position, spec),
    undo: [cmd.delete(spec)],
    ...(spec.includes('TPROXY') ? { explain: explainTproxy } : {}),
  });

  const state = (observed: Observed): PartState => {
    const exact = observed.chainExists && observed.chainRules.length === specs.length && observed.expectedPresent.every(Boolean);
    const pieces: PieceStatus[] = [
      { id: `iptables-chain/${family}`, description: `${tool} -t mangle chain ${IPTABLES_CHAIN}`, present: observed.chainExists },
      ...specs.map((spec, i) => ({ id: `iptables-rule/${family}/${i + 1}`, description: show(spec), present: observed.expectedPresent[i] ?? false })),
      {
        id: `iptables-chain-exact/${family}`,
        description: `${IPTABLES_CHAIN} holds exactly the ${specs.length} expected rules`,
        present: exact,
        ...(observed.chainExists && !exact ? { detail: `it holds ${observed.chainRules.length}` } : {}),
      },
      {
        id: `iptables-jump/${family}`,
        description: jumpText,
        present: observed.jumpCount === 1,
        ...(observed.jumpCount > 1 ? { detail: `present ${observed.jumpCount} times` } : {}),
      },
    ];

    const install = (): Step[] => {
      const steps: Step[] = [];
      if (!observed.chainExists) {
        steps.push({ description: `create ${tool} -t mangle chain ${IPTABLES_CHAIN}`, command: cmd.create(), undo: [cmd.remove()] });
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
      if (observed.jumpCount === 0) {
        steps.push({ description: `add ${jumpText}`, command: cmd.addJump(), undo: [cmd.deleteJump()] });
      }
      for (let i = 1; i < observed.jumpCount; i++) {
        steps.push({ description: `delete a duplicate ${jumpText}`, command: cmd.deleteJump(), undo: [cmd.addJump()] });
      }
      return steps;
    };

    const remove = (): Step[] => {
      const steps: Step[] = [];
      for (let i = 0; i < observed.jumpCount; i++) {
        steps.push({ description: `delete ${jumpText}`, command: cmd.deleteJump(), undo: [cmd.addJump()] });
      }
      if (observed.chainExists) {
        steps.push({ description: `flush ${tool} -t mangle chain ${IPTABLES_CHAIN}`, command: cmd.flush(), undo: [] });
        steps.push({ description: `delete ${tool} -t mangle chain ${IPTABLES_CHAIN}`, command: cmd.remove(), undo: [cmd.create()] });
      }
      return steps;
    };

    return { pieces, install, remove };
  };

  return {
    name: `${tool} mangle ${IPTABLES_CHAIN}`,
    observe: async ({ runner }) => state(await observe(family, specs, runner)),
    assumeAbsent: () => state({ chainExists: false, chainRules: [], expectedPresent: specs.map(() => false), jumpCount: 0 }),
    assumePresent: () => state({ chainExists: true, chainRules: specs, expectedPresent: specs.map(() => true), jumpCount: 1 }),
  };
}

async function observe(family: IpFamily, specs: string[][], runner: Runner): Promise<Observed> {
  const cmd = chainCommands(family);
  const list = await runner.run(cmd.list());
  // Exit 1 is "no such chain" in both flavours; anything else is a real failure.
  if (list.exitCode !== 0 && list.exitCode !== 1) throw new CommandFailedError(cmd.list(), list);
  const chainExists = list.exitCode === 0;
  const prefix = `-A ${IPTABLES_CHAIN} `;
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

  const prerouting = await runner.run(cmd.listPrerouting());
  if (prerouting.exitCode !== 0) throw new CommandFailedError(cmd.listPrerouting(), prerouting);
  let jumpCount = prerouting.stdout.split('\n').filter((l) => l.trim() === `-A PREROUTING -j ${IPTABLES_CHAIN}`).length;
  // Should a flavour ever print the jump differently, -C still sees one.
  if (jumpCount === 0 && chainExists && (await checks(runner, cmd.checkJump()))) jumpCount = 1;
  return { chainExists, chainRules, expectedPresent, jumpCount };
}

/** `iptables -C`: 0 present, 1 absent, anything else an error. */
async function checks(runner: Runner, check: ReturnType<typeof mangle>): Promise<boolean> {
  const result = await runner.run(check);
  if (result.exitCode === 0) return true;
  if (result.exitCode === 1) return false;
  throw new CommandFailedError(check, result);
}
