// Keeps the store in step with a policy file while the server runs. The
// directory is watched, not the file: editors save by writing a new file and
// renaming it over the old one, and Kubernetes swaps a ConfigMap's "..data"
// symlink, so the file's own inode (and a watch on it) goes away. Any event in
// the directory schedules one debounced re-read; unchanged content is a no-op.
// A slow poll backs fs.watch up on file systems that do not report events.
// An invalid or missing file is refused with a log line: the last good
// policies stay in force.
import { watch, type FSWatcher } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { FieldError } from '../policy/model.js';
import type { Logger } from '../log.js';
import { applyPolicies, loadPolicyFile, PolicyFileError, policyFileSource } from './policyFile.js';
import type { PolicyStore } from './policyStore.js';

export type PolicyFileOutcome =
  | { readonly status: 'applied'; readonly changed: readonly string[]; readonly storeRevision: number }
  | { readonly status: 'unchanged' }
  | { readonly status: 'refused'; readonly errors: readonly FieldError[] };

export interface PolicyFileWatcher {
  /** Absolute path of the file. */
  readonly path: string;
  /** Re-reads the file now (what a change in its directory triggers). */
  reload(): Promise<PolicyFileOutcome>;
  /** Stops watching and releases the file's ownership of its policies. */
  close(): Promise<void>;
}

export interface PolicyFileOptions {
  readonly store: PolicyStore;
  readonly path: string;
  readonly logger: Logger;
  /** Quiet time after the last event before re-reading (default 200 ms). */
  readonly debounceMs?: number;
  /** Re-read at this interval even without events (default 10 s; 0 turns it off). */
  readonly pollMs?: number;
  /** Called after every re-read the watcher starts on its own (tests wait on it). */
  readonly onOutcome?: (outcome: PolicyFileOutcome) => void;
}

/**
 * Loads, validates and applies the file, then watches it. An invalid file at
 * start is an error (PolicyFileError): a server must not start on half a policy.
 */
export async function watchPolicyFile(options: PolicyFileOptions): Promise<PolicyFileWatcher> {
  const path = resolve(options.path);
  const { store } = options;
  const logger = options.logger.child({ component: 'policy-file', path });
  const debounceMs = options.debounceMs ?? 200;
  const pollMs = options.pollMs ?? 10_000;

  const first = await loadPolicyFile(path);
  if (!first.ok) throw new PolicyFileError(path, first.errors);
  const release = store.claimSource(policyFileSource(path));
  let lastText: string | undefined;

  async function applyText(parsed: Awaited<ReturnType<typeof loadPolicyFile>>): Promise<PolicyFileOutcome> {
    if (!parsed.ok) {
      for (const error of parsed.errors) logger.error('policy file refused; the last good policies stay', { field: error.field, reason: error.message });
      return { status: 'refused', errors: parsed.errors };
    }
    const result = await applyPolicies(store, path, parsed.policies);
    lastText = parsed.text;
    for (const name of result.takenOver) logger.warn('policy file now manages a policy created through the API', { policy: name });
    if (result.changed.length === 0) return { status: 'unchanged' };
    logger.info('policy file applied', { changed: result.changed, revision: result.storeRevision });
    return { status: 'applied', changed: result.changed, storeRevision: result.storeRevision };
  }

  try {
    await applyText(first);
  } catch (error) {
    release();
    throw error;
  }

  let running: Promise<PolicyFileOutcome> | undefined;
  let again = false;
  let closed = false;

  let lastRefused: string | undefined;
  async function reloadOnce(): Promise<PolicyFileOutcome> {
    const parsed = await loadPolicyFile(path);
    if (parsed.ok) {
      // A good file in between, even the one already applied: the next bad one is news.
      lastRefused = undefined;
      if (parsed.text === lastText) return { status: 'unchanged' };
    } else {
      // Log a refusal once per distinct content, not on every poll.
      const key = parsed.text ?? JSON.stringify(parsed.errors);
      if (key === lastRefused) return { status: 'refused', errors: parsed.errors };
      lastRefused = key;
    }
    return applyText(parsed);
  }

  // One re-read at a time; events during one fold into a single re-read after it.
  function reload(): Promise<PolicyFileOutcome> {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      let outcome: PolicyFileOutcome;
      do {
        again = false;
        try {
          outcome = await reloadOnce();
        } catch (error) {
          logger.error('policy file could not be applied; the last good policies stay', { error });
          outcome = { status: 'refused', errors: [{ field: '', message: (error as Error).message }] };
        }
      } while (again && !closed);
      running = undefined;
      return outcome;
    })();
    return running;
  }

  let timer: NodeJS.Timeout | undefined;
  const schedule = () => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      void reload().then((outcome) => options.onOutcome?.(outcome));
    }, debounceMs);
  };

  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(path), { persistent: false }, schedule);
    watcher.on('error', (error) => logger.warn('policy file: directory watch failed; polling only', { error }));
  } catch (error) {
    logger.warn('policy file: cannot watch its directory; polling only', { error });
  }
  const poll = pollMs > 0 ? setInterval(schedule, pollMs) : undefined;
  poll?.unref();
  logger.info('policy file loaded and watched', { policies: first.policies.length });

  return {
    path,
    reload,
    async close() {
      closed = true;
      clearTimeout(timer);
      clearInterval(poll);
      watcher?.close();
      await running;
      release();
    },
  };
}
