// serve's flags for how changes reach Envoys: the coalescing window
// (src/snapshot/pushScheduler.ts) and the compile worker threads
// (src/snapshot/compilePool.ts). A bad value is a usage error naming the flag.
import { defaultCompileWorkers } from '../snapshot/compilePool.js';
import { DEFAULT_PUSH_TIMING, type PushTiming } from '../snapshot/pushScheduler.js';
import { UsageError } from './flags.js';

export const PUSH_FLAGS = {
  'push-window-ms': { type: 'string' },
  'push-max-delay-ms': { type: 'string' },
  'compile-workers': { type: 'string' },
  'compile-warmup': { type: 'string' },
} as const;

export const PUSH_USAGE = `  --push-window-ms N   changes closer together than this are pushed together (default ${DEFAULT_PUSH_TIMING.windowMs}; 0: at once)
  --push-max-delay-ms N  a change waits for later ones at most this long (default ${DEFAULT_PUSH_TIMING.maxDelayMs})
  --compile-workers N  threads that compile node groups off the event loop (default: cores - 1, 1 to 4)
  --compile-warmup true|false
                       each compile thread compiles a synthetic host at start, so that the
                       first Envoy of a big host is answered by warm code (default false: it
                       made a 10,000-host fleet's first global change cost ~1.3 s more CPU;
                       ~0.6 s CPU and ~33 MiB per thread, stopped by the first request)`;

export interface PushFlags {
  readonly pushTiming: PushTiming;
  readonly compileWorkers: number;
  readonly compileWarmup: boolean;
}

function whole(flag: string, text: string | undefined, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  const value = /^\d{1,9}$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max)) throw new UsageError(`--${flag} must be a whole number from ${min} to ${max}, got "${text}"`);
  return value;
}

export function parsePushFlags(values: Partial<Record<keyof typeof PUSH_FLAGS, string | undefined>>): PushFlags {
  const windowMs = whole('push-window-ms', values['push-window-ms'], DEFAULT_PUSH_TIMING.windowMs, 0, 60_000);
  const maxDelayMs = whole('push-max-delay-ms', values['push-max-delay-ms'], Math.max(DEFAULT_PUSH_TIMING.maxDelayMs, windowMs), 0, 600_000);
  if (maxDelayMs < windowMs) throw new UsageError(`--push-max-delay-ms (${maxDelayMs}) must not be less than --push-window-ms (${windowMs})`);
  const warmupText = values['compile-warmup'] ?? 'false';
  if (warmupText !== 'true' && warmupText !== 'false') throw new UsageError(`--compile-warmup must be true or false, got "${warmupText}"`);
  return {
    pushTiming: { windowMs, maxDelayMs },
    compileWorkers: whole('compile-workers', values['compile-workers'], defaultCompileWorkers(), 1, 64),
    compileWarmup: warmupText === 'true',
  };
}
