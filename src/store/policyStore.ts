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
import type { PolicySpec, StoredPolicy } from '../policy/model.js';
import { silentLogger, type Logger } from '../log.js';
import { lockDataDir } from './dataDirLock.js';
import { fsyncDirectory, tempPathFor } from './durableFile.js';
import { openJournal, type Commit, type CommitChange, type Journal } from './journal.js';
import { applyCommit, readCheckpoint, writeCheckpoint, type StoreState } from './state.js';
import { describeFsError, StoreError } from './storeError.js';

export const HISTORY_FILE = 'history.jsonl';
export const STATE_FILE = 'policies.json';
/** The source of policies written through the admin API. */
export const API_SOURCE = 'api';

export interface WriteOptions {
  /** Who asks, for the history: remote address, token identity, user agent; or "policy-file:PATH". */
  readonly client: string;
  /** Who will manage the policy; default "api". */
  readonly source?: string;
  /** Only if the policy exists at this revision ("*": exists at all); else precondition_failed. */
  readonly ifMatch?: number | '*';
  /** "*": only if the policy does not exist; else precondition_failed. */
  readonly ifNoneMatch?: '*';
}

export type StoreRefusalCode = 'not_found' | 'conflict' | 'precondition_failed';

export interface StoreRefusal {
  readonly code: StoreRefusalCode;
  readonly message: string;
}

export interface WriteOutcome {
  readonly name: string;
  /** The policy's revision after the write (for a delete: the revision the deletion got). */
  readonly revision: number;
  readonly storeRevision: number;
  /** False when a put carried the spec already stored: nothing was written. */
  readonly changed: boolean;
}

export type WriteResult = { readonly ok: true; readonly value: WriteOutcome } | { readonly ok: false; readonly error: StoreRefusal };

/** One element of a batch: a spec to put, or undefined to delete. */
export interface PolicyChange {
  readonly name: string;
  readonly spec: PolicySpec | undefined;
}

export interface HistoryEntry {
  /** The store revision of the commit the change was in. */
  readonly storeRevision: number;
  readonly at: string;
  readonly action: 'put' | 'delete';
  readonly name: string;
  /** The policy's revision after the change. */
  readonly revision: number;
  readonly client: string;
  readonly source: string;
  readonly spec?: PolicySpec;
}

export interface HistoryQuery {
  /** At most this many entries (default 100, at most 1000). */
  readonly limit?: number;
  /** Only commits after this store revision, oldest first; without it, the newest entries. */
  readonly since?: number;
}

export type ChangeListener = (policies: StoredPolicy[], revision: number) => void;

export interface PolicyStore {
  readonly dataDir: string;
  /** Increases on every committed change; 0 for a store never written. */
  readonly revision: number;
  /** Every policy, sorted by name. */
  list(): StoredPolicy[];
  get(name: string): StoredPolicy | undefined;
  put(name: string, spec: PolicySpec, options: WriteOptions): Promise<WriteResult>;
  delete(name: string, options: WriteOptions): Promise<WriteResult>;
  /**
   * Several changes as one commit (one store revision, one change event): a
   * policy file edit lands whole or not at all. No ownership or precondition
   * checks: the caller (the policy file) is the authority for these names.
   */
  apply(changes: readonly PolicyChange[], options: { client: string; source: string }): Promise<{ storeRevision: number; changed: string[] }>;
  history(query?: HistoryQuery): HistoryEntry[];
  /** Called after every commit, in commit order, with the full list and the new revision. */
  onChange(listener: ChangeListener): () => void;
  /**
   * Marks a source (a policy file) as active: while claimed, its policies
   * refuse writes from any other source (conflict). The result releases it.
   */
  claimSource(source: string): () => void;
  /** Waits for pending writes, then releases the data dir. */
  close(): Promise<void>;
}

export interface OpenOptions {
  readonly logger?: Logger;
}

const byName = (a: StoredPolicy, b: StoredPolicy): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
/** True when putting `spec` from `source` would change nothing (specs are canonical, so text equality is meaning equality). */
const alreadyStored = (existing: StoredPolicy, source: string, spec: PolicySpec): boolean => {
  if ((existing.source ?? API_SOURCE) !== source) return false;
  const { sources, nodes, upstream, mode, allow } = existing;
  return (
    JSON.stringify({ sources, nodes, upstream, mode, allow }) ===
    JSON.stringify({ sources: spec.sources, nodes: spec.nodes, upstream: spec.upstream, mode: spec.mode, allow: spec.allow })
  );
};

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

