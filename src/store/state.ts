// The store's state and its checkpoint file. The state is a pure fold of the
// journal's commits; the checkpoint (policies.json) saves replaying from the
// start and is what an operator reads. It is replaced atomically, never edited.
import { readFile, rename } from 'node:fs/promises';
import type { StoredPolicy } from '../policy/model.js';
import type { Logger } from '../log.js';
import type { Commit } from './journal.js';
import { replaceFileDurably } from './durableFile.js';
import { describeFsError, StoreError } from './storeError.js';

export interface StoreState {
  /** Revision of the last commit folded in; 0 for an empty store. */
  revision: number;
  readonly policies: Map<string, StoredPolicy>;
  /**
   * Last revision of each deleted policy, so that a policy created again under
   * the same name continues from there: an If-Match taken before the delete can
   * never match the new policy.
   */
  readonly tombstones: Map<string, number>;
}

export const emptyState = (): StoreState => ({ revision: 0, policies: new Map(), tombstones: new Map() });

/** Folds one commit in. The caller has checked that commit.revision === state.revision + 1. */
export function applyCommit(state: StoreState, commit: Commit): void {
  for (const change of commit.changes) {
    if (change.action === 'put') {
      const spec = change.spec!;
      state.policies.set(change.name, {
        name: change.name,
        revision: change.revision,
        updatedAt: commit.at,
        source: change.source,
        ...spec,
      });
      state.tombstones.delete(change.name);
    } else {
      state.policies.delete(change.name);
      state.tombstones.set(change.name, change.revision);
    }
  }
  state.revision = commit.revision;
}

interface CheckpointFile {
  format: 1;
  revision: number;
  policies: StoredPolicy[];
  deleted: Record<string, number>;
}

/**
 * The checkpoint's text for the state as it is now: taken synchronously, so
 * it is exactly one revision even while later commits are being written. One
 * policy per line: an operator can read and diff it, and it is quick to build.
 */
export function checkpointText(state: StoreState): string {
  const policies = [...state.policies.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map((p) => JSON.stringify(p));
  const deleted = JSON.stringify(Object.fromEntries([...state.tombstones].sort(([a], [b]) => (a < b ? -1 : 1))));
  return `{"format":1,"revision":${state.revision},"policies":[${policies.length > 0 ? `\n${policies.join(',\n')}\n` : ''}],\n"deleted":${deleted}}\n`;
}

export async function writeCheckpoint(path: string, state: StoreState): Promise<void> {
  await replaceFileDurably(path, checkpointText(state));
}

function isCheckpoint(value: unknown): value is CheckpointFile {
  const file = value as CheckpointFile;
  return (
    typeof value === 'object' && value !== null && file.format === 1 &&
    Number.isInteger(file.revision) && file.revision >= 0 &&
    Array.isArray(file.policies) &&
    file.policies.every((p) => typeof p?.name === 'string' && Number.isInteger(p.revision) && typeof p.allow === 'object') &&
    typeof file.deleted === 'object' && file.deleted !== null
  );
}

/**
 * The checkpoint, or an empty state when there is none yet. An unreadable
 * checkpoint is set aside (renamed *.corrupt-TIME) and the state rebuilt from
 * the journal, which the caller can do only if the journal starts at revision 1.
 */
export async function readCheckpoint(path: string, logger: Logger): Promise<{ state: StoreState; rebuilt: boolean }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { state: emptyState(), rebuilt: false };
    throw new StoreError(`cannot read state file ${path}: ${describeFsError(error)}`, path, { cause: error });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!isCheckpoint(parsed)) {
    const aside = `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    await rename(path, aside);
    logger.error('store: state file unreadable; set aside, rebuilding from history', { path, setAside: aside });
    return { state: emptyState(), rebuilt: true };
  }
  const state: StoreState = {
    revision: parsed.revision,
    policies: new Map(parsed.policies.map((p) => [p.name, p])),
    tombstones: new Map(Object.entries(parsed.deleted)),
  };
  return { state, rebuilt: false };
}
