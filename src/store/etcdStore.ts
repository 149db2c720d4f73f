// The etcd store: the PolicyStore interface over etcd, for replicas that
// share one state (serve --store etcd://...). Keys and values: etcdRecords.ts.
//
// Each replica holds the policies in memory, fed by ONE watch over the
// policies, the history and the meta key (a txn's events arrive together, so a
// commit is one change event). A write is planned against that view with the
// same rules as the file store (writeRules.ts), then sent as an etcd txn that
// compares every touched policy key's mod revision with the one the plan saw:
// two replicas racing on a key cannot both win, and If-Match is exactly that
// compare. A txn that lost waits for the watch to show the winner and plans
// again (the If-Match then fails with 412, an unchanged put becomes a no-op).
// A write is answered only after etcd committed it (quorum) and this replica's
// watch delivered it, so a client reads its own write on the replica it wrote
// to. When etcd is unreachable the view stays as it was (Envoys keep being
// served), writes fail with a StoreError naming etcd (503), and healthy()
// says why; the watch resumes from the last revision it saw, and when etcd
// compacted past it the replica reloads the prefix and announces only the
// policies that differ.
import { randomBytes } from 'node:crypto';
import { Range, type Etcd3, type IKeyValue, type IOperation, type IWatchResponse, type Watcher } from 'etcd3';
import { silentLogger, type Logger } from '../log.js';
import type { StoredPolicy } from '../policy/model.js';
import { connectEtcd, describeEtcd, describeEtcdError, type EtcdConnectionOptions } from './etcdConnection.js';
import {
  decodeHistory, decodeMeta, decodePolicy, HISTORY, META_KEY, POLICIES, policyRecordOf,
  type HistoryRecord,
} from './etcdRecords.js';
import { historyPage } from './historyPage.js';
import type { BatchResult, ChangeListener, HistoryEntry, PolicyStore, StoreChange, WriteResult } from './store.js';
import { StoreError } from './storeError.js';
import { planApply, planBatch, planDelete, planPut, type Plan, type PlannedChange, type PolicyView } from './writeRules.js';
import { createSourceClaims } from './sourceClaims.js';

export interface EtcdStoreHealth {
  readonly ok: boolean;
  /** Why not, naming etcd. */
  readonly reason?: string;
}

export interface EtcdPolicyStore extends PolicyStore {
  readonly prefix: string;
  /** The client, for the fleet status (src/cluster/) to share the connection. */
  readonly client: Etcd3;
  /** etcd answers and the watch is connected. */
  health(): EtcdStoreHealth;
  /** The etcd revision this replica's view has reached. */
  readonly etcdRevision: number;
  /** Reloads the whole prefix now (what a compaction forces); announces only what differs. */
  reload(): Promise<void>;
}

export interface EtcdStoreOptions extends EtcdConnectionOptions {
  readonly logger?: Logger;
  /** How often etcd is probed for health (default 1 s). */
  readonly probeMs?: number;
}

interface Held {
  readonly policy: StoredPolicy;
  /** etcd mod revision of the policy key. */
  readonly mod: number;
}

const byName = (a: StoredPolicy, b: StoredPolicy): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
/** Most attempts of one write that keeps losing races before it is refused. */
const MAX_ATTEMPTS = 20;
const CATCH_UP_MS = 5000;

/** Every key under `prefix` at one revision (the first page's), paged so no answer is huge. */
export async function rangeAll(client: Etcd3, prefix: string, revision?: number): Promise<{ kvs: IKeyValue[]; revision: number }> {
  const all = Range.prefix(prefix);
  const kvs: IKeyValue[] = [];
  let start: Buffer = all.start;
  let at = revision;
  for (let page = 0; page < 100_000; page++) {
    let builder = client.getAll().inRange(new Range(start, all.end)).sort('Key', 'Ascend').limit(1000);
    if (at !== undefined) builder = builder.revision(at);
    const response = await builder.exec();
    at ??= Number(response.header.revision);
    kvs.push(...response.kvs);
    if (!response.more || response.kvs.length === 0) return { kvs, revision: at };
    start = Buffer.concat([response.kvs.at(-1)!.key, Buffer.from([0])]);
  }
  throw new Error(`more than 100,000 pages under ${prefix}`);
}

