// `agent run`: every few seconds, put back whatever went missing (a flushed
// table, a reboot, a stale host address), and say what was repaired.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.js';
import { reconcile } from './apply.js';
import type { AgentConfig } from './config.js';
import type { AgentContext } from './context.js';
import { formatCommand } from './errors.js';
import { readHostAddresses } from './hostAddresses.js';
import { isListening } from './listeners.js';
import { buildPlan, type Plan } from './plan.js';
import { asAgentError } from './steps.js';

/** The plan for this moment: host addresses are read again, they may have changed. */
export async function currentPlan(config: AgentConfig, context: AgentContext): Promise<Plan> {
  return buildPlan(config, config.excludeHostAddresses ? await readHostAddresses(context.runner) : []);
}

export interface RepairPassResult {
  /** Ids of the pieces that were missing and are back. */
  readonly repaired: readonly string[];
  readonly error?: Error;
}

/** One pass: observe, re-apply what is missing (rolled back if it fails), log it. */
export async function repairOnce(config: AgentConfig, context: AgentContext, log: Logger): Promise<RepairPassResult> {
  try {
    const plan = await currentPlan(config, context);
    const result = await reconcile(plan, context, (event) => {
      if (event.type === 'applied') log.info('applied', { step: event.step.description, command: formatCommand(event.step.command) });
      if (event.type === 'undone') log.warn('rolled back', { step: event.step.description });
      if (event.type === 'undo-failed') log.error('rollback failed', { step: event.step.description, error: event.error.message });
    });
    const repaired = result.missing.map((p) => p.id);
    if (repaired.length > 0) {
      log.info('repaired', { pieces: result.missing.map((p) => ({ id: p.id, description: p.description })) });
    }
    return { repaired };
  } catch (error) {
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

/** Repairs until the signal aborts; the rules stay in place afterwards (stopping the agent must not open egress). */
export async function runRepairLoop(config: AgentConfig, context: AgentContext, options: RunOptions): Promise<void> {
  const { log, signal } = options;
  log.info('started', { backend: config.backend, port: config.port, intervalSeconds: options.intervalMs / 1000 });
  let listening: boolean | undefined;
  while (!signal.aborted) {
    await repairOnce(config, context, log);
    const now = await isListening(context.runner, 'tcp', config.port).catch(() => undefined);
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
