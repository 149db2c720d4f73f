// The control plane assembled: store → snapshot cache → ADS server, and the
// admin API beside them. `serve`, the end-to-end tests and the benchmark all
// start it through here, so they run the same thing.
import type { AddressInfo } from 'node:net';
import { checkConnection, checkForwardHttp, checkForwardTls, type CompileOptions } from '../compile/index.js';
import type { ControlPlaneView } from '../admin/controlPlaneView.js';
import { isLoopbackHost, requireTokenUnlessLoopback } from '../admin/auth.js';
import { createAdminServer } from '../admin/server.js';
import type { Logger } from '../log.js';
import { createMetrics, type Metrics } from '../metrics/metrics.js';
import type { Policy, PolicySpec, StoredPolicy } from '../policy/model.js';
import { SnapshotCache } from '../snapshot/cache.js';
import { egressGroupCompiler, type CompiledEgressGroup } from '../snapshot/egressGroups.js';
import { openPolicyStore, type PolicyStore } from '../store/policyStore.js';
import { watchPolicyFile, type PolicyFileWatcher } from '../store/policyFileWatch.js';
import { NodeRegistry } from '../xds/nodeRegistry.js';
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
  readonly policyFile?: string;
  readonly adminToken?: string;
  /** Store EMBEDDED_DEFAULT_POLICY when the store has never been written. */
  readonly embeddedDefault?: boolean;
  readonly compile?: CompileOptions;
  readonly logger: Logger;
  readonly metrics?: Metrics;
}

export interface ControlPlane {
  readonly xdsPort: number;
  readonly admin: AddressInfo;
  readonly store: PolicyStore;
  readonly cache: SnapshotCache<CompiledEgressGroup>;
  readonly registry: NodeRegistry;
  readonly metrics: Metrics;
  close(): Promise<void>;
}

export class StartupError extends Error {}

/** What the cache compiles from: the policy itself, not its bookkeeping (revision, time, source). */
const policyOf = ({ name, sources, nodes, upstream, mode, allow }: StoredPolicy): Policy => ({
  name,
  ...(sources ? { sources } : {}),
  ...(nodes ? { nodes } : {}),
  ...(upstream ? { upstream } : {}),
  ...(mode ? { mode } : {}),
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
    const store = await openPolicyStore(options.dataDir, { logger });
    cleanups.push(() => store.close());

    if (options.embeddedDefault && !options.policyFile && store.revision === 0) {
      await store.put(EMBEDDED_DEFAULT_POLICY.name, EMBEDDED_DEFAULT_POLICY.spec, { client: 'egress-xds:embedded-default' });
      logger.info('empty store: stored the embedded default policy (seed 002 §6.6)', { policy: EMBEDDED_DEFAULT_POLICY.name });
    }

    const cache = new SnapshotCache(egressGroupCompiler(options.compile));
    cache.setPolicies(store.list().map(policyOf));
    cleanups.push(
      store.onChange((change) => {
        const policies = store.list();
        cache.setPolicies(policies.map(policyOf));
        logger.info('policy change applied', { revision: change.revision, policies: policies.length, nodeGroups: cache.groupCount() });
      }),
    );

    let watcher: PolicyFileWatcher | undefined;
    if (options.policyFile) {
      watcher = await watchPolicyFile({ store, path: options.policyFile, logger });
      cleanups.push(() => watcher?.close());
    }

    const registry = new NodeRegistry(cache);
    const xds: XdsServer = await listening('xDS', options.xdsAddress, () =>
      startXdsServer({ source: cache, registry, metrics, logger: logger.child({ component: 'xds' }) }, options.xdsAddress, {
        ...(options.xdsTls ? { tls: options.xdsTls } : {}),
        ...(options.xdsLimits ? { limits: options.xdsLimits } : {}),
        ...(options.nodeIdentity ? { nodeIdentity: options.nodeIdentity } : {}),
      }),
    );
    if (!options.xdsTls && !isLoopbackHost(options.xdsAddress.replace(/:\d+$/, '').replace(/^\[|\]$/g, ''))) {
      logger.warn('xDS is served in plaintext off loopback: anyone who reaches it can read the allowlists and pose as any node; see --xds-tls-cert/--xds-tls-key/--xds-client-ca');
    }
    cleanups.push(() => xds.close());

    const view: ControlPlaneView = {
      nodes: () => registry.list(),
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
      ready: () => true,
    };
    const admin = createAdminServer({ store, view, metrics, logger, ...(options.adminToken ? { token: options.adminToken } : {}) });
    const adminAddress = `${options.adminHost}:${options.adminPort}`;
    const adminInfo = await listening('the admin API', adminAddress, () => admin.listen(options.adminHost, options.adminPort));
    cleanups.push(() => admin.close());

    logger.info('egress-xds serving', {
      xds: `${options.xdsAddress.replace(/:\d+$/, '')}:${xds.port}`,
      xdsTransport: options.xdsTls ? (options.xdsTls.clientCa ? 'mTLS' : 'TLS') : 'plaintext',
      admin: `${adminInfo.address}:${adminInfo.port}`,
      store: store.location,
      policies: store.list().length,
      adminAuth: options.adminToken ? 'bearer token' : 'none (loopback only)',
    });
    return { xdsPort: xds.port, admin: adminInfo, store, cache, registry, metrics, close };
  } catch (error) {
    await close();
    throw error;
  }
}
