// The control plane assembled: store → snapshot cache → ADS server, and the
// admin API beside them. `serve`, the end-to-end tests and the benchmark all
// start it through here, so they run the same thing.
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { startFleetStatus, type FleetStatus } from '../cluster/fleetStatus.js';
import { checkConnection, checkForwardHttp, checkForwardTls, type CompileOptions } from '../compile/index.js';
import type { ControlPlaneView } from '../admin/controlPlaneView.js';
import { isLoopbackHost, requireTokenUnlessLoopback } from '../admin/auth.js';
import { createAdminServer } from '../admin/server.js';
import type { Logger } from '../log.js';
import { createMetrics, type Metrics } from '../metrics/metrics.js';
import type { Policy, PolicySpec, StoredPolicy } from '../policy/model.js';
import { encodeResource } from '../snapshot/encodedResource.js';
import { SnapshotCache } from '../snapshot/cache.js';
import { egressGroupCompiler, type CompiledEgressGroup } from '../snapshot/egressGroups.js';
import { CompilePool, defaultCompileWorkers } from '../snapshot/compilePool.js';
import { PushScheduler, type PushTiming } from '../snapshot/pushScheduler.js';
import { openPolicyStore, type PolicyStore, type StoreTuning } from '../store/policyStore.js';
import { watchPolicyFile, type PolicyFileWatcher } from '../store/policyFileWatch.js';
import { openStoreBackend, type StoreBackend } from '../store/storeBackend.js';
import type { EtcdPolicyStore } from '../store/etcdStore.js';
import { NodeRegistry } from '../xds/nodeRegistry.js';
import { accessLogService } from '../als/alsService.js';
import { DenialLog, type DenialLogOptions } from '../denials/denialLog.js';
import type { DenialsView } from '../admin/denialRoutes.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import { startXdsServer, type XdsServer, type XdsTls } from '../xds/server.js';
import type { XdsLimits } from '../xds/limits.js';
import type { NodeIdentityRule } from '../xds/nodeIdentity.js';

/** Seed 002 §6.6: GitHub only, for the microVM range. Stored on a first start with no policy file. */
export const EMBEDDED_DEFAULT_POLICY: { readonly name: string; readonly spec: PolicySpec } = {
  name: 'github',
  spec: { sources: ['172.31.0.0/16'], allow: { sni: ['github.com', 'www.github.com'] } },
};

export interface ControlPlaneOptions {
  /** host:port for ADS, e.g. "0.0.0.0:18000" (port 0 picks a free one). */
  readonly xdsAddress: string;
  /** Serve ADS over TLS (mTLS with a client CA); plaintext when absent. */
  readonly xdsTls?: XdsTls;
  /** Bounds of the ADS server (src/xds/limits.ts); defaults when absent. */
  readonly xdsLimits?: Partial<XdsLimits>;
  /** With xdsTls.clientCa: where the node id must appear in the client certificate (default: none). */
  readonly nodeIdentity?: NodeIdentityRule;
  readonly adminHost: string;
  readonly adminPort: number;
  readonly dataDir: string;
  /** History retention and compaction (src/store/policyStore.ts); defaults when absent. */
  readonly storeOptions?: StoreTuning;
  /** Where the policies live; default: the file store in dataDir. */
  readonly storeBackend?: StoreBackend;
  /** This replica's name in the fleet status (etcd store only); default HOSTNAME:XDS_PORT. */
  readonly replicaId?: string;
  readonly policyFile?: string;
  readonly adminToken?: string;
  /** Host names the admin API answers to besides its address (--admin-allowed-host). */
  readonly adminAllowedHosts?: readonly string[];
  /** Store EMBEDDED_DEFAULT_POLICY when the store has never been written. */
  readonly embeddedDefault?: boolean;
  readonly compile?: CompileOptions;
  /** Coalescing of changes into pushes (default: 10 ms window, 100 ms at most). */
  readonly pushTiming?: PushTiming;
  /** Threads that compile node groups; 0 compiles on the event loop (default: cores - 1, 1 to 4). */
  readonly compileWorkers?: number;
  /** Compile workers warm up on a synthetic host before their first request (default false; src/snapshot/compileWarmup.ts, README). */
  readonly compileWarmup?: boolean;
  readonly logger: Logger;
  readonly metrics?: Metrics;
  /** The denial log's bounds and optional file (src/denials); defaults when absent. */
  readonly denials?: Pick<DenialLogOptions, 'buffer' | 'file' | 'metricNodes'>;
}

