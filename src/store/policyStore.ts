// The durable policy store: one directory, one writer.
//
//   DATA_DIR/lock              who holds the directory (dataDirLock.ts)
//   DATA_DIR/history.jsonl     append-only commits: the write-ahead log and audit trail
//   DATA_DIR/policies.json     checkpoint of the state after the last commit
//
// A write is serialised with every other write, appended to the history and
// fsynced (the commit point: from here a kill -9 cannot lose it), folded into
// memory, announced to listeners (a push to Envoy need not wait for the
// checkpoint), checkpointed (temp + fsync + rename + fsync dir), and only then
// answered. On open the checkpoint is read and the history commits after it
// replayed, so a crash between the history append and the checkpoint loses
// nothing. Callers pass validated, canonical specs.
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { StoredPolicy } from '../policy/model.js';
import { silentLogger, type Logger } from '../log.js';
import { lockDataDir } from './dataDirLock.js';
import { fsyncDirectory, tempPathFor } from './durableFile.js';
import { openJournal, type Commit, type CommitChange, type Journal } from './journal.js';
import { applyCommit, readCheckpoint, writeCheckpoint, type StoreState } from './state.js';
import { describeFsError, StoreError } from './storeError.js';
import { historyPage } from './historyPage.js';
import type { BatchResult, ChangeListener, HistoryEntry, PolicyStore, StoreChange, WriteResult } from './store.js';
import { planApply, planBatch, planDelete, planPut, type Plan, type PolicyView } from './writeRules.js';

export const HISTORY_FILE = 'history.jsonl';
export const STATE_FILE = 'policies.json';
export { API_SOURCE } from './store.js';
export type {
  BatchRequest,
  BatchResult,
  ChangeListener,
  HistoryEntry,
  HistoryPage,
  HistoryQuery,
  PolicyChange,
  StoreChange,
  StoreRefusal,
  StoreRefusalCode,
  WriteOptions,
  WriteOutcome,
  WriteResult,
  PolicyStore,
} from './store.js';

/** The file store: the interface, and where its files are. */
export interface FilePolicyStore extends PolicyStore {
  readonly dataDir: string;
}

/** How long the history is kept and how often the store compacts (serve's --history-* flags). */
export interface StoreTuning {
  /** Keep history at least this long (default 30 days). */
  readonly historyRetentionMs?: number;
  /** Drop the oldest history beyond about this many bytes on disk (default 1 GiB). */
  readonly historyMaxBytes?: number;
  /** Checkpoint and drop expired history at least this often (default 1 hour). */
  readonly compactIntervalMs?: number;
}

export interface OpenOptions extends StoreTuning {
  readonly logger?: Logger;
}

const byName = (a: StoredPolicy, b: StoredPolicy): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

function flatten(commit: Commit): HistoryEntry[] {
  return commit.changes.map((change) => ({
    storeRevision: commit.revision,
    at: commit.at,
    action: change.action,
    name: change.name,
    revision: change.revision,
    client: commit.client,
    source: change.source,
    ...(change.spec ? { spec: change.spec } : {}),
  }));
}

export async function openPolicyStore(dataDirInput: string, options: OpenOptions = {}): Promise<FilePolicyStore> {
  const dataDir = resolve(dataDirInput);
  const logger = (options.logger ?? silentLogger).child({ component: 'store' });
  try {
    const firstCreated = await mkdir(dataDir, { recursive: true, mode: 0o700 });
    // New directories exist durably only once their parents' entries are synced.
    if (firstCreated !== undefined) {
      for (let dir = dataDir; dir !== dirname(firstCreated); dir = dirname(dir)) await fsyncDirectory(dirname(dir));
    }
  } catch (error) {
    throw new StoreError(`cannot create data dir ${dataDir}: ${describeFsError(error)}`, dataDir, { cause: error });
  }
  const unlock = await lockDataDir(dataDir);
  try {
    return await recover(dataDir, logger, unlock);
  } catch (error) {
    await unlock();
    throw error;
  }
}

async function recover(dataDir: string, logger: Logger, unlock: () => Promise<void>): Promise<FilePolicyStore> {
  const statePath = join(dataDir, STATE_FILE);
  const historyPath = join(dataDir, HISTORY_FILE);
  // A temp file is a replacement that never got renamed in: not part of any state.
  await rm(tempPathFor(statePath), { force: true });

  const { state, rebuilt } = await readCheckpoint(statePath, logger);
  const { journal, commits } = await openJournal(historyPath, logger);
  try {
    if (rebuilt && commits[0]?.revision !== 1) {
      throw new StoreError(`state file ${statePath} was unreadable and history ${historyPath} does not start at revision 1; restore ${statePath} from a backup`, statePath);
    }
    let replayed = 0;
    for (const commit of commits) {
      if (commit.revision <= state.revision) continue;
      if (commit.revision !== state.revision + 1) {
        throw new StoreError(`history ${historyPath} jumps from revision ${state.revision} to ${commit.revision}`, historyPath);
      }
      applyCommit(state, commit);
      replayed++;
    }
    const journalEnd = commits.at(-1)?.revision ?? 0;
    if (journalEnd < state.revision) {
      logger.warn('store: history ends before the state file; history lines were lost', { historyPath, historyRevision: journalEnd, stateRevision: state.revision });
    }
    if (replayed > 0 || rebuilt) {
      logger.info('store: replayed history after an unclean stop', { commits: replayed, revision: state.revision });
      await writeCheckpoint(statePath, state);
    }
  } catch (error) {
    await journal.close();
    if (error instanceof StoreError) throw error;
    throw new StoreError(`cannot recover data dir ${dataDir}: ${describeFsError(error)}`, dataDir, { cause: error });
  }
  logger.info('store: opened', { dataDir, revision: state.revision, policies: state.policies.size });
  return createStore({ dataDir, statePath, state, journal, history: commits.flatMap(flatten), logger, unlock });
}

