// Install (= bring the host to the plan, from whatever is there), uninstall, and
// the commands a dry-run of either would run.
import type { AgentContext } from './context.js';
import { AgentError, StopRequestedError } from './errors.js';
import { installParts, plannedUninstallParts, uninstallParts } from './parts/index.js';
import type { PieceStatus } from './parts/part.js';
import type { Plan } from './plan.js';
import { stopBetweenCommands } from './runner.js';
import { type Step, type StepListener, applySteps, runAllSteps } from './steps.js';

export interface ReconcileResult {
  /** What was missing or wrong before this pass. */
  readonly missing: readonly PieceStatus[];
  /** The steps this pass applied (none when everything was present). */
  readonly steps: readonly Step[];
}

/**
 * Observes every part, then applies only the steps for what is missing: run
 * twice, the second run changes nothing. On a failure, undoes this pass's steps.
 *
 * With a stop signal (`agent run`): while observing, a stop is honoured before
 * the next command (StopRequestedError; nothing has changed yet). Once steps
 * are being applied the pass runs to its end, so a stop never leaves the host
 * half-changed and never needs a rollback; the steps are few and each command
 * is bounded by the runner's timeout.
 */
export async function reconcile(plan: Plan, context: AgentContext, listener?: StepListener, stop?: AbortSignal): Promise<ReconcileResult> {
  const observing: AgentContext = stop ? { ...context, runner: stopBetweenCommands(context.runner, stop) } : context;
  const states = [];
  for (const part of installParts(plan)) states.push(await part.observe(observing));
  if (stop?.aborted) throw new StopRequestedError();
  const missing = states.flatMap((s) => s.pieces.filter((p) => !p.present));
  const steps = states.flatMap((s) => s.install());
  await applySteps(steps, context.runner, listener);
  return { missing, steps };
}

export const install = reconcile;

export interface UninstallResult {
  readonly steps: readonly Step[];
  readonly errors: readonly AgentError[];
}

/** Removes everything the agent owns; keeps going past failures and reports them. */
export async function uninstall(plan: Plan, context: AgentContext, listener?: StepListener): Promise<UninstallResult> {
  const steps: Step[] = [];
  const errors: AgentError[] = [];
  for (const { part, optional } of uninstallParts(plan)) {
    try {
      steps.push(...(await part.observe(context)).remove());
    } catch (error) {
      // A family never set up here (no ip6tables, IPv6 disabled) has nothing to remove.
      if (!optional) throw error;
    }
  }
  errors.push(...(await runAllSteps(steps, context.runner, listener)));
  return { steps, errors };
}

/** The steps install would run on a host where none of it exists yet. */
export const dryRunInstall = (plan: Plan): Step[] => installParts(plan).flatMap((p) => p.assumeAbsent().install());

/** The steps uninstall would run on a host where exactly this plan is installed. */
export const dryRunUninstall = (plan: Plan): Step[] => plannedUninstallParts(plan).flatMap((p) => p.assumePresent().remove());
