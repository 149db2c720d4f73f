// A change to the host is a list of steps, each one command with the commands
// that take it back. Install runs them in order and, when one fails, undoes the
// ones that succeeded, newest first, so nothing is left half-installed.
import { AgentError, CommandFailedError, formatCommand } from './errors.js';
import type { Command, CommandResult, Runner } from './runner.js';

export interface Step {
  /** What the step does, in words, for logs: "add ip rule fwmark 0x1/0x1 lookup 100". */
  readonly description: string;
  readonly command: Command;
  /** Run in order to take the step back. */
  readonly undo: readonly Command[];
  /** Turns a failure into an error that says what to do (e.g. the TPROXY module is missing). */
  readonly explain?: (result: CommandResult) => AgentError | undefined;
  /** Bookkeeping after the command succeeded (e.g. remember the value a sysctl had). */
  readonly done?: () => Promise<void>;
  /** Bookkeeping after the step was undone. */
  readonly undone?: () => Promise<void>;
}

export type StepEvent =
  | { readonly type: 'applied'; readonly step: Step }
  | { readonly type: 'failed'; readonly step: Step; readonly error: AgentError }
  | { readonly type: 'undone'; readonly step: Step }
  | { readonly type: 'undo-failed'; readonly step: Step; readonly error: AgentError };

export type StepListener = (event: StepEvent) => void;

/**
 * Runs a step's command, then its bookkeeping. `tookEffect`: the command
 * succeeded, so the host has changed even when the bookkeeping then failed.
 */
async function attempt(step: Step, runner: Runner): Promise<{ tookEffect: boolean; error?: AgentError }> {
  let result: CommandResult;
  try {
    result = await runner.run(step.command);
  } catch (error) {
    return { tookEffect: false, error: asAgentError(error) };
  }
  if (result.exitCode !== 0) {
    return { tookEffect: false, error: step.explain?.(result) ?? new CommandFailedError(step.command, result) };
  }
  try {
    await step.done?.();
    return { tookEffect: true };
  } catch (error) {
    return { tookEffect: true, error: asAgentError(error) };
  }
}

/** Runs the steps; on the first failure undoes the applied ones and throws that failure. */
export async function applySteps(steps: readonly Step[], runner: Runner, listener?: StepListener): Promise<void> {
  const applied: Step[] = [];
  for (const step of steps) {
    const { tookEffect, error } = await attempt(step, runner);
    // A step whose command ran is taken back with the others, even if its bookkeeping failed.
    if (tookEffect) applied.push(step);
    if (error) {
      listener?.({ type: 'failed', step, error });
      const leftovers = await rollback(applied, runner, listener);
      if (leftovers.length > 0) {
        throw new AgentError(
          `${error.message}\nrollback could not undo:\n${leftovers.map((c) => `  ${formatCommand(c)}`).join('\n')}`,
          `${error.hint ? `${error.hint}; ` : ''}then run "egress-xds agent uninstall" with the same flags to clear what is left`,
          error.exitCode,
        );
      }
      throw error;
    }
    listener?.({ type: 'applied', step });
  }
}

/** Undoes steps newest first; returns the undo commands that failed. */
async function rollback(applied: readonly Step[], runner: Runner, listener?: StepListener): Promise<Command[]> {
  const failed: Command[] = [];
  for (const step of [...applied].reverse()) {
    let stepFailed = false;
    for (const undo of step.undo) {
      try {
        const result = await runner.run(undo);
        if (result.exitCode !== 0) {
          stepFailed = true;
          failed.push(undo);
          listener?.({ type: 'undo-failed', step, error: new CommandFailedError(undo, result) });
        }
      } catch (error) {
        stepFailed = true;
        failed.push(undo);
        listener?.({ type: 'undo-failed', step, error: asAgentError(error) });
      }
    }
    if (!stepFailed) {
      await step.undone?.().catch(() => undefined);
      listener?.({ type: 'undone', step });
    }
  }
  return failed;
}

/** Runs every step even when some fail (teardown); returns the failures. */
export async function runAllSteps(steps: readonly Step[], runner: Runner, listener?: StepListener): Promise<AgentError[]> {
  const errors: AgentError[] = [];
  for (const step of steps) {
    const { error } = await attempt(step, runner);
    if (error) {
      errors.push(error);
      listener?.({ type: 'failed', step, error });
    } else {
      listener?.({ type: 'applied', step });
    }
  }
  return errors;
}

export const asAgentError = (error: unknown): AgentError =>
  error instanceof AgentError ? error : new AgentError(error instanceof Error ? error.message : String(error));