function createStore(parts: {
  dataDir: string;
  statePath: string;
  state: StoreState;
  journal: Journal;
  history: HistoryEntry[];
  logger: Logger;
  unlock: () => Promise<void>;
}): FilePolicyStore {
  const { dataDir, statePath, state, journal, history, logger, unlock } = parts;
  const listeners = new Set<ChangeListener>();
  const claimed = new Map<string, number>();
  let tail: Promise<unknown> = Promise.resolve();
  let closed = false;
  let closing: Promise<void> | undefined;

  const view: PolicyView = {
    get: (name) => state.policies.get(name),
    lastRevision: (name) => state.policies.get(name)?.revision ?? state.tombstones.get(name) ?? 0,
    isClaimed: (source) => claimed.has(source),
  };

  /** Runs writes one at a time, in call order. */
  const serial = <T>(work: () => Promise<T>): Promise<T> => {
    const run = tail.then(work, work);
    tail = run.catch(() => {});
    return run;
  };

  const writable = () => {
    if (closed) throw new StoreError('the store is closed', dataDir);
    if (journal.broken) {
      throw new StoreError(`the store stopped accepting writes after a failed write to ${journal.path}; restart the server`, journal.path);
    }
  };

  async function commit(client: string, changes: CommitChange[]): Promise<void> {
    const record: Commit = { revision: state.revision + 1, at: new Date().toISOString(), client, changes };
    try {
      await journal.append(record); // The commit point.
    } catch (error) {
      throw new StoreError(`cannot write history ${journal.path}: ${describeFsError(error)}; nothing was changed`, journal.path, { cause: error });
    }
    applyCommit(state, record);
    history.push(...flatten(record));
    // Durable from here (the history is the commit point): tell the listeners
    // first, so a push to Envoy does not wait for the checkpoint rewrite.
    const change: StoreChange = {
      revision: record.revision,
      puts: changes.filter((c) => c.action === 'put').map((c) => state.policies.get(c.name)!),
      deletes: changes.filter((c) => c.action === 'delete').map((c) => c.name),
    };
    for (const listener of listeners) {
      try {
        listener(change);
      } catch (error) {
        logger.error('store: change listener failed', { error });
      }
    }
    try {
      await writeCheckpoint(statePath, state);
    } catch (error) {
      // Still durable through the history; the next write or start retries the checkpoint.
      logger.error('store: checkpoint failed; the history still holds the change', { path: statePath, error });
    }
  }

  /** A single write's outcome once its plan is committed. */
  async function single(name: string, plan: Plan, client: string): Promise<WriteResult> {
    if (!plan.ok) return { ok: false, error: { code: plan.error.code, message: plan.error.message } };
    if (plan.changes.length === 0) {
      return { ok: true, value: { name, revision: state.policies.get(name)!.revision, storeRevision: state.revision, changed: false } };
    }
    await commit(client, plan.changes);
    return { ok: true, value: { name, revision: plan.changes[0]!.revision, storeRevision: state.revision, changed: true } };
  }

  return {
    dataDir,
    location: `file:${dataDir}`,
    get revision() {
      return state.revision;
    },
    list: () => [...state.policies.values()].sort(byName),
    get: (name) => state.policies.get(name),

    put: (name, spec, options) =>
      serial(async () => {
        writable();
        return single(name, planPut(view, name, spec, options), options.client);
      }),

    delete: (name, options) =>
      serial(async () => {
        writable();
        return single(name, planDelete(view, name, options), options.client);
      }),

    apply: (batch, options) =>
      serial(async () => {
        writable();
        const changes = planApply(view, batch, options.source);
        if (changes.length > 0) await commit(options.client, changes);
        return { storeRevision: state.revision, changed: changes.map((c) => c.name) };
      }),

    batch: (request, options) =>
      serial(async (): Promise<BatchResult> => {
        writable();
        const plan = planBatch(view, request);
        if (!plan.ok) return plan;
        if (plan.changes.length > 0) await commit(options.client, plan.changes);
        return { ok: true, value: { storeRevision: state.revision, changed: plan.changes.map((c) => c.name) } };
      }),

    history: async (query) => historyPage(history, query),

    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    claimSource(source) {
      claimed.set(source, (claimed.get(source) ?? 0) + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const count = (claimed.get(source) ?? 1) - 1;
        if (count <= 0) claimed.delete(source);
        else claimed.set(source, count);
      };
    },

    close() {
      // One closing for every caller: two overlapping closes must not release the lock twice.
      closing ??= (async () => {
        await serial(async () => {
          closed = true;
        });
        await journal.close();
        await unlock();
        logger.info('store: closed', { dataDir, revision: state.revision });
      })();
      return closing;
    },
  };
}
