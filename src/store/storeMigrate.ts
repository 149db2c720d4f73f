// egress-xds store migrate: moves policies and their history between the file
// store and etcd, either way. The source is read through the store interface
// (the file store takes its directory lock, so a running server refuses it);
// the target is written directly, then opened as a store and compared with
// the source: a migration that would lose anything fails instead.
//
// Revisions: into etcd, history keeps its numbers and new revisions start
// above the source's (the meta key's base), so an ETag taken before the move
// can never match a policy after it. Into files, every number is kept.
import { readdir, rm, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { silentLogger, type Logger } from '../log.js';
import type { StoredPolicy } from '../policy/model.js';
import { connectEtcd } from './etcdConnection.js';
import { HISTORY, META_KEY, POLICIES, policyRecordOf, type HistoryRecord } from './etcdRecords.js';
import { openJournal, type Commit } from './journal.js';
import { HISTORY_FILE, STATE_FILE } from './policyStore.js';
import { writeCheckpoint, type StoreState } from './state.js';
import { openStoreBackend, type StoreBackend } from './storeBackend.js';
import type { HistoryEntry, PolicyStore } from './store.js';
import { StoreError } from './storeError.js';

export interface MigrationResult {
  readonly policies: number;
  readonly historyEntries: number;
  /** The source's store revision. */
  readonly revision: number;
}

interface Snapshot {
  readonly revision: number;
  readonly policies: StoredPolicy[];
  readonly history: HistoryEntry[];
}

const describe = (backend: StoreBackend): string =>
  backend.kind === 'file' ? resolve(backend.dataDir) : `etcd://${backend.etcd.endpoints.join(',')}${backend.etcd.prefix}`;

async function readAll(store: PolicyStore): Promise<Snapshot> {
  const history: HistoryEntry[] = [];
  let since = -1;
  for (let page = 0; page < 1_000_000; page++) {
    const { entries } = await store.history({ limit: 1000, ...(since >= 0 ? { since } : { since: 0 }) });
    if (entries.length === 0) break;
    history.push(...entries);
    since = entries.at(-1)!.storeRevision;
  }
  return { revision: store.revision, policies: store.list(), history };
}

/** The history's entries grouped back into commits (one store revision each). */
function commitsOf(history: readonly HistoryEntry[]): Commit[] {
  const commits: Commit[] = [];
  for (const entry of history) {
    let last = commits.at(-1);
    if (last?.revision !== entry.storeRevision) {
      last = { revision: entry.storeRevision, at: entry.at, client: entry.client, changes: [] };
      commits.push(last);
    }
    (last.changes as Commit['changes'][number][]).push({
      action: entry.action,
      name: entry.name,
      revision: entry.revision,
      source: entry.source,
      ...(entry.spec ? { spec: entry.spec } : {}),
    });
  }
  return commits;
}

/** Files of a file store in a data dir: the state, the history and any sealed history segments. */
const isStoreFile = (name: string): boolean => name.startsWith(STATE_FILE) || name.startsWith('history');

async function writeFiles(dataDir: string, snapshot: Snapshot, force: boolean): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const present = (await readdir(dataDir)).filter(isStoreFile);
  if (present.length > 0) {
    if (!force) throw new StoreError(`target ${dataDir} already holds a store (${present.join(', ')}); refusing to overwrite it (--force replaces it)`, dataDir);
    for (const name of present) await rm(join(dataDir, name), { recursive: true, force: true });
  }
  const commits = commitsOf(snapshot.history);
  const revision = Math.max(snapshot.revision, commits.at(-1)?.revision ?? 0, ...snapshot.policies.map((p) => p.revision));
  // etcd's revisions also count writes that are not commits (the meta key): an
  // empty commit at the state's revision tells the file store no history was lost.
  if (revision > (commits.at(-1)?.revision ?? 0)) commits.push({ revision, at: new Date().toISOString(), client: 'egress-xds store migrate', changes: [] });
  const { journal } = await openJournal(join(dataDir, HISTORY_FILE), silentLogger);
  try {
    for (const commit of commits) await journal.append(commit);
  } finally {
    await journal.close();
  }
  const present_ = new Set(snapshot.policies.map((p) => p.name));
  const tombstones = new Map<string, number>();
  for (const entry of snapshot.history) if (entry.action === 'delete' && !present_.has(entry.name)) tombstones.set(entry.name, entry.revision);
  const state: StoreState = {
    // The journal's commits are all at or below the checkpoint: nothing is replayed on open.
    revision,
    policies: new Map(snapshot.policies.map((p) => [p.name, p])),
    tombstones,
  };
  await writeCheckpoint(join(dataDir, STATE_FILE), state);
}

