// `egress-xds agent install|uninstall|status|run`: flags → AgentConfig, then the
// host agent (src/agent) does the work. Exit codes: 0 done, 1 failed or (status)
// something missing, 2 bad flags (nothing changed), 3 (status) rules present but
// nothing listening on the TPROXY port.
import { parseArgs } from 'node:util';
import {
  type AgentConfig,
  type AgentContext,
  AgentError,
  DEFAULT_STATE_DIR,
  FlagError,
  RP_FILTER_WARNING,
  type Step,
  buildConfig,
  currentPlan,
  dryRunInstall,
  dryRunUninstall,
  execaRunner,
  formatCommand,
  formatStatus,
  install,
  preflight,
  runRepairLoop,
  status,
  statusExitCode,
  uninstall,
} from '../agent/index.js';
import { createLogger } from '../log.js';

const USAGE = `usage: egress-xds agent install|uninstall|status|run [options]

  install     add the fwmark rule, the local route and the TPROXY rules (idempotent;
              a failure half-way removes what it added)
  uninstall   remove exactly what install added (pass the same flags)
  status      report each expected piece as present or missing, and the listener;
              exit 0 all present, 1 something missing, 3 nothing listening
  run         stay up and re-apply whatever goes missing, every --interval seconds

options (--redirect tproxy, the default: microVM traffic to Envoy's transparent listener):
  --backend iptables|nftables   netfilter backend (default iptables)
  --port PORT                   Envoy's transparent TCP listener (default 15001)
  --source CIDR                 microVM range to redirect; repeatable (default 172.31.0.0/16)
  --mark MARK                   firewall mark set by TPROXY, matched as MARK/MARK (default 0x1)
  --table ID                    policy-routing table for the local route (default 100)
  --udp-port PORT               send the microVMs' DNS (UDP to port 53, nothing else) to Envoy's
                                DNS listener on PORT (serve --dns-port, default 15053)
  --allow-host-port PORT        a port microVMs may reach on the host's own addresses (TCP and
                                UDP); repeatable. Everything else on the host is rejected
  --allow-quic CIDR             let microVMs send QUIC (UDP/443) to CIDR; repeatable. Elsewhere
                                it is rejected, so clients fall back to TCP
  --upstream-mark MARK          serve's --upstream-mark (default 0x20000): Envoy's name-dialled
                                connections are refused to loopback, link-local, RFC 1918, CGNAT,
                                ULA, IPv4-mapped and the host's own addresses; 0 turns it off
  --allow-upstream-cidr CIDR    a special range Envoy may dial by name anyway; repeatable
  --ipv6                        also redirect IPv6 (ip6tables, ip -6); needs an IPv6 --source
  --exclude CIDR                never redirect traffic to CIDR; repeatable
  --no-exclude-host-addresses   send traffic to the host's own addresses to Envoy too (no host
                                guard: the policies decide)
  --relax-rp-filter             set net.ipv4.conf.all.rp_filter=0 (weakens reverse-path checks)
  --max-connections-per-source N
                                at most N open TCP connections to Envoy per microVM address,
                                counted by conntrack; one more is refused with a TCP reset at its
                                SYN, before Envoy accepts it (default 512; 0: no cap). The host's
                                allowed ports and UDP are not counted

options (--redirect nft-dnat: seed 000, a namespace's own TCP to Envoy's forward proxy):
  --redirect tproxy|nft-dnat    how traffic reaches Envoy (default tproxy)
  --dnat-address ADDR           Envoy's IPv4 address (its forward-proxy TLS listener); required
  --port PORT                   that listener's port (default 10001)
  --dnat-port PORT              destination port to redirect; repeatable (default 443)
  --upstream-mark MARK          Envoy's own marked connections are never redirected (default 0x20000)
  --netns NAME                  work in network namespace NAME (ip netns exec NAME), e.g. a
                                container's; default: this one
  --max-connections-per-source N
                                at most N open connections to Envoy per source address of the
                                namespace, counted after the DNAT (default 512; 0: no cap)

common:
  --dry-run                     install/uninstall: print the commands, change nothing
  --json                        status: print JSON
  --interval SECONDS            run: seconds between repair passes (default 5)
  --state-dir DIR               where install remembers old sysctl values (default ${DEFAULT_STATE_DIR})
  -h, --help                    this text`;

const ACTIONS = ['install', 'uninstall', 'status', 'run'] as const;
type Action = (typeof ACTIONS)[number];

