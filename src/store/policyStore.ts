// The durable policy store: one directory, one writer.
//
//   DATA_DIR/lock                    flock'd by the server holding the directory (dataDirLock.ts)
//   DATA_DIR/history.jsonl           the active log: commits since the last checkpoint
//   DATA_DIR/history-FIRST-LAST.jsonl  sealed logs: older commits, kept for the history API until expired
//   DATA_DIR/policies.json           checkpoint: the state at the revision the active log starts after
//
// A write is planned at once against the state plus the commits still being
// written (so revisions and preconditions follow call order), queued, and
// written with the other queued commits in one append and one fsync (group
// commit: the commit point, after which a kill -9 cannot lose it). Then it is
// folded into the state, announced to listeners, and answered: a write costs
// its own bytes and a share of one fsync, whatever the number of policies.
//
// Compaction (when the active log has grown as large as the checkpoint, and
// every compactIntervalMs) seals the active log and writes a checkpoint of the
// state at that revision, in the background; then expired sealed logs are
// deleted. Start-up reads the checkpoint and the active log only (plus, after a
// crash mid-compaction, the one sealed log the checkpoint did not cover), so it
// does not depend on the history's age. Callers pass validated, canonical specs.
import { mkdir, readdir, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { StoredPolicy } from '../policy/model.js';
import { silentLogger, type Logger } from '../log.js';
import { lockDataDir } from './dataDirLock.js';
import { fsyncDirectory, replaceFileDurably, tempPathFor } from './durableFile.js';
import { openJournal, readSegment, type Commit, type CommitChange, type Journal } from './journal.js';
import { applyCommit, checkpointText, readCheckpoint, type StoreState } from './state.js';
import { describeFsError, StoreError } from './storeError.js';
import { DEFAULT_HISTORY_LIMIT, historyPage, MAX_HISTORY_LIMIT } from './historyPage.js';
import type { BatchResult, ChangeListener, HistoryEntry, HistoryPage, HistoryQuery, PolicyStore, StoreChange, WriteResult } from './store.js';
import { planApply, planBatch, planDelete, planPut, type Plan, type PolicyView } from './writeRules.js';
import { createSourceClaims } from './sourceClaims.js';

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


/** How long the history is kept and how often the store compacts (serve's --history-* flags). */
export interface StoreTuning {
  /** Keep history at least this long (default 30 days). */
  readonly historyRetentionMs?: number;
  /** Drop the oldest history beyond about this many bytes on disk (default 1 GiB). */
  readonly historyMaxBytes?: number;
  /** Checkpoint and drop expired history at least this often (default 1 hour). */
  readonly compactIntervalMs?: number;
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

export const SEGMENT_PATTERN = /^history-(\d{12})-(\d{12})\.jsonl$/;
const segmentName = (first: number, last: number): string => `history-${String(first).padStart(12, '0')}-${String(last).padStart(12, '0')}.jsonl`;

const DEFAULTS = {
  historyRetentionMs: 30 * 86_400_000,
  historyMaxBytes: 1024 * 1024 * 1024,
  compactIntervalMs: 3_600_000,
  /** The active log is compacted once it is as large as the checkpoint, and at least this large. */
  checkpointMinBytes: 4 * 1024 * 1024,
};
/** Commits written with one fsync at most: bounds one write's size and latency. */
const MAX_GROUP = 2000;

/** A sealed log: commits first..last, immutable, read on demand by the history API. */
interface Segment {
  readonly path: string;
  readonly first: number;
  readonly last: number;
  readonly bytes: number;
  /** When its last commit was written: its age for retention. */
  readonly mtimeMs: number;
}

/** The file store: the interface, where its files are, and compaction on demand (tests, benchmarks). */
export interface FilePolicyStore extends PolicyStore {
  readonly dataDir: string;
  /** Seals the active log, checkpoints, and drops expired history; resolves when durable. */
  compact(): Promise<void>;
  groupCommit(): { readonly commits: number; readonly fsyncs: number; readonly largestGroup: number };
}

export interface OpenOptions extends StoreTuning {
  readonly logger?: Logger;
  /** The active log's size that triggers a compaction, at the least (tests lower it). */
  readonly checkpointMinBytes?: number;
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
    return await recover(dataDir, logger, unlock, options);
  } catch (error) {
    await unlock();
    throw error;
  }
}

async function listSegments(dataDir: string): Promise<Segment[]> {
  const segments: Segment[] = [];
  for (const file of await readdir(dataDir)) {
    const match = SEGMENT_PATTERN.exec(file);
    if (!match) continue;
    const path = join(dataDir, file);
    const info = await stat(path);
    segments.push({ path, first: Number(match[1]), last: Number(match[2]), bytes: info.size, mtimeMs: info.mtimeMs });
  }
  return segments.sort((a, b) => a.first - b.first);
}

async function recover(dataDir: string, logger: Logger, unlock: () => Promise<void>, options: OpenOptions): Promise<FilePolicyStore> {
  const statePath = join(dataDir, STATE_FILE);
  const historyPath = join(dataDir, HISTORY_FILE);
  // A temp file is a replacement that never got renamed in: not part of any state.
  await rm(tempPathFor(statePath), { force: true });

  const { state, rebuilt } = await readCheckpoint(statePath, logger);
  const checkpointRevision = state.revision;
  const segments = await listSegments(dataDir);
  const { journal, commits } = await openJournal(historyPath, logger);
  try {
    // Normally the active log starts right after the checkpoint. After a crash
    // between sealing the log and writing the checkpoint, the commits in
    // between are in the newest sealed logs: read those (and only those).
    const activeFirst = commits[0]?.revision ?? Number.POSITIVE_INFINITY;
    const older: Commit[] = [];
    for (const segment of segments) {
      if (segment.last <= state.revision || segment.first >= activeFirst) continue;
      older.push(...(await readSegment(segment.path)));
    }
    const replay = [...older, ...commits];
    if (rebuilt && replay[0]?.revision !== 1) {
      throw new StoreError(`state file ${statePath} was unreadable and the history in ${dataDir} does not start at revision 1; restore ${statePath} from a backup`, statePath);
    }
    let replayed = 0;
    for (const commit of replay) {
      if (commit.revision <= state.revision) continue;
      if (commit.revision !== state.revision + 1) {
        throw new StoreError(`history ${historyPath} jumps from revision ${state.revision} to ${commit.revision}`, historyPath);
      }
      applyCommit(state, commit);
      replayed++;
    }
    const journalEnd = Math.max(commits.at(-1)?.revision ?? 0, segments.at(-1)?.last ?? 0);
    if (journalEnd < state.revision) {
      logger.warn('store: history ends before the state file; history lines were lost', { historyPath, historyRevision: journalEnd, stateRevision: state.revision });
    }
    if (older.length > 0 || rebuilt) logger.info('store: recovered commits the checkpoint did not hold', { commits: replayed, revision: state.revision });
  } catch (error) {
    await journal.close();
    if (error instanceof StoreError) throw error;
    throw new StoreError(`cannot recover data dir ${dataDir}: ${describeFsError(error)}`, dataDir, { cause: error });
  }
  logger.info('store: opened', { dataDir, revision: state.revision, policies: state.policies.size, activeLogBytes: journal.size, sealedLogs: segments.length });
  const store = createStore({
    dataDir, statePath, state, journal, segments, logger, unlock,
    active: commits.flatMap(flatten),
    activeFirst: commits[0]?.revision,
    checkpointRevision: rebuilt ? 0 : checkpointRevision,
    checkpointBytes: await stat(statePath).then((info) => info.size, () => 0),
    tuning: {
      historyRetentionMs: options.historyRetentionMs ?? DEFAULTS.historyRetentionMs,
      historyMaxBytes: options.historyMaxBytes ?? DEFAULTS.historyMaxBytes,
      compactIntervalMs: options.compactIntervalMs ?? DEFAULTS.compactIntervalMs,
      checkpointMinBytes: options.checkpointMinBytes ?? DEFAULTS.checkpointMinBytes,
    },
  });
  // A checkpoint behind the state (commits replayed, or none yet) is brought up
  // to date now, so the next start reads a short log again.
  if (store.revision !== checkpointRevision || rebuilt) {
    try {
      await store.compact();
    } catch (error) {
      await store.close();
      throw error;
    }
  }
  return store;
}

interface Pending {
  readonly record: Commit;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

function createStore(parts: {
  dataDir: string;
  statePath: string;
  state: StoreState;
  journal: Journal;
  segments: Segment[];
  active: HistoryEntry[];
  activeFirst: number | undefined;
  checkpointRevision: number;
  checkpointBytes: number;
  logger: Logger;
  unlock: () => Promise<void>;
  tuning: Required<StoreTuning> & { checkpointMinBytes: number };
}): FilePolicyStore {
  const { dataDir, statePath, state, journal, segments, logger, unlock, tuning } = parts;
  const listeners = new Set<ChangeListener>();
  const claimed = createSourceClaims();
  let closed = false;
  let closing: Promise<void> | undefined;

  // The active log's entries (the history API's newest pages) and first revision.
  let active = parts.active;
  let activeFirst = parts.activeFirst;
  // The revision the durable checkpoint holds; sealed logs up to it may be dropped.
  let checkpointRevision = parts.checkpointRevision;
  let checkpointBytes = parts.checkpointBytes;

  // Commits planned but not yet durable, in revision order, and what they do
  // to the policies: the view writes are planned against.
  const queue: Pending[] = [];
  let inFlight: Pending[] = [];
  const overlay = new Map<string, StoredPolicy | null>();
  const overlayRevision = new Map<string, number>();
  let plannedRevision = state.revision;
  // The last queued commit: an answer planned on top of it (a no-op) waits for it.
  let tailDone: Promise<void> = Promise.resolve();
  let flushing: Promise<void> | undefined;
  let compactWanted: { resolve: () => void; reject: (error: unknown) => void }[] = [];
  let checkpointing: Promise<void> | undefined;
  const stats = { commits: 0, fsyncs: 0, largestGroup: 0 };

  const view: PolicyView = {
    get: (name) => (overlay.has(name) ? overlay.get(name) ?? undefined : state.policies.get(name)),
    lastRevision: (name) =>
      overlayRevision.get(name) ?? state.policies.get(name)?.revision ?? state.tombstones.get(name) ?? 0,
    isClaimed: (source) => claimed.has(source),
  };

  const foldIntoOverlay = (record: Commit) => {
    for (const change of record.changes) {
      overlayRevision.set(change.name, change.revision);
      overlay.set(
        change.name,
        change.action === 'put' ? { name: change.name, revision: change.revision, updatedAt: record.at, source: change.source, ...change.spec! } : null,
      );
    }
  };
  const rebuildOverlay = () => {
    overlay.clear();
    overlayRevision.clear();
    for (const pending of [...inFlight, ...queue]) foldIntoOverlay(pending.record);
  };

  const writable = () => {
    if (closed) throw new StoreError('the store is closed', dataDir);
    if (journal.broken) {
      throw new StoreError(`the store stopped accepting writes after a failed write to ${journal.path}; restart the server`, journal.path);
    }
  };

  /** Resolves once everything planned so far is durable (or has failed). */
  const settled = async (): Promise<void> => {
    while (flushing) await flushing;
  };

  /** Queues a planned commit; resolves when it is durable and announced. */
  function enqueue(client: string, changes: CommitChange[]): Promise<void> {
    const record: Commit = { revision: ++plannedRevision, at: new Date().toISOString(), client, changes };
    foldIntoOverlay(record);
    const done = new Promise<void>((resolve, reject) => queue.push({ record, resolve, reject }));
    tailDone = done;
    kick();
    return done;
  }

  /** Resolves once every commit planned before this call is durable; rejects if one of them failed. */
  const plannedDurable = (): Promise<void> =>
    tailDone.catch((error: unknown) => {
      throw new StoreError(`a write this answer depended on failed (${(error as Error).message}); retry`, journal.path, { cause: error });
    });

  /**
   * Starts the writer unless it runs. Work queued after its last look at the
   * queue (in the microtasks before its promise settles) is picked up by the
   * restart in finally, so nothing is left waiting.
   */
  function kick(): void {
    if (flushing) return;
    flushing = flush().finally(() => {
      flushing = undefined;
      if (queue.length > 0 || compactWanted.length > 0) kick();
    });
  }

  function announce(record: Commit): void {
    const change: StoreChange = {
      revision: record.revision,
      puts: record.changes.filter((c) => c.action === 'put').map((c) => state.policies.get(c.name)!),
      deletes: record.changes.filter((c) => c.action === 'delete').map((c) => c.name),
    };
    for (const listener of listeners) {
      try {
        listener(change);
      } catch (error) {
        logger.error('store: change listener failed', { error });
      }
    }
  }

  /** The writer: one group of queued commits per append + fsync, compaction between groups. */
  async function flush(): Promise<void> {
    for (;;) {
      if (compactWanted.length > 0) await sealAndCheckpoint();
      if (queue.length === 0) return;
      inFlight = queue.splice(0, MAX_GROUP);
      const records = inFlight.map((p) => p.record);
      try {
        await journal.appendMany(records); // The commit point.
      } catch (error) {
        // Nothing of this group is on disk, and every later commit was planned
        // on top of it: refuse them all, and plan again from the durable state.
        const failed = [...inFlight, ...queue.splice(0)];
        inFlight = [];
        overlay.clear();
        overlayRevision.clear();
        plannedRevision = state.revision;
        const refusal = new StoreError(`cannot write history ${journal.path}: ${describeFsError(error)}; nothing was changed`, journal.path, { cause: error });
        for (const pending of failed) pending.reject(refusal);
        continue;
      }
      const done = inFlight;
      inFlight = [];
      stats.commits += done.length;
      stats.fsyncs += 1;
      stats.largestGroup = Math.max(stats.largestGroup, done.length);
      activeFirst ??= records[0]!.revision;
      for (const { record } of done) {
        applyCommit(state, record);
        for (const entry of flatten(record)) active.push(entry);
        announce(record);
      }
      if (queue.length === 0) {
        overlay.clear();
        overlayRevision.clear();
      } else rebuildOverlay();
      for (const pending of done) pending.resolve();
      // The active log is worth compacting once it is as large as the checkpoint it saves replaying.
      if (!checkpointing && journal.size >= Math.max(tuning.checkpointMinBytes, checkpointBytes)) void compactSoon();
    }
  }

  /**
   * Between two appends: seal the active log at the durable revision R, take
   * the state's checkpoint text at R, and write it in the background (appends
   * go on meanwhile). Once it is durable, expired sealed logs are dropped.
   */
  async function sealAndCheckpoint(): Promise<void> {
    const waiting = compactWanted;
    compactWanted = [];
    try {
      if (checkpointing) await checkpointing; // One checkpoint at a time.
      const revision = state.revision;
      if (journal.size > 0 && activeFirst !== undefined) {
        const path = join(dataDir, segmentName(activeFirst, revision));
        const bytes = journal.size;
        await journal.seal(path);
        segments.push({ path, first: activeFirst, last: revision, bytes, mtimeMs: Date.now() });
        active = [];
        activeFirst = undefined;
      }
      if (revision === checkpointRevision) {
        await dropExpired();
        for (const w of waiting) w.resolve();
        return;
      }
      const text = checkpointText(state);
      const written = (async () => {
        await replaceFileDurably(statePath, text);
        checkpointRevision = revision;
        checkpointBytes = Buffer.byteLength(text);
        await dropExpired();
      })();
      checkpointing = written.finally(() => {
        checkpointing = undefined;
      });
      written.then(
        () => {
          for (const w of waiting) w.resolve();
        },
        (error: unknown) => {
          // Still durable through the sealed log; the next compaction retries.
          logger.error('store: checkpoint failed; the history still holds every change', { path: statePath, error });
          for (const w of waiting) w.reject(error);
        },
      );
    } catch (error) {
      logger.error('store: compaction failed; the history still holds every change', { dataDir, error });
      for (const w of waiting) w.reject(error);
    }
  }

  /** Drops sealed logs the checkpoint covers once they are past retention or over the size bound (oldest first). */
  async function dropExpired(): Promise<void> {
    const now = Date.now();
    let total = segments.reduce((sum, s) => sum + s.bytes, 0) + journal.size;
    let dropped = 0;
    while (segments.length > 0) {
      const oldest = segments[0]!;
      if (oldest.last > checkpointRevision) break;
      const expired = now - oldest.mtimeMs > tuning.historyRetentionMs;
      if (!expired && total <= tuning.historyMaxBytes) break;
      await unlink(oldest.path).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
      });
      segments.shift();
      total -= oldest.bytes;
      dropped++;
    }
    if (dropped > 0) {
      await fsyncDirectory(dataDir);
      logger.info('store: dropped expired history', { logs: dropped, oldestKept: segments[0]?.first ?? activeFirst });
    }
  }

  function compactSoon(): Promise<void> {
    const done = new Promise<void>((resolve, reject) => compactWanted.push({ resolve, reject }));
    kick();
    return done;
  }

  const timer = setInterval(() => {
    if (!closed && (journal.size > 0 || segments.length > 0)) compactSoon().catch(() => {});
  }, Math.min(tuning.compactIntervalMs, 2 ** 31 - 1)); // setInterval's largest delay
  timer.unref();

  /** A single write's outcome once its plan is committed. */
  async function single(name: string, plan: Plan, client: string): Promise<WriteResult> {
    if (!plan.ok) return { ok: false, error: { code: plan.error.code, message: plan.error.message } };
    if (plan.changes.length === 0) {
      // Unchanged against a state that may not be durable yet: answer only once it is.
      const revision = view.get(name)!.revision;
      const storeRevision = plannedRevision;
      await plannedDurable();
      return { ok: true, value: { name, revision, storeRevision, changed: false } };
    }
    const revision = plannedRevision + 1;
    await enqueue(client, plan.changes);
    return { ok: true, value: { name, revision: plan.changes[0]!.revision, storeRevision: revision, changed: true } };
  }

  /** The entries of sealed logs, newest first or oldest first, until `enough` says stop. */
  async function gather(query: HistoryQuery): Promise<HistoryEntry[]> {
    const limit = Math.min(Math.max(Math.trunc(query.limit ?? DEFAULT_HISTORY_LIMIT), 1), MAX_HISTORY_LIMIT);
    const sealed = [...segments];
    const read = async (segment: Segment): Promise<HistoryEntry[]> => {
      try {
        return (await readSegment(segment.path)).flatMap(flatten);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []; // Dropped meanwhile: expired.
        throw error;
      }
    };
    const newest = active;
    if (query.since !== undefined) {
      const since = query.since;
      const parts: HistoryEntry[][] = [];
      let count = 0;
      for (const segment of sealed) {
        if (segment.last <= since) continue;
        if (count > limit) break;
        const entries = await read(segment);
        parts.push(entries);
        count += entries.filter((e) => e.storeRevision > since).length;
      }
      parts.push(newest);
      return parts.flat();
    }
    const before = query.before ?? Number.POSITIVE_INFINITY;
    const parts: HistoryEntry[][] = [newest];
    let count = newest.filter((e) => e.storeRevision < before).length;
    for (let i = sealed.length - 1; i >= 0 && count <= limit; i--) {
      const segment = sealed[i]!;
      if (segment.first >= before) continue;
      const entries = await read(segment);
      parts.unshift(entries);
      count += entries.filter((e) => e.storeRevision < before).length;
    }
    return parts.flat();
  }

  return {
    dataDir,
    location: `file:${dataDir}`,
    get revision() {
      return state.revision;
    },
    list: () => [...state.policies.values()].sort(byName),
    count: () => state.policies.size,
    get: (name) => state.policies.get(name),

    put: async (name, spec, options) => {
      writable();
      return single(name, planPut(view, name, spec, options), options.client);
    },

    delete: async (name, options) => {
      writable();
      return single(name, planDelete(view, name, options), options.client);
    },

    apply: async (batch, options) => {
      writable();
      const changes = planApply(view, batch, options.source);
      if (changes.length === 0) {
        const storeRevision = plannedRevision;
        await plannedDurable();
        return { storeRevision, changed: [] };
      }
      const revision = plannedRevision + 1;
      await enqueue(options.client, changes);
      return { storeRevision: revision, changed: changes.map((c) => c.name) };
    },

    batch: async (request, options): Promise<BatchResult> => {
      writable();
      const plan = planBatch(view, request);
      if (!plan.ok) return plan;
      if (plan.changes.length === 0) {
        const storeRevision = plannedRevision;
        await plannedDurable();
        return { ok: true, value: { storeRevision, changed: [] } };
      }
      const revision = plannedRevision + 1;
      await enqueue(options.client, plan.changes);
      return { ok: true, value: { storeRevision: revision, changed: plan.changes.map((c) => c.name) } };
    },

    history: async (query: HistoryQuery = {}): Promise<HistoryPage> => historyPage(await gather(query), query),

    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    claimSource: (source) => claimed.claim(source),

    groupCommit: () => ({ ...stats }),

    compact: () => (closed ? Promise.reject(new StoreError('the store is closed', dataDir)) : compactSoon()),

    close() {
      // One closing for every caller: two overlapping closes must not release the lock twice.
      closing ??= (async () => {
        closed = true;
        clearInterval(timer);
        await settled();
        await checkpointing?.catch(() => {});
        await journal.close();
        await unlock();
        logger.info('store: closed', { dataDir, revision: state.revision });
      })();
      return closing;
    },
  };
}
