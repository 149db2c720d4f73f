// Fleet status across replicas: each replica publishes the Envoys connected to
// it (node id, versions sent/acked, NACKs) under PREFIX status/REPLICA/NODE,
// attached to a lease of its own, and watches everyone's. GET /v1/nodes on
// any replica then lists the whole fleet with the replica holding each node;
// when a replica dies its lease runs out and etcd deletes its entries, so they
// vanish from every other replica's list without anyone cleaning up.
// Publishing is periodic and only of what changed: the status moves on every
// push, and etcd must not see one write per ACK.
import { Range, type Etcd3, type IOperation, type IWatchResponse, type Lease, type Watcher } from 'etcd3';
import type { Logger } from '../log.js';
import { rangeAll } from '../store/etcdStore.js';
import type { NodeStatus } from '../xds/nodeStatus.js';

export const STATUS = 'status/';

export interface FleetNodeStatus extends NodeStatus {
  /** The replica whose ADS server this node is connected to. */
  readonly replica: string;
}

export interface FleetStatusOptions {
  readonly client: Etcd3;
  readonly prefix: string;
  readonly replicaId: string;
  /** This replica's nodes, now. */
  readonly local: () => NodeStatus[];
  readonly logger: Logger;
  /** How often changes are published (default 1 s). */
  readonly publishMs?: number;
  /** Lease TTL: how long a dead replica's nodes stay listed (default 10 s). */
  readonly ttlSeconds?: number;
}

export interface FleetStatus {
  /** Every replica's nodes; this replica's are live, the others' as last published. */
  nodes(): FleetNodeStatus[];
  /** Publishes now (tests, shutdown). */
  publish(): Promise<void>;
  close(): Promise<void>;
}

/** etcd refuses a txn of more than 128 operations by default. */
const OPS_PER_TXN = 100;

export async function startFleetStatus(options: FleetStatusOptions): Promise<FleetStatus> {
  const { client, replicaId } = options;
  const logger = options.logger.child({ component: 'fleet-status', replica: replicaId });
  const root = `${options.prefix}${STATUS}`;
  const own = `${root}${encodeURIComponent(replicaId)}/`;
  const ttl = options.ttlSeconds ?? 10;
  const remote = new Map<string, FleetNodeStatus>();
  /** key → value as last written under the current lease. */
  const published = new Map<string, string>();
  let closed = false;
  let lease: Lease = newLease();
  let watcher: Watcher | undefined;
  let seen = 0;

  function newLease(): Lease {
    const created = client.lease(ttl, { autoKeepAlive: true });
    created.on('lost', (error: Error) => {
      if (closed || created !== lease) return;
      logger.warn('fleet status: lease lost; publishing again under a new one', { error: error.message });
      published.clear();
      lease = newLease();
    });
    return created;
  }

  const decode = (text: string): FleetNodeStatus | undefined => {
    try {
      const value = JSON.parse(text) as FleetNodeStatus;
      return typeof value?.id === 'string' && typeof value.replica === 'string' && typeof value.resources === 'object' ? value : undefined;
    } catch {
      return undefined;
    }
  };

  function applyEvents(response: IWatchResponse): void {
    for (const event of response.events) {
      const key = event.kv.key.toString();
      seen = Math.max(seen, Number(event.kv.mod_revision));
      if (key.startsWith(own)) continue;
      if (event.type === 'Delete') remote.delete(key);
      else {
        const value = decode(event.kv.value.toString());
        if (value) remote.set(key, value);
      }
    }
  }

  async function load(): Promise<void> {
    const { kvs, revision } = await rangeAll(client, root);
    remote.clear();
    for (const kv of kvs) {
      const key = kv.key.toString();
      if (key.startsWith(own)) continue;
      const value = decode(kv.value.toString());
      if (value) remote.set(key, value);
    }
    seen = revision;
  }

  function watch(): void {
    if (closed) return;
    const w = client.watch().prefix(root).startRevision(String(seen + 1)).watcher();
    watcher = w;
    w.on('data', (response: IWatchResponse) => {
      if (w === watcher) applyEvents(response);
    });
    w.on('error', () => {
      // Cancelled (compacted past `seen`): reload and watch again, retrying while etcd is away.
      if (w !== watcher) return;
      watcher = undefined;
      void (async () => {
        for (let attempt = 0; !closed; attempt++) {
          try {
            await load();
            break;
          } catch {
            await new Promise((resolve) => setTimeout(resolve, Math.min(200 * 2 ** attempt, 2000)));
          }
        }
        watch();
      })();
    });
  }

  let publishing: Promise<void> | undefined;
  async function publishOnce(): Promise<void> {
    const wanted = new Map<string, string>();
    for (const node of options.local()) wanted.set(`${own}${encodeURIComponent(node.id)}`, JSON.stringify({ ...node, replica: replicaId }));
    const ops: { key: string; value?: string }[] = [];
    for (const [key, value] of wanted) if (published.get(key) !== value) ops.push({ key, value });
    for (const key of published.keys()) if (!wanted.has(key)) ops.push({ key });
    if (ops.length === 0) return;
    const leaseId = await lease.grant();
    const current = lease;
    for (let i = 0; i < ops.length; i += OPS_PER_TXN) {
      const chunk = ops.slice(i, i + OPS_PER_TXN);
      const operations: IOperation[] = chunk.map((op) => (op.value === undefined ? client.delete().key(op.key) : client.put(op.key).value(op.value).lease(leaseId)));
      // A txn with an always-true compare: several writes in one request.
      await client.if(own, 'Create', '>', -1).then(...operations).commit();
      if (current !== lease) return; // lost meanwhile: everything is published again under the new lease
      for (const op of chunk) {
        if (op.value === undefined) published.delete(op.key);
        else published.set(op.key, op.value);
      }
    }
  }
  const publish = (): Promise<void> => {
    publishing ??= publishOnce().finally(() => {
      publishing = undefined;
    });
    return publishing;
  };

  // A crashed replica with this id left entries under an old lease: take them over.
  await client.delete().prefix(own).catch(() => {});
  await load().catch((error: unknown) => logger.warn('fleet status: cannot read the other replicas yet', { error }));
  watch();
  const timer = setInterval(() => {
    if (!closed) publish().catch((error: unknown) => logger.debug('fleet status: publish failed; retrying', { error }));
  }, options.publishMs ?? 1000);
  timer.unref();

  return {
    nodes() {
      const all: FleetNodeStatus[] = options.local().map((node) => ({ ...node, replica: replicaId }));
      all.push(...remote.values());
      return all.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.replica < b.replica ? -1 : a.replica > b.replica ? 1 : 0));
    },
    publish,
    async close() {
      closed = true;
      clearInterval(timer);
      await publishing?.catch(() => {});
      const w = watcher;
      watcher = undefined;
      if (w) {
        w.removeAllListeners();
        w.on('error', () => {});
        await Promise.race([w.cancel().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 1000))]);
      }
      // Revoking deletes this replica's entries at once: a clean stop does not wait for the TTL.
      await Promise.race([lease.revoke().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 1000))]);
    },
  };
}