/** etcd's default limits: 128 operations and 1.5 MiB per request. */
const OPS_PER_TXN = 100;
const BYTES_PER_TXN = 1 << 20;

async function writeEtcd(backend: Extract<StoreBackend, { kind: 'etcd' }>, snapshot: Snapshot, force: boolean): Promise<void> {
  const { prefix } = backend.etcd;
  const client = await connectEtcd(backend.etcd);
  try {
    const existing = Number((await client.getAll().prefix(prefix).count()));
    if (existing > 0) {
      if (!force) throw new StoreError(`target ${describe(backend)} already holds ${existing} keys; refusing to overwrite them (--force replaces them)`, prefix);
      await client.delete().prefix(prefix);
    }
    const writes: { key: string; value: string }[] = [{ key: `${prefix}${META_KEY}`, value: JSON.stringify({ format: 1, base: snapshot.revision }) }];
    for (const commit of commitsOf(snapshot.history)) {
      const record: HistoryRecord = {
        at: commit.at,
        client: commit.client,
        storeRevision: commit.revision,
        changes: commit.changes.map((c) => ({ action: c.action, name: c.name, source: c.source, revision: c.revision, ...(c.spec ? { spec: c.spec } : {}) })),
      };
      writes.push({ key: `${prefix}${HISTORY}m-${String(commit.revision).padStart(16, '0')}`, value: JSON.stringify(record) });
    }
    for (const policy of snapshot.policies) {
      const { name, sources, nodes, upstream, mode, allow } = policy;
      const spec = { ...(sources ? { sources } : {}), ...(nodes ? { nodes } : {}), ...(upstream ? { upstream } : {}), ...(mode ? { mode } : {}), allow };
      writes.push({ key: `${prefix}${POLICIES}${name}`, value: JSON.stringify(policyRecordOf(name, spec, policy.source ?? 'api', policy.updatedAt)) });
    }
    let chunk: typeof writes = [];
    let bytes = 0;
    const flush = async () => {
      if (chunk.length === 0) return;
      await client.if(`${prefix}${META_KEY}`, 'Create', '>', -1).then(...chunk.map((w) => client.put(w.key).value(w.value))).commit();
      chunk = [];
      bytes = 0;
    };
    for (const write of writes) {
      if (chunk.length >= OPS_PER_TXN || bytes + write.value.length > BYTES_PER_TXN) await flush();
      chunk.push(write);
      bytes += write.key.length + write.value.length;
    }
    await flush();
  } finally {
    client.close();
  }
}

/** JSON with object keys sorted: equal data, equal text, whatever order a store wrote the fields in. */
const canonical = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1))) : v,
  );

const comparable = (p: StoredPolicy, withRevision: boolean) => {
  const { revision, ...rest } = p;
  return canonical(withRevision ? { ...rest, revision } : { ...rest, source: rest.source ?? 'api' });
};

export async function migrateStore(from: StoreBackend, to: StoreBackend, options: { force: boolean; logger: Logger }): Promise<MigrationResult> {
  if (describe(from) === describe(to)) throw new StoreError(`--from and --to are the same store (${describe(from)})`, describe(from));
  const source = await openStoreBackend(from, options.logger);
  let snapshot: Snapshot;
  try {
    snapshot = await readAll(source);
  } finally {
    await source.close();
  }
  if (to.kind === 'file') await writeFiles(resolve(to.dataDir), snapshot, options.force);
  else await writeEtcd(to, snapshot, options.force);

  // Read the target back as a server would, and compare.
  const target = await openStoreBackend(to, options.logger);
  try {
    const moved = await readAll(target);
    const keepsRevisions = to.kind === 'file';
    const want = snapshot.policies.map((p) => comparable(p, keepsRevisions));
    const got = moved.policies.map((p) => comparable(p, keepsRevisions));
    if (want.join('\n') !== got.join('\n')) throw new StoreError(`the policies read back from ${describe(to)} differ from ${describe(from)}`, describe(to));
    if (canonical(moved.history) !== canonical(snapshot.history)) throw new StoreError(`the history read back from ${describe(to)} differs from ${describe(from)}`, describe(to));
    if (moved.revision < snapshot.revision) throw new StoreError(`${describe(to)} is at revision ${moved.revision}, below the source's ${snapshot.revision}`, describe(to));
  } finally {
    await target.close();
  }
  return { policies: snapshot.policies.length, historyEntries: snapshot.history.length, revision: snapshot.revision };
}
