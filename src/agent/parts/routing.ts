// Policy routing (seed §6.3): `ip rule … fwmark MARK/MARK lookup TABLE` and the
// local default route in TABLE, per address family.
import { CommandFailedError } from '../errors.js';
import type { PolicyRouting } from '../plan.js';
import { describeRoute, describeRule, routingCommands } from '../render/iproute.js';
import type { Runner } from '../runner.js';
import type { Step } from '../steps.js';
import type { Part, PartState, PieceStatus } from './part.js';

interface Observed {
  /** How many copies of our fwmark rule exist. */
  ruleCount: number;
  routePresent: boolean;
}

export function routingPart(routing: PolicyRouting): Part {
  const cmd = routingCommands(routing);
  const v = routing.family;

  const state = (observed: Observed): PartState => {
    const pieces: PieceStatus[] = [
      {
        id: `ip-rule/${v}`,
        description: describeRule(routing),
        present: observed.ruleCount === 1,
        ...(observed.ruleCount > 1 ? { detail: `present ${observed.ruleCount} times` } : {}),
      },
      { id: `ip-route/${v}`, description: describeRoute(routing), present: observed.routePresent },
    ];
    return {
      pieces,
      install: () => {
        const steps: Step[] = [];
        if (observed.ruleCount === 0) {
          steps.push({ description: `add ${describeRule(routing)}`, command: cmd.addRule(), undo: [cmd.deleteRule()] });
        }
        for (let i = 1; i < observed.ruleCount; i++) {
          steps.push({ description: `remove a duplicate ${describeRule(routing)}`, command: cmd.deleteRule(), undo: [cmd.addRule()] });
        }
        if (!observed.routePresent) {
          steps.push({ description: `add ${describeRoute(routing)}`, command: cmd.addRoute(), undo: [cmd.deleteRoute()] });
        }
        return steps;
      },
      remove: () => {
        const steps: Step[] = [];
        for (let i = 0; i < observed.ruleCount; i++) {
          steps.push({ description: `delete ${describeRule(routing)}`, command: cmd.deleteRule(), undo: [cmd.addRule()] });
        }
        if (observed.routePresent) {
          steps.push({ description: `delete ${describeRoute(routing)}`, command: cmd.deleteRoute(), undo: [cmd.addRoute()] });
        }
        return steps;
      },
    };
  };

  return {
    name: `policy routing (IPv${v})`,
    observe: async ({ runner }) => state(await observe(routing, runner)),
    assumeAbsent: () => state({ ruleCount: 0, routePresent: false }),
    assumePresent: () => state({ ruleCount: 1, routePresent: true }),
  };
}

interface IpRuleJson {
  src?: string;
  fwmark?: string;
  fwmask?: string;
  table?: string;
  action?: string;
  iif?: string;
  oif?: string;
  not?: unknown;
}

interface IpRouteJson {
  type?: string;
  dst?: string;
  dev?: string;
}

async function observe(routing: PolicyRouting, runner: Runner): Promise<Observed> {
  const cmd = routingCommands(routing);
  const tableNames = await readTableNames(runner);
  const isOurTable = (table: string | undefined): boolean =>
    table !== undefined && (table === String(routing.table) || tableNames.get(table) === routing.table);

  const rulesCommand = cmd.listRules();
  const rulesResult = await runner.run(rulesCommand);
  if (rulesResult.exitCode !== 0) throw new CommandFailedError(rulesCommand, rulesResult);
  const rules = parseJsonList<IpRuleJson>(rulesResult.stdout);
  const ruleCount = rules.filter(
    (r) =>
      (r.src === undefined || r.src === 'all') &&
      r.iif === undefined &&
      r.oif === undefined &&
      r.not === undefined &&
      r.fwmark !== undefined &&
      Number(r.fwmark) === routing.mark &&
      Number(r.fwmask ?? '0xffffffff') === routing.mark &&
      isOurTable(r.table),
  ).length;

  const routesCommand = cmd.listRoutes();
  const routesResult = await runner.run(routesCommand);
  let routes: IpRouteJson[] = [];
  if (routesResult.exitCode === 0) routes = parseJsonList<IpRouteJson>(routesResult.stdout);
  // Some kernels answer "FIB table does not exist" for a table with no routes.
  else if (!/does not exist/i.test(routesResult.stderr)) throw new CommandFailedError(routesCommand, routesResult);
  const defaults = new Set(['default', '0.0.0.0/0', '::/0']);
  const routePresent = routes.some((r) => r.type === 'local' && r.dst !== undefined && defaults.has(r.dst) && r.dev === 'lo');

  return { ruleCount, routePresent };
}

function parseJsonList<T>(text: string): T[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  const parsed: unknown = JSON.parse(trimmed);
  return Array.isArray(parsed) ? (parsed as T[]) : [];
}

/** `ip -j` prints a table's name when rt_tables gives it one. */
async function readTableNames(runner: Runner): Promise<Map<string, number>> {
  const names = new Map<string, number>();
  for (const path of ['/usr/share/iproute2/rt_tables', '/usr/lib/iproute2/rt_tables', '/etc/iproute2/rt_tables']) {
    const text = await runner.readFile(path);
    for (const line of (text ?? '').split('\n')) {
      const match = /^\s*(\d+)\s+(\S+)/.exec(line);
      if (match) names.set(match[2]!, Number(match[1]));
    }
  }
  return names;
}
