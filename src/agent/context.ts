// What every agent operation needs from the outside world.
import type { Runner } from './runner.js';

export interface AgentContext {
  readonly runner: Runner;
  /** Where install remembers what it changed that it cannot read back (a sysctl's old value). */
  readonly stateDir: string;
}

/** Cleared at boot together with the sysctls it describes. */
export const DEFAULT_STATE_DIR = '/run/egress-xds';
