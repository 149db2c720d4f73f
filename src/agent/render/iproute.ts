// Plan → the policy routing of seed §6.3: a fwmark rule to a table whose default
// route delivers locally, so TPROXY'd packets reach Envoy's socket. Pure.
import type { IpFamily } from '../../net/ip.js';
import { formatMark } from '../config.js';
import type { PolicyRouting } from '../plan.js';
import { type Command, command } from '../runner.js';

/** IPv4 commands keep the seed's spelling (no -4); IPv6 ones add -6. */
const ip = (family: IpFamily, ...args: string[]): Command => (family === 4 ? command('ip', ...args) : command('ip', '-6', ...args));

// MARK/MARK, like --tproxy-mark: only the agent's bits decide, whatever other
// tools keep in the rest of the mark.
const ruleSelector = (r: PolicyRouting): string[] => ['fwmark', `${formatMark(r.mark)}/${formatMark(r.mark)}`, 'lookup', String(r.table)];
const localDefault = (family: IpFamily): string => (family === 4 ? '0.0.0.0/0' : '::/0');
const routeSelector = (r: PolicyRouting): string[] => ['local', localDefault(r.family), 'dev', 'lo', 'table', String(r.table)];

export const routingCommands = (r: PolicyRouting) => ({
  addRule: () => ip(r.family, 'rule', 'add', ...ruleSelector(r)),
  deleteRule: () => ip(r.family, 'rule', 'del', ...ruleSelector(r)),
  listRules: () => ip(r.family, '-j', 'rule', 'show'),
  addRoute: () => ip(r.family, 'route', 'add', ...routeSelector(r)),
  deleteRoute: () => ip(r.family, 'route', 'del', ...routeSelector(r)),
  listRoutes: () => ip(r.family, '-j', 'route', 'show', 'table', String(r.table)),
});

export const describeRule = (r: PolicyRouting): string => `ip${r.family === 6 ? ' -6' : ''} rule ${ruleSelector(r).join(' ')}`;
export const describeRoute = (r: PolicyRouting): string => `ip${r.family === 6 ? ' -6' : ''} route ${routeSelector(r).join(' ')}`;