const OPTIONS = {
  backend: { type: 'string' },
  port: { type: 'string' },
  source: { type: 'string', multiple: true },
  mark: { type: 'string' },
  table: { type: 'string' },
  'udp-port': { type: 'string' },
  ipv6: { type: 'boolean' },
  exclude: { type: 'string', multiple: true },
  'no-exclude-host-addresses': { type: 'boolean' },
  'relax-rp-filter': { type: 'boolean' },
  'allow-host-port': { type: 'string', multiple: true },
  'allow-quic': { type: 'string', multiple: true },
  'upstream-mark': { type: 'string' },
  'allow-upstream-cidr': { type: 'string', multiple: true },
  redirect: { type: 'string' },
  'dnat-address': { type: 'string' },
  'dnat-port': { type: 'string', multiple: true },
  netns: { type: 'string' },
  'max-connections-per-source': { type: 'string' },
  'dry-run': { type: 'boolean' },
  json: { type: 'boolean' },
  interval: { type: 'string' },
  'state-dir': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Flags that mean something to one sub-command only. */
const ONLY_FOR: Record<string, readonly Action[]> = {
  'dry-run': ['install', 'uninstall'],
  json: ['status'],
  interval: ['run'],
};

export interface AgentInvocation {
  readonly action: Action;
  readonly config: AgentConfig;
  readonly dryRun: boolean;
  readonly json: boolean;
  readonly intervalMs: number;
  readonly stateDir: string;
  /** --netns: every command runs inside it. */
  readonly netns: string | undefined;
}

/** Parses argv; throws FlagError naming the flag. Undefined for --help. */
export function parseAgentArgs(argv: string[]): AgentInvocation | undefined {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const flag = /'(-[^' ]+)/.exec(message)?.[1] ?? 'flags';
    // parseArgs appends advice about "--" that does not apply here.
    throw new FlagError(flag, message.split('. ')[0]!.replace(/\.$/, ''));
  }
  const { values, positionals } = parsed;
  if (values.help) return undefined;
  const [action, ...extra] = positionals;
  if (action === undefined) throw new FlagError('command', `missing; give one of ${ACTIONS.join(', ')}`);
  if (!(ACTIONS as readonly string[]).includes(action)) throw new FlagError('command', `"${action}" is not one of ${ACTIONS.join(', ')}`);
  if (extra.length > 0) throw new FlagError('command', `unexpected argument "${extra[0]}"`);
  for (const [flag, actions] of Object.entries(ONLY_FOR)) {
    if (values[flag as keyof typeof values] !== undefined && !actions.includes(action as Action)) {
      throw new FlagError(`--${flag}`, `applies to ${actions.join(' and ')} only`);
    }
  }

  const config = buildConfig({
    backend: values.backend,
    port: values.port,
    udpPort: values['udp-port'],
    mark: values.mark,
    table: values.table,
    source: values.source,
    exclude: values.exclude,
    ipv6: values.ipv6,
    noExcludeHostAddresses: values['no-exclude-host-addresses'],
    relaxRpFilter: values['relax-rp-filter'],
    allowHostPort: values['allow-host-port'],
    allowQuic: values['allow-quic'],
    upstreamMark: values['upstream-mark'],
    allowUpstreamCidr: values['allow-upstream-cidr'],
    redirect: values.redirect,
    dnatAddress: values['dnat-address'],
    dnatPort: values['dnat-port'],
    maxConnectionsPerSource: values['max-connections-per-source'],
  });
  const netns = values.netns;
  if (netns !== undefined && !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/.test(netns)) {
    throw new FlagError('--netns', `"${netns}" is not a network namespace name (as in ip netns list)`);
  }

  let intervalMs = 5000;
  if (values.interval !== undefined) {
    const seconds = Number(values.interval);
    if (!/^\d+(\.\d+)?$/.test(values.interval) || !(seconds >= 0.1 && seconds <= 86400)) {
      throw new FlagError('--interval', `"${values.interval}" is not a number of seconds from 0.1 to 86400`);
    }
    intervalMs = Math.round(seconds * 1000);
  }
  const stateDir = values['state-dir'] ?? DEFAULT_STATE_DIR;
  if (stateDir === '') throw new FlagError('--state-dir', 'must not be empty');

  return { action: action as Action, config, dryRun: values['dry-run'] ?? false, json: values.json ?? false, intervalMs, stateDir, netns };
}

