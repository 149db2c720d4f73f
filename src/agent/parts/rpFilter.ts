// net.ipv4.conf.all.rp_filter=0, only with --relax-rp-filter (seed §6.3). The
// kernel does not remember what it was, so install writes the old value to the
// state dir (one file per network namespace) and uninstall puts it back.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentContext } from '../context.js';
import { AgentError, CommandFailedError } from '../errors.js';
import { type Runner, command } from '../runner.js';
import type { Step } from '../steps.js';
import type { Part, PartState, PieceStatus } from './part.js';

export const RP_FILTER = 'net.ipv4.conf.all.rp_filter';

export const RP_FILTER_WARNING =
  `warning: setting ${RP_FILTER}=0 (--relax-rp-filter). This can weaken reverse-path ` +
  'validation; use it only if TPROXY does not work without it, and understand the implications.';

interface Observed {
  current: string;
  /** The value before install relaxed it, if install did. */
  saved: string | undefined;
}

const setTo = (value: string) => command('sysctl', '-w', `${RP_FILTER}=${value}`);

/** wanted: install relaxes it; false: only uninstall's restore is offered. */
export function rpFilterPart(wanted: boolean): Part {
  const state = (observed: Observed, context: AgentContext | undefined): PartState => {
    const pieces: PieceStatus[] = wanted
      ? [{ id: `sysctl/${RP_FILTER}`, description: `sysctl ${RP_FILTER} = 0`, present: observed.current === '0', ...(observed.current !== '0' ? { detail: `it is ${observed.current}` } : {}) }]
      : [];
    const install = (): Step[] => {
      if (!wanted || observed.current === '0') return [];
      let wroteState = false;
      return [
        {
          description: `relax ${RP_FILTER} from ${observed.current} to 0`,
          command: setTo('0'),
          undo: [setTo(observed.current)],
          done: async () => {
            // Keep the first value seen: a repair after someone reset it must not overwrite it.
            if (context && observed.saved === undefined) {
              await saveState(context, observed.current);
              wroteState = true;
            }
          },
          undone: async () => {
            if (context && wroteState) await clearState(context);
          },
        },
      ];
    };
    const remove = (): Step[] =>
      observed.saved === undefined
        ? []
        : [
            {
              description: `restore ${RP_FILTER} to ${observed.saved}`,
              command: setTo(observed.saved),
              undo: [setTo(observed.current)],
              done: async () => {
                if (context) await clearState(context);
              },
            },
          ];
    return { pieces, install, remove };
  };

  return {
    name: RP_FILTER,
    observe: async (context) => state(await observe(context, wanted), context),
    assumeAbsent: () => state({ current: '<current value>', saved: undefined }, undefined),
    assumePresent: () => state({ current: '0', saved: wanted ? '<value before install>' : undefined }, undefined),
  };
}

async function observe(context: AgentContext, wanted: boolean): Promise<Observed> {
  const saved = await loadState(context);
  // Uninstall without a saved value has nothing to restore and need not read it.
  if (!wanted && saved === undefined) return { current: '', saved };
  const read = command('sysctl', '-n', RP_FILTER);
  const result = await context.runner.run(read);
  if (result.exitCode !== 0) throw new CommandFailedError(read, result);
  return { current: result.stdout.trim(), saved };
}

/** One file per network namespace, so namespaces (and tests) do not share it. */
async function statePath(context: AgentContext): Promise<string> {
  return join(context.stateDir, `rp_filter-${await netnsId(context.runner)}.json`);
}

async function netnsId(runner: Runner): Promise<string> {
  const result = await runner.run(command('readlink', '/proc/self/ns/net'));
  const match = /\[(\d+)\]/.exec(result.stdout);
  return match ? match[1]! : 'default';
}

async function loadState(context: AgentContext): Promise<string | undefined> {
  try {
    const parsed = JSON.parse(await readFile(await statePath(context), 'utf8')) as { previous?: unknown };
    return typeof parsed.previous === 'string' ? parsed.previous : undefined;
  } catch {
    return undefined;
  }
}

async function saveState(context: AgentContext, previous: string): Promise<void> {
  try {
    await mkdir(context.stateDir, { recursive: true, mode: 0o755 });
    await writeFile(await statePath(context), `${JSON.stringify({ key: RP_FILTER, previous })}\n`);
  } catch (error) {
    throw new AgentError(
      `cannot save ${RP_FILTER}'s value before install (${previous}) in ${context.stateDir}: ${(error as Error).message}`,
      'give --state-dir a directory this process can write (the systemd unit sets RuntimeDirectory=egress-xds for /run/egress-xds)',
    );
  }
}

async function clearState(context: AgentContext): Promise<void> {
  await rm(await statePath(context), { force: true });
}