export async function openPolicyStore(dataDirInput: string, options: OpenOptions = {}): Promise<PolicyStore> {
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

async function recover(dataDir: string, logger: Logger, unlock: () => Promise<void>): Promise<PolicyStore> {
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
}): PolicyStore {
  const { dataDir, statePath, state, journal, history, logger, unlock } = parts;
  const listeners = new Set<ChangeListener>();
  const claimed = new Map<string, number>();
  let tail: Promise<unknown> = Promise.resolve();
  let closed = false;
  let closing: Promise<void> | undefined;

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

  const nextRevision = (name: string): number => (state.policies.get(name)?.revision ?? state.tombstones.get(name) ?? 0) + 1;

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
    const policies = [...state.policies.values()].sort(byName);
    for (const listener of listeners) {
      try {
        listener(policies, state.revision);
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

  function refuse(name: string, source: string, options: WriteOptions): StoreRefusal | undefined {
    const existing = state.policies.get(name);
    if (existing && existing.source !== source && existing.source !== undefined && claimed.has(existing.source)) {
      const owner = existing.source.startsWith('file:') ? `the policy file ${existing.source.slice(5)}` : existing.source;
      return { code: 'conflict', message: `policy "${name}" is managed by ${owner}; change it there` };
    }
    if (options.ifNoneMatch === '*' && existing) {
      return { code: 'precondition_failed', message: `policy "${name}" already exists (revision ${existing.revision})` };
    }
    if (options.ifMatch !== undefined) {
      if (!existing) return { code: 'precondition_failed', message: `policy "${name}" does not exist; If-Match needs an existing policy` };
      if (options.ifMatch !== '*' && existing.revision !== options.ifMatch) {
        return { code: 'precondition_failed', message: `policy "${name}" is at revision ${existing.revision}, not ${options.ifMatch}` };
      }
    }
    return undefined;
  }

  return {
    dataDir,
    get revision() {
      return state.revision;
    },
    list: () => [...state.policies.values()].sort(byName),
    get: (name) => state.policies.get(name),

    put: (name, spec, options) =>
      serial(async (): Promise<WriteResult> => {
        writable();
        const source = options.source ?? API_SOURCE;
        const refusal = refuse(name, source, options);
        if (refusal) return { ok: false, error: refusal };
        const existing = state.policies.get(name);
        if (existing && alreadyStored(existing, source, spec)) {
          return { ok: true, value: { name, revision: existing.revision, storeRevision: state.revision, changed: false } };
        }
        const revision = nextRevision(name);
        await commit(options.client, [{ action: 'put', name, revision, source, spec }]);
        return { ok: true, value: { name, revision, storeRevision: state.revision, changed: true } };
      }),

    delete: (name, options) =>
      serial(async (): Promise<WriteResult> => {
        writable();
        const source = options.source ?? API_SOURCE;
        const refusal = refuse(name, source, options);
        if (refusal) return { ok: false, error: refusal };
        if (!state.policies.has(name)) return { ok: false, error: { code: 'not_found', message: `policy "${name}" does not exist` } };
        const revision = nextRevision(name);
        await commit(options.client, [{ action: 'delete', name, revision, source }]);
        return { ok: true, value: { name, revision, storeRevision: state.revision, changed: true } };
      }),

    apply: (batch, options) =>
      serial(async () => {
        writable();
        const changes: CommitChange[] = [];
        for (const { name, spec } of batch) {
          const existing = state.policies.get(name);
          if (spec === undefined) {
            if (existing) changes.push({ action: 'delete', name, revision: nextRevision(name), source: options.source });
          } else if (!existing || !alreadyStored(existing, options.source, spec)) {
            changes.push({ action: 'put', name, revision: nextRevision(name), source: options.source, spec });
          }
        }
        if (changes.length > 0) await commit(options.client, changes);
        return { storeRevision: state.revision, changed: changes.map((c) => c.name) };
      }),

    history: (query = {}) => {
      const limit = Math.min(Math.max(Math.trunc(query.limit ?? 100), 1), 1000);
      if (query.since === undefined) return history.slice(-limit);
      const since = query.since;
      // Entries are in revision order: binary search the first one after `since`.
      let low = 0;
      let high = history.length;
      while (low < high) {
        const mid = (low + high) >> 1;
        if (history[mid]!.storeRevision <= since) low = mid + 1;
        else high = mid;
      }
      return history.slice(low, low + limit);
    },

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