/** Cancels a watcher without waiting on an etcd that does not answer. */
async function cancelWatcher(watcher: Watcher | undefined): Promise<void> {
  if (!watcher) return;
  watcher.removeAllListeners();
  watcher.on('error', () => {});
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([watcher.cancel().catch(() => {}), new Promise((resolve) => (timer = setTimeout(resolve, 1000)))]);
  clearTimeout(timer);
}

export const newHistoryId = (): string => `${Date.now().toString(36).padStart(9, '0')}-${randomBytes(8).toString('hex')}`;

export async function openEtcdPolicyStore(options: EtcdStoreOptions): Promise<EtcdPolicyStore> {
  const logger = (options.logger ?? silentLogger).child({ component: 'store' });
  const prefix = options.prefix;
  const location = describeEtcd(options);
  const client = await connectEtcd(options);
  const key = (suffix: string) => `${prefix}${suffix}`;

  const policies = new Map<string, Held>();
  let history: HistoryEntry[] = [];
  let base = 0;
  /** The etcd revision the view has reached. */
  let seen = 0;
  /** The store revision users see: base + the last commit's etcd revision. */
  let storeRevision = 0;
  const listeners = new Set<ChangeListener>();
  const claimed = createSourceClaims();
  const progress = new Set<() => void>();
  let closed = false;
  let etcdOk = false;
  let etcdReason: string | undefined = `etcd at ${location} not reached yet`;
  let watchConnected = false;
  let watcher: Watcher | undefined;

  const announce = (change: StoreChange) => {
    for (const listener of listeners) {
      try {
        listener(change);
      } catch (error) {
        logger.error('store: change listener failed', { error });
      }
    }
  };
  const notifyProgress = () => {
    for (const waiter of [...progress]) waiter();
  };

  const historyEntries = (record: HistoryRecord, createRevision: number): HistoryEntry[] => {
    const revision = record.storeRevision ?? base + createRevision;
    return record.changes.map((c) => ({
      storeRevision: revision,
      at: record.at,
      action: c.action,
      name: c.name,
      revision: c.revision ?? revision,
      client: record.client,
      source: c.source,
      ...(c.spec ? { spec: c.spec } : {}),
    }));
  };
  const sortHistory = () => history.sort((a, b) => a.storeRevision - b.storeRevision);

  /** Loads everything under the prefix (one revision); announces what differs from the view. */
  async function load(): Promise<number> {
    const { kvs, revision } = await rangeAll(client, prefix);
    const loaded = new Map<string, Held>();
    const loadedHistory: HistoryEntry[] = [];
    let newBase = 0;
    let last = 0;
    const meta = kvs.find((kv) => kv.key.toString() === key(META_KEY));
    if (meta) {
      const decoded = decodeMeta(meta.value.toString());
      if (!decoded) throw new StoreError(`${location}: key ${key(META_KEY)} does not hold egress-xds metadata; is --etcd-prefix shared with another program?`, key(META_KEY));
      newBase = decoded.base;
      last = Math.max(last, Number(meta.mod_revision));
    }
    base = newBase;
    for (const kv of kvs) {
      const name = kv.key.toString().slice(prefix.length);
      if (name.startsWith(POLICIES)) {
        const policyName = name.slice(POLICIES.length);
        const record = decodePolicy(policyName, kv.value.toString());
        const mod = Number(kv.mod_revision);
        last = Math.max(last, mod);
        if (!record) {
          logger.error('store: ignoring a policy key that does not hold an egress-xds policy', { key: kv.key.toString() });
          continue;
        }
        loaded.set(policyName, { policy: { ...record, revision: base + mod }, mod });
      } else if (name.startsWith(HISTORY)) {
        const record = decodeHistory(kv.value.toString());
        last = Math.max(last, Number(kv.mod_revision));
        if (!record) {
          logger.error('store: ignoring a history key that does not hold an egress-xds commit', { key: kv.key.toString() });
          continue;
        }
        loadedHistory.push(...historyEntries(record, Number(kv.create_revision)));
      }
    }
    const puts: StoredPolicy[] = [];
    const deletes: string[] = [];
    for (const [name, held] of loaded) if (policies.get(name)?.mod !== held.mod) puts.push(held.policy);
    for (const name of policies.keys()) if (!loaded.has(name)) deletes.push(name);
    policies.clear();
    for (const [name, held] of loaded) policies.set(name, held);
    history = loadedHistory;
    sortHistory();
    seen = Math.max(seen, revision);
    storeRevision = Math.max(storeRevision, last === 0 ? 0 : base + last);
    if (puts.length > 0 || deletes.length > 0) announce({ revision: storeRevision, puts: puts.sort(byName), deletes: deletes.sort() });
    notifyProgress();
    return revision;
  }

  /** Folds the events of one watch response in, one change event per etcd revision. */
  function applyWatchResponse(response: IWatchResponse): void {
    let i = 0;
    const events = response.events;
    while (i < events.length) {
      const revision = Number(events[i]!.kv.mod_revision);
      let j = i;
      while (j < events.length && Number(events[j]!.kv.mod_revision) === revision) j++;
      if (revision > seen) applyRevision(revision, events.slice(i, j));
      i = j;
    }
    notifyProgress();
  }

  function applyRevision(revision: number, events: IWatchResponse['events']): void {
    const puts: StoredPolicy[] = [];
    const deletes: string[] = [];
    let touched = false;
    for (const event of events) {
      const name = event.kv.key.toString().slice(prefix.length);
      if (name === META_KEY) {
        const decoded = event.type === 'Put' ? decodeMeta(event.kv.value.toString()) : undefined;
        // A migration rewrote the prefix under us: reload all (rare; the revisions' base changed).
        if (decoded?.base !== base) setImmediate(() => void recover('the store metadata changed'));
        touched = true;
      } else if (name.startsWith(POLICIES)) {
        touched = true;
        const policyName = name.slice(POLICIES.length);
        if (event.type === 'Delete') {
          if (policies.delete(policyName)) deletes.push(policyName);
          continue;
        }
        const record = decodePolicy(policyName, event.kv.value.toString());
        if (!record) {
          logger.error('store: ignoring a policy key that does not hold an egress-xds policy', { key: event.kv.key.toString() });
          continue;
        }
        const held: Held = { policy: { ...record, revision: base + revision }, mod: revision };
        policies.set(policyName, held);
        puts.push(held.policy);
      } else if (name.startsWith(HISTORY) && event.type === 'Put') {
        touched = true;
        const record = decodeHistory(event.kv.value.toString());
        if (record) {
          history.push(...historyEntries(record, Number(event.kv.create_revision)));
          if (record.storeRevision !== undefined) sortHistory();
        }
      }
    }
    seen = revision;
    if (touched) storeRevision = Math.max(storeRevision, base + revision);
    if (puts.length > 0 || deletes.length > 0) announce({ revision: base + revision, puts, deletes });
  }

  function startWatch(): void {
    if (closed) return;
    const w = client
      .watch()
      .inRange(new Range(key(HISTORY), key('policies0')))
      .startRevision(String(seen + 1))
      .watcher();
    watcher = w;
    w.on('connected', () => {
      watchConnected = true;
    });
    w.on('data', (response: IWatchResponse) => {
      if (w !== watcher) return;
      watchConnected = true;
      applyWatchResponse(response);
    });
    w.on('disconnected', (error: Error) => {
      if (w !== watcher) return;
      // etcd3 reconnects by itself and resumes after the last revision delivered.
      if (watchConnected) logger.warn('store: lost the etcd watch; resuming when etcd answers', { error: error.message });
      watchConnected = false;
    });
    w.on('error', (error: Error) => {
      if (w !== watcher) return;
      // The watch was cancelled by etcd: most often it asked for a revision compacted away.
      watchConnected = false;
      watcher = undefined; // etcd3 has dropped it already: nothing to cancel
      void recover(`the watch was cancelled by etcd, most often because it fell behind a compaction (${error.message})`);
    });
  }

  let recovering: Promise<void> | undefined;
  /** Drops the watch, reloads the prefix (retrying while etcd is away), and watches again after it. */
  function recover(why: string): Promise<void> {
    recovering ??= (async () => {
      logger.warn('store: reloading the whole prefix from etcd', { why, fromRevision: seen });
      const old = watcher;
      watcher = undefined;
      await cancelWatcher(old);
      for (let attempt = 0; !closed; attempt++) {
        try {
          const revision = await load();
          logger.info('store: reloaded from etcd', { revision, policies: policies.size });
          break;
        } catch (error) {
          etcdOk = false;
          etcdReason = describeEtcdError(location, error);
          await new Promise((resolve) => setTimeout(resolve, Math.min(200 * 2 ** attempt, 2000)).unref?.());
        }
      }
      startWatch();
      recovering = undefined;
    })();
    return recovering;
  }

  /** Resolves when the predicate holds (checked after every watch batch); false after timeoutMs. */
  function waitFor(predicate: () => boolean, timeoutMs: number): Promise<boolean> {
    if (predicate()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = () => {
        if (!predicate()) return;
        done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (value: boolean) => {
        clearTimeout(timer);
        progress.delete(check);
        resolve(value);
      };
      progress.add(check);
    });
  }

  const view: PolicyView = {
    get: (name) => policies.get(name)?.policy,
    // Revisions come from etcd: a new change gets one above anything before it whatever this says.
    lastRevision: (name) => policies.get(name)?.policy.revision ?? 0,
    isClaimed: (source) => claimed.has(source),
  };

  const unavailable = (error: unknown, maybe: boolean) =>
    new StoreError(
      `${describeEtcdError(location, error)}; ${maybe ? 'the change may or may not have been committed: read it back before retrying' : 'nothing was changed'}`,
      location,
      { cause: error },
    );

  /**
   * Plans against the view and commits in one txn guarded by the mod revision
   * of every key the plan touched; on a lost race, waits for the view to show
   * the winner and plans again. Resolves once the commit is in this replica's view.
   */
  async function commit(
    planFor: () => Plan,
    client_: string,
  ): Promise<{ ok: true; changes: PlannedChange[]; revision: number } | { ok: false; plan: Plan & { ok: false } }> {
    if (closed) throw new StoreError('the store is closed', location);
    if (recovering && !(await within(recovering, CATCH_UP_MS))) throw reloadingError();
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const plan = planFor();
      if (!plan.ok) return { ok: false, plan };
      if (plan.changes.length === 0) return { ok: true, changes: [], revision: storeRevision };
      const expected = plan.changes.map((c) => ({ name: c.name, mod: policies.get(c.name)?.mod ?? 0 }));
      const at = new Date().toISOString();
      const ops: IOperation[] = plan.changes.map((c) =>
        c.action === 'put' ? client.put(key(POLICIES + c.name)).value(JSON.stringify(policyRecordOf(c.name, c.spec!, c.source, at))) : client.delete().key(key(POLICIES + c.name)),
      );
      const record: HistoryRecord = {
        at,
        client: client_,
        changes: plan.changes.map((c) => ({ action: c.action, name: c.name, source: c.source, ...(c.spec ? { spec: c.spec } : {}) })),
      };
      ops.push(client.put(key(HISTORY + newHistoryId())).value(JSON.stringify(record)));
      let txn = client.if(key(POLICIES + expected[0]!.name), 'Mod', '==', expected[0]!.mod);
      for (const e of expected.slice(1)) txn = txn.and(key(POLICIES + e.name), 'Mod', '==', e.mod);
      let result;
      try {
        result = await txn.then(...ops).commit();
      } catch (error) {
        // A deadline may pass after etcd applied the txn: the outcome is unknown.
        const maybe = /deadline|timeout|cancel/i.test(String((error as Error)?.message));
        etcdOk = false;
        etcdReason = describeEtcdError(location, error);
        throw unavailable(error, maybe);
      }
      const revision = Number(result.header.revision);
      if (result.succeeded) {
        if (!(await waitFor(() => seen >= revision, CATCH_UP_MS))) {
          logger.warn('store: the watch did not deliver a committed write in time; reloading', { revision });
          // Committed either way: answer now rather than wait on a reload that may wait on etcd.
          await within(recover('a committed write did not arrive through the watch'), CATCH_UP_MS);
        }
        return { ok: true, changes: plan.changes, revision: base + revision };
      }
      // Another replica moved one of the keys: wait until the view shows it, then plan again.
      const moved = () => expected.some((e) => (policies.get(e.name)?.mod ?? 0) !== e.mod) || seen >= revision;
      if (!(await waitFor(moved, CATCH_UP_MS)) && !(await within(recover('a lost write race did not show through the watch'), CATCH_UP_MS))) {
        throw reloadingError();
      }
    }
    throw new StoreError(`${location}: gave up after ${MAX_ATTEMPTS} attempts; other replicas kept changing the same policies`, location);
  }

  /** True if the promise settled within ms (a reload retries for as long as etcd is away). */
  async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const settled = await Promise.race([promise.then(() => true, () => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]);
    clearTimeout(timer);
    return settled;
  }
  const reloadingError = () =>
    new StoreError(`${etcdReason ?? `etcd at ${location} is unavailable`}; this replica is reloading its view from etcd; nothing was changed`, location);

  async function single(name: string, planFor: () => Plan, client_: string): Promise<WriteResult> {
    const outcome = await commit(planFor, client_);
    if (!outcome.ok) return { ok: false, error: { code: outcome.plan.error.code, message: outcome.plan.error.message } };
    if (outcome.changes.length === 0) return { ok: true, value: { name, revision: policies.get(name)!.policy.revision, storeRevision, changed: false } };
    return { ok: true, value: { name, revision: outcome.revision, storeRevision: outcome.revision, changed: true } };
  }

  // The first load: a server must not start on an etcd it cannot read.
  try {
    await load();
    etcdOk = true;
    etcdReason = undefined;
  } catch (error) {
    client.close();
    if (error instanceof StoreError) throw error;
    throw new StoreError(`cannot load policies: ${describeEtcdError(location, error)}`, location, { cause: error });
  }
  startWatch();

  // A cheap read, so /readyz and the 503 message know about etcd before a write finds out.
  let probing = false;
  const probe = setInterval(() => {
    if (probing || closed) return;
    probing = true;
    client
      .get(key(META_KEY))
      .options({ deadline: Date.now() + (options.callTimeoutMs ?? 5000) })
      .then(
        () => {
          if (!etcdOk) logger.info('store: etcd answers again', { location });
          etcdOk = true;
          etcdReason = undefined;
        },
        (error: unknown) => {
          if (etcdOk) logger.error('store: etcd does not answer; serving the last state, refusing writes', { location, error });
          etcdOk = false;
          etcdReason = describeEtcdError(location, error);
        },
      )
      .finally(() => {
        probing = false;
      });
  }, options.probeMs ?? 1000);
  probe.unref();
  logger.info('store: opened', { location, revision: storeRevision, policies: policies.size });

  return {
    location,
    prefix,
    client,
    get revision() {
      return storeRevision;
    },
    get etcdRevision() {
      return seen;
    },
    health: () =>
      etcdOk && watchConnected && !recovering
        ? { ok: true }
        : { ok: false, reason: etcdReason ?? (recovering ? `reloading from etcd at ${location}` : `the watch on etcd at ${location} is not connected`) },
    reload: () => recover('asked to reload'),
    list: () => [...policies.values()].map((h) => h.policy).sort(byName),
    count: () => policies.size,
    get: (name) => policies.get(name)?.policy,
    put: (name, spec, options) => single(name, () => planPut(view, name, spec, options), options.client),
    delete: (name, options) => single(name, () => planDelete(view, name, options), options.client),
    async apply(changes, options) {
      const outcome = await commit(() => ({ ok: true, changes: planApply(view, changes, options.source) }), options.client);
      if (!outcome.ok) throw new Error('unreachable: apply has no refusals');
      return { storeRevision: outcome.changes.length > 0 ? outcome.revision : storeRevision, changed: outcome.changes.map((c) => c.name) };
    },
    async batch(request, options): Promise<BatchResult> {
      const outcome = await commit(() => planBatch(view, request), options.client);
      if (!outcome.ok) return outcome.plan;
      return { ok: true, value: { storeRevision: outcome.changes.length > 0 ? outcome.revision : storeRevision, changed: outcome.changes.map((c) => c.name) } };
    },
    history: async (query) => historyPage(history, query),
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    claimSource: (source) => claimed.claim(source),
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(probe);
      const w = watcher;
      watcher = undefined;
      await cancelWatcher(w);
      client.close();
      logger.info('store: closed', { location, revision: storeRevision });
    },
  };
}
