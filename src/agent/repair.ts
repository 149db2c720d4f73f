// `agent run`: every few seconds, put back whatever went missing (a flushed
// table, a reboot, a stale host address), and say what was repaired.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.js';
import { reconcile } from './apply.js';
import type { AgentConfig } from './config.js';
import type { AgentContext } from './context.js';
import { StopRequestedError, formatCommand } from './errors.js';
import { readHostAddresses } from './hostAddresses.js';
import { isListening } from './listeners.js';
import { buildPlan, type Plan } from './plan.js';
import { stopBetweenCommands } from './runner.js';
import { asAgentError } from './steps.js';

/** The plan for this moment: host addresses are read again, they may have changed. */
export async function currentPlan(config: AgentConfig, context: AgentContext): Promise<Plan> {
  return buildPlan(config, config.excludeHostAddresses ? await readHostAddresses(context.runner) : []);
}

export interface RepairPassResult {
  /** Ids of the pieces that were missing and are back. */
  readonly repaired: readonly string[];
  readonly error?: Error;
  /** The pass was abandoned, before it changed anything, because stop was signalled. */
  readonly stopped?: boolean;
}

/**
 * One pass: observe, re-apply what is missing (rolled back if it fails), log it.
 * stop: see reconcile — honoured between commands until the pass starts changing the host.
 */
export async function repairOnce(config: AgentConfig, context: AgentContext, log: Logger, stop?: AbortSignal): Promise<RepairPassResult> {
  try {
    const plan = await currentPlan(config, stop ? { ...context, runner: stopBetweenCommands(context.runner, stop) } : context);
    const result = await reconcile(plan, context, (event) => {
      if (event.type === 'applied') log.info('applied', { step: event.step.description, command: formatCommand(event.step.command) });
      if (event.type === 'undone') log.warn('rolled back', { step: event.step.description });
      if (event.type === 'undo-failed') log.error('rollback failed', { step: event.step.description, error: event.error.message });
    }, stop);
    const repaired = result.missing.map((p) => p.id);
    if (repaired.length > 0) {
      log.info('repaired', { pieces: result.missing.map((p) => ({ id: p.id, description: p.description })) });
    }
    return { repaired };
  } catch (error) {
    if (error instanceof StopRequestedError) return { repaired: [], stopped: true };
    const e = asAgentError(error);
    log.error('repair failed', { error: e.message, ...(e.hint ? { hint: e.hint } : {}) });
    return { repaired: [], error: e };
  }
}

export interface RunOptions {
  readonly intervalMs: number;
  readonly signal: AbortSignal;
  readonly log: Logger;
}

/**
 * Repairs until the signal aborts; the rules stay in place afterwards (stopping
 * the agent must not open egress). The caller installs its signal handlers
 * before calling, so a stop is never missed; "started" says the loop is ready.
 * A stop during a pass ends it at the next command while it is still only
 * observing, or after its last step once it has begun changing the host.
 */
export async function runRepairLoop(config: AgentConfig, context: AgentContext, options: RunOptions): Promise<void> {
  const { log, signal } = options;
  log.info('started', { backend: config.backend, redirect: config.redirect, port: config.port, intervalSeconds: options.intervalMs / 1000 });
  let listening: boolean | undefined;
  let passes = 0;
  while (!signal.aborted) {
    const pass = await repairOnce(config, context, log, signal);
    if (pass.stopped || signal.aborted) break;
    if (++passes === 1) log.info('first pass done', { repaired: pass.repaired.length, ok: pass.error === undefined });
    const now = config.redirect === 'tproxy' ? await isListening(context.runner, 'tcp', config.port).catch(() => undefined) : undefined;
    if (now !== undefined && now !== listening) {
      if (now) log.info('listener up', { port: config.port });
      else log.warn('nothing listens on the TPROXY port; redirected traffic is dropped until Envoy starts', { port: config.port });
      listening = now;
    }
    try {
      await sleep(options.intervalMs, undefined, { signal });
    } catch {
      break; // aborted
    }
  }
  log.info('stopped');
}
