// A real admin server on 127.0.0.1 (port 0) over a real store in a temp dir,
// with a small in-test ControlPlaneView: the verdict the policies intend.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CheckResult, ControlPlaneView } from '../../src/admin/controlPlaneView.js';
import { createAdminServer, type AdminServer } from '../../src/admin/server.js';
import { createLogger } from '../../src/log.js';
import { createMetrics, type Metrics } from '../../src/metrics/metrics.js';
import type { Connection } from '../../src/policy/model.js';
import { policySelectsNode } from '../../src/policy/nodeSelector.js';
import { intendedVerdict } from '../../src/policy/verdict.js';
import type { NodeStatus } from '../../src/xds/nodeStatus.js';
import { openPolicyStore, type PolicyStore } from '../../src/store/policyStore.js';

export const NODES: NodeStatus[] = [
  {
    id: 'host-a',
    cluster: 'fleet',
    connectedAt: '2026-01-01T00:00:00.000Z',
    streams: 1,
    resources: { 'type.googleapis.com/envoy.config.listener.v3.Listener': { sent: 'v1', acked: 'v1' } },
  },
];

export class FakeView implements ControlPlaneView {
  isReady = true;
  constructor(private readonly store: PolicyStore) {}
  nodes(): NodeStatus[] {
    return NODES;
  }
  check(nodeId: string, connection: Connection): CheckResult {
    const policies = this.store.list().filter((p) => policySelectsNode(p, nodeId));
    const verdict = intendedVerdict(policies, connection);
    if (!verdict.policy) return { verdict: 'deny', filterChain: 'default' };
    // The route's new fields (path, upstream) pass through as given.
    const upstream = connection.serverName
      ? { kind: 'name' as const, address: `${connection.serverName}:${connection.destinationPort}` }
      : { kind: 'original-destination' as const, address: `[${connection.destinationIp}]:${connection.destinationPort}` };
    return { verdict: 'allow', policy: verdict.policy, filterChain: `allow-${verdict.policy}`, path: [`allow-${verdict.policy}`], upstream };
  }
  ready(): boolean {
    return this.isReady;
  }
}

export interface Harness {
  url: string;
  store: PolicyStore;
  view: FakeView;
  metrics: Metrics;
  server: AdminServer;
  logLines: string[];
  dataDir: string;
  request(method: string, path: string, options?: { body?: unknown; raw?: string; headers?: Record<string, string>; token?: string }): Promise<{
    status: number;
    headers: Headers;
    body: any;
    text: string;
  }>;
  /** Policies and history length: what must not move when a request is refused. */
  state(): Promise<{ list: unknown; history: number; revision: number }>;
  close(): Promise<void>;
}

export async function startHarness(options: { token?: string; bodyLimit?: number; allowedHosts?: string[]; listenHost?: string } = {}): Promise<Harness> {
  const root = await mkdtemp(join(tmpdir(), 'egress-xds-admin-'));
  const dataDir = join(root, 'data');
  const logLines: string[] = [];
  const logger = createLogger({ level: 'debug', write: (line) => logLines.push(line) });
  const store = await openPolicyStore(dataDir, { logger });
  const view = new FakeView(store);
  const metrics = createMetrics();
  const server = createAdminServer({ store, view, metrics, logger, ...(options.token ? { token: options.token } : {}), ...(options.bodyLimit ? { bodyLimit: options.bodyLimit } : {}), ...(options.allowedHosts ? { allowedHosts: options.allowedHosts } : {}) });
  const address = await server.listen(options.listenHost ?? '127.0.0.1', 0);
  const url = `http://127.0.0.1:${address.port}`;
  return {
    url, store, view, metrics, server, logLines, dataDir,
    async request(method, path, { body, raw, headers = {}, token } = {}) {
      const init: RequestInit = { method, headers: { ...headers } };
      const h = init.headers as Record<string, string>;
      if (token !== undefined) h.authorization = `Bearer ${token}`;
      if (body !== undefined) {
        init.body = JSON.stringify(body);
        h['content-type'] ??= 'application/json';
      } else if (raw !== undefined) {
        init.body = raw;
      }
      const response = await fetch(`${url}${path}`, init);
      const text = await response.text();
      let parsed: unknown;
      try {
        parsed = text === '' ? undefined : JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      return { status: response.status, headers: response.headers, body: parsed, text };
    },
    state: async () => ({ list: store.list(), history: (await store.history({ limit: 1000 })).entries.length, revision: store.revision }),
    async close() {
      await server.close();
      await store.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

export const GITHUB = { sources: ['172.31.0.0/16'], allow: { sni: ['github.com', 'www.github.com'] } };
