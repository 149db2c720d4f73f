// A real ADS server on loopback over a real SnapshotCache, with a small
// compiler whose output depends visibly on the policies: the xDS layer is
// tested on its own (the real compiler has its own tests, and serve's
// end-to-end test wires both).
import type { Policy } from '../../src/policy/model.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { silentLogger } from '../../src/log.js';
import { SnapshotCache, type CompiledGroup, type GroupCompiler } from '../../src/snapshot/cache.js';
import { NodeRegistry } from '../../src/xds/nodeRegistry.js';
import { startXdsServer, type XdsServer, type XdsServerOptions } from '../../src/xds/server.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';

const tcpProxy = (cluster: string) => ({
  name: 'envoy.filters.network.tcp_proxy',
  typedConfig: { '@type': TypeUrl.TcpProxy, statPrefix: cluster, cluster },
});

/** One STATIC cluster per policy (so resources come and go), and a listener allowing every policy's SNI. */
export function testCompiler(policies: readonly Policy[]): CompiledGroup {
  const sni = [...new Set(policies.flatMap((p) => p.allow.sni))].sort();
  const staticCluster = (name: string, port: number) => ({
    name,
    type: 'STATIC',
    connectTimeout: '1s',
    loadAssignment: { clusterName: name, endpoints: [{ lbEndpoints: [{ endpoint: { address: { socketAddress: { address: '127.0.0.1', portValue: port } } } }] }] },
  });
  return {
    resources: [
      { typeUrl: TypeUrl.Cluster, name: 'reject_cluster', json: staticCluster('reject_cluster', 1) },
      ...policies.map((p) => ({ typeUrl: TypeUrl.Cluster, name: `policy_${p.name}`, json: staticCluster(`policy_${p.name}`, 1000) })),
      {
        typeUrl: TypeUrl.Listener,
        name: 'egress_tproxy',
        json: {
          name: 'egress_tproxy',
          address: { socketAddress: { address: '0.0.0.0', portValue: 15001 } },
          filterChains: sni.length ? [{ name: 'allow', filterChainMatch: { serverNames: sni }, filters: [tcpProxy('reject_cluster')] }] : [],
          defaultFilterChain: { name: 'deny', filters: [tcpProxy('reject_cluster')] },
        },
      },
    ],
  };
}

export const policy = (name: string, sni: string[], nodes?: string[]): Policy => ({ name, allow: { sni }, ...(nodes ? { nodes } : {}) });

export interface Harness {
  readonly address: string;
  readonly cache: SnapshotCache;
  readonly registry: NodeRegistry;
  readonly metrics: ReturnType<typeof createMetrics>;
  readonly server: XdsServer;
  readonly compileCalls: () => number;
  close(): Promise<void>;
}

/** The server over `compile`'s output (testCompiler unless a test brings its own, e.g. rdsCompiler). */
export async function startHarness(policies: Policy[], options: XdsServerOptions = {}, compile: GroupCompiler = testCompiler): Promise<Harness> {
  let calls = 0;
  const cache = new SnapshotCache((selected) => {
    calls += 1;
    return compile(selected);
  });
  cache.setPolicies(policies);
  const registry = new NodeRegistry(cache);
  const metrics = createMetrics();
  const server: XdsServer = await startXdsServer({ source: cache, registry, metrics, logger: silentLogger }, '127.0.0.1:0', options);
  return { address: `127.0.0.1:${server.port}`, cache, registry, metrics, server, compileCalls: () => calls, close: () => server.close() };
}