export async function agentCommand(argv: string[]): Promise<number> {
  let invocation: AgentInvocation | undefined;
  try {
    invocation = parseAgentArgs(argv);
  } catch (error) {
    if (error instanceof FlagError) {
      process.stderr.write(`egress-xds agent: ${error.message}\n(run "egress-xds agent --help" for the options)\n`);
      return 2;
    }
    throw error;
  }
  if (!invocation) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  try {
    const runner = execaRunner(invocation.netns === undefined ? {} : { prefix: ['ip', 'netns', 'exec', invocation.netns] });
    return await runAction(invocation, { runner, stateDir: invocation.stateDir });
  } catch (error) {
    const e = error instanceof AgentError ? error : new AgentError(error instanceof Error ? error.message : String(error));
    process.stderr.write(`egress-xds agent ${invocation.action}: ${e.message}\n${e.hint ? `  what to do: ${e.hint}\n` : ''}`);
    return e.exitCode;
  }
}

async function runAction(inv: AgentInvocation, context: AgentContext): Promise<number> {
  if (inv.action === 'run') return runForever(inv, context);
  const { config } = inv;
  if (config.relaxRpFilter && inv.action === 'install') process.stderr.write(`${RP_FILTER_WARNING}\n`);

  if (inv.dryRun) {
    // Reading the host's addresses (ip -j addr) is the one command a dry run runs; it changes nothing.
    const plan = await currentPlan(config, context);
    const steps = inv.action === 'install' ? dryRunInstall(plan) : dryRunUninstall(plan);
    process.stdout.write(formatDryRun(steps));
    return 0;
  }

  const plan = await currentPlan(config, context);
  await preflight(plan, context, inv.action);

  switch (inv.action) {
    case 'install': {
      const result = await install(plan, context, (event) => {
        if (event.type === 'applied') process.stdout.write(`+ ${formatCommand(event.step.command)}\n`);
        if (event.type === 'undone') process.stderr.write(`rolled back: ${event.step.description}\n`);
        if (event.type === 'undo-failed') process.stderr.write(`could not roll back: ${event.step.description}: ${event.error.message}\n`);
      });
      process.stdout.write(
        result.steps.length === 0
          ? `egress-xds agent: already installed (backend ${config.backend}); nothing changed\n`
          : `egress-xds agent: installed (backend ${config.backend}); ${result.steps.length} change(s)\n`,
      );
      return 0;
    }
    case 'uninstall': {
      const result = await uninstall(plan, context, (event) => {
        if (event.type === 'applied') process.stdout.write(`+ ${formatCommand(event.step.command)}\n`);
      });
      for (const error of result.errors) process.stderr.write(`egress-xds agent uninstall: ${error.message}\n`);
      if (result.errors.length > 0) return 1;
      process.stdout.write(
        result.steps.length === 0 ? 'egress-xds agent: nothing installed; nothing changed\n' : `egress-xds agent: uninstalled; ${result.steps.length} change(s)\n`,
      );
      return 0;
    }
    case 'status': {
      const report = await status(plan, context);
      process.stdout.write(inv.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report));
      return statusExitCode(report);
    }
  }
}

/**
 * `agent run`. The SIGTERM/SIGINT handlers go in first, before any command runs,
 * and stay until the loop has ended: with none installed, or with a `once`
 * handler already spent, the signal-exit hook of execa (which kills in-flight
 * children on exit) sees itself as the last listener and re-raises the signal,
 * and the agent dies by SIGTERM half-way through a command instead of exiting 0.
 */
async function runForever(inv: AgentInvocation, context: AgentContext): Promise<number> {
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  try {
    const { config } = inv;
    if (config.relaxRpFilter) process.stderr.write(`${RP_FILTER_WARNING}\n`);
    const plan = await currentPlan(config, context);
    await preflight(plan, context, 'run');
    await runRepairLoop(config, context, { intervalMs: inv.intervalMs, signal: controller.signal, log: createLogger() });
    return 0;
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
  }
}

/** One command per line, ready to paste into a root shell; nft scripts as here-documents. */
export function formatDryRun(steps: readonly Step[]): string {
  return steps
    .map((step) =>
      step.command.input === undefined ? `${formatCommand(step.command)}\n` : `${formatCommand(step.command)} <<'EOF'\n${step.command.input}EOF\n`,
    )
    .join('');
}