export interface ControlPlane {
  readonly xdsPort: number;
  readonly admin: AddressInfo;
  readonly store: PolicyStore;
  readonly cache: SnapshotCache<CompiledEgressGroup>;
  readonly registry: NodeRegistry;
  readonly metrics: Metrics;
  readonly denials: DenialLog;
  /** Store commits → coalesced cache changes; idle() once every commit is served. */
  readonly push: PushScheduler;
  /** The compile workers, when there are any (benchmarks and tests wait for their warm-up). */
  readonly compilePool?: CompilePool;
  close(): Promise<void>;
}

export class StartupError extends Error {}

/** What the cache compiles from: the policy itself, not its bookkeeping (revision, time, source). */
const policyOf = ({ name, sources, nodes, upstream, mode, log, allow }: StoredPolicy): Policy => ({
  name,
  ...(sources ? { sources } : {}),
  ...(nodes ? { nodes } : {}),
  ...(upstream ? { upstream } : {}),
  ...(mode ? { mode } : {}),
  ...(log ? { log } : {}),
  allow,
});

async function listening<T>(what: string, address: string, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error);
    const hint = /EADDRINUSE|in use/i.test(text) ? ' (address already in use: is another egress-xds running?)' : '';
    throw new StartupError(`cannot listen for ${what} on ${address}: ${text}${hint}`);
  }
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const { logger } = options;
  const metrics = options.metrics ?? createMetrics({ defaultMetrics: true });
  const tokenRule = requireTokenUnlessLoopback(options.adminHost, options.adminToken);
  if (!tokenRule.ok) throw new StartupError(`${tokenRule.error.field}: ${tokenRule.error.message}`);

  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  const close = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  };
  try {
    // The compile workers first: they warm up (src/snapshot/compileWarmup.ts) while the store
    // loads, so a restart's first Envoys are more likely to find them warm.
    const workers = options.compileWorkers ?? defaultCompileWorkers();
    const pool = workers > 0 ? new CompilePool(options.compile ?? {}, workers, { warmup: options.compileWarmup === true }) : undefined;
    if (pool) cleanups.push(() => pool.close());
    const store = options.storeBackend
      ? await openStoreBackend(options.storeBackend, logger, options.storeOptions)
      : await openPolicyStore(options.dataDir, { logger, ...options.storeOptions });
    cleanups.push(() => store.close());
    // Sampled, not pushed: etcd's health changes without any write.
    metrics.storeReady.set(store.health?.().ok === false ? 0 : 1);
    const storeReadyTimer = setInterval(() => metrics.storeReady.set(store.health?.().ok === false ? 0 : 1), 1000);
    storeReadyTimer.unref();
    cleanups.push(() => clearInterval(storeReadyTimer));

    if (options.embeddedDefault && !options.policyFile && store.revision === 0) {
      await store.put(EMBEDDED_DEFAULT_POLICY.name, EMBEDDED_DEFAULT_POLICY.spec, { client: 'egress-xds:embedded-default' });
      logger.info('empty store: stored the embedded default policy (seed 002 §6.6)', { policy: EMBEDDED_DEFAULT_POLICY.name });
    }

    const compiler = egressGroupCompiler(options.compile);
    const cache = new SnapshotCache(compiler);
    // No Envoy is connected yet: this only indexes the policies (groups compile as nodes connect).
    cache.setPolicies(store.list().map(policyOf));
    // Newly connected nodes' groups compile in the workers too (a reconnection storm after a restart).
    if (pool) cache.useBuilder(pool.build);
    const compileHere = async (sets: readonly (readonly Policy[])[]) =>
      sets.map((policies) => compiler(policies).resources.map((r) => encodeResource(r.typeUrl, r.name, r.json)));
    const push = new PushScheduler(cache, pool?.build ?? compileHere, logger, options.pushTiming, store.revision);
    cleanups.push(() => push.stop());
    cleanups.push(
      // The store's 200 has already been decided (durable); pushing happens after, coalesced.
      store.onChange((change) => push.enqueue({ revision: change.revision, puts: change.puts.map(policyOf), deletes: change.deletes })),
    );

    let watcher: PolicyFileWatcher | undefined;
    if (options.policyFile) {
      watcher = await watchPolicyFile({ store, path: options.policyFile, logger });
      cleanups.push(() => watcher?.close());
    }

    const registry = new NodeRegistry(cache, () => ({ latest: push.latestRevision, served: push.servedRevision }));
    const denialLogger = logger.child({ component: 'denials' });
    const denials = await DenialLog.open({ ...options.denials, metrics, onFileError: (error) => denialLogger.warn('denial log file: write failed', { error }) }).catch((error: Error) => {
      throw new StartupError(`cannot open the denial log: ${error.message}`);
    });
    cleanups.push(() => denials.close());
    const als = accessLogService({
      ingest: (records) => denials.ingest(records),
      // The revision whose state the node has acknowledged, when it is connected over ADS; else the store's.
      revision: (nodeId) => String(registry.acknowledgedRevision(nodeId) ?? store.revision),
      listenerVersion: (nodeId) => registry.ackedVersion(nodeId, TypeUrl.Listener),
      metrics,
      logger: denialLogger,
    });
    const xds: XdsServer = await listening('xDS', options.xdsAddress, () =>
      startXdsServer({ source: cache, registry, metrics, logger: logger.child({ component: 'xds' }) }, options.xdsAddress, {
        services: [als],
        ...(options.xdsTls ? { tls: options.xdsTls } : {}),
        ...(options.xdsLimits ? { limits: options.xdsLimits } : {}),
        ...(options.nodeIdentity ? { nodeIdentity: options.nodeIdentity } : {}),
      }),
    );
    if (!options.xdsTls && !isLoopbackHost(options.xdsAddress.replace(/:\d+$/, '').replace(/^\[|\]$/g, ''))) {
      logger.warn('xDS is served in plaintext off loopback: anyone who reaches it can read the allowlists and pose as any node; see --xds-tls-cert/--xds-tls-key/--xds-client-ca');
    }
    cleanups.push(() => xds.close());

    // With etcd, every replica lists every replica's nodes (src/cluster/fleetStatus.ts).
    let fleet: FleetStatus | undefined;
    if ('client' in store && 'prefix' in store) {
      const etcdStore = store as EtcdPolicyStore;
      fleet = await startFleetStatus({
        client: etcdStore.client,
        prefix: etcdStore.prefix,
        replicaId: options.replicaId ?? `${hostname()}:${xds.port}`,
        local: () => registry.list(),
        logger,
      });
      cleanups.push(() => fleet?.close());
    }

    const view: ControlPlaneView = {
      nodes: () => fleet?.nodes() ?? registry.list(),
      check: (nodeId, connection) => {
        const group = cache.groupForNode(nodeId);
        return checkConnection(group.compiled, group.policies, connection);
      },
      checkForward: (request) => {
        const group = cache.groupForNode(request.nodeId);
        return request.listener === 'forward-http'
          ? checkForwardHttp(group.compiled, group.policies, request, options.compile?.forwardProxy?.namePorts)
          : checkForwardTls(group.compiled, group.policies, request);
      },
      // The admin API listens only once the store is loaded and the cache holds its snapshot.
      // With etcd: not ready while etcd does not answer or the watch is down (Envoys are still served).
      ready: () => store.health?.().ok ?? true,
      notReadyReason: () => store.health?.().reason,
    };
    const suggestCompiler = egressGroupCompiler(options.compile);
    const denialsView: DenialsView = {
      log: denials,
      policiesFor: (nodeId) => cache.groupForNode(nodeId).policies,
      check: (nodeId, connections, extra) => {
        const group = cache.groupForNode(nodeId);
        // With a draft: compiled as the node would receive it, so the answer is Envoy's path, not only the intent.
        const policies = extra ? [...group.policies.filter((p) => p.name !== extra.name), extra] : group.policies;
        const compiled = extra ? suggestCompiler(policies) : group.compiled;
        return connections.map((connection) => checkConnection(compiled, policies, connection));
      },
    };
    const admin = createAdminServer({
      store, view, metrics, logger, denials: denialsView,
      ...(options.adminToken ? { token: options.adminToken } : {}),
      ...(options.adminAllowedHosts ? { allowedHosts: options.adminAllowedHosts } : {}),
    });
    const adminAddress = `${options.adminHost}:${options.adminPort}`;
    const adminInfo = await listening('the admin API', adminAddress, () => admin.listen(options.adminHost, options.adminPort));
    cleanups.push(() => admin.close());
    // Runs before the admin server closes (cleanups run in reverse): live streams end, so close need not wait for them.
    cleanups.push(() => denials.close());

    logger.info('egress-xds serving', {
      xds: `${options.xdsAddress.replace(/:\d+$/, '')}:${xds.port}`,
      xdsTransport: options.xdsTls ? (options.xdsTls.clientCa ? 'mTLS' : 'TLS') : 'plaintext',
      admin: `${adminInfo.address}:${adminInfo.port}`,
      store: store.location,
      policies: store.list().length,
      adminAuth: options.adminToken ? 'bearer token' : 'none (loopback only)',
    });
    return { xdsPort: xds.port, admin: adminInfo, store, cache, registry, metrics, denials, push, ...(pool && { compilePool: pool }), close };
  } catch (error) {
    await close();
    throw error;
  }
}
