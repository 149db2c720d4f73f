// What a one-name edit of one microVM's policy costs on the wire at N microVMs on one host:
// the bytes of the RouteConfiguration responses a state-of-the-world Envoy (a real grpc-js
// client holding its tables as Envoy does) is sent for it, beside the whole set of route
// tables (what every such edit sent before RDS went incremental in SotW), plus the
// server's CPU time from the edit until the client ACKed it.
// Run: node dist/bench/rdsEdit.js [microVMs=1000]
import { TypeUrl } from '../src/envoy/typeUrls.js';
import { silentLogger } from '../src/log.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { SnapshotCache } from '../src/snapshot/cache.js';
import { egressGroupCompiler } from '../src/snapshot/egressGroups.js';
import { NodeRegistry } from '../src/xds/nodeRegistry.js';
import { startXdsServer } from '../src/xds/server.js';
import { FakeEnvoy } from '../test/support/fakeEnvoy.js';
import { hostPolicies, withExtraName } from './hostScenario.js';

const RDS = TypeUrl.RouteConfiguration;

export async function rdsEditLine(microVms: number): Promise<string> {
  const policies = hostPolicies(microVms);
  const cache = new SnapshotCache(egressGroupCompiler());
  cache.setPolicies(policies);
  const server = await startXdsServer({ source: cache, registry: new NodeRegistry(cache), metrics: createMetrics(), logger: silentLogger }, '127.0.0.1:0');
  const envoy = new FakeEnvoy(`127.0.0.1:${server.port}`, { nodeId: 'host-1', variant: 'sotw' }).connect();
  try {
    await envoy.waitFor('every route table', () => envoy.configured() && envoy.routeNames.size > 0 && envoy.acceptedVersions.has(RDS), 120_000);
    const tables = envoy.state.get(RDS)!.size;
    const wholeSet = envoy.responsesOf(RDS).reduce((max, r) => Math.max(max, r.bytes), 0);
    const before = envoy.responses.length;
    const cpu = process.cpuUsage();
    const started = process.hrtime.bigint();
    cache.setPolicies(withExtraName(policies, 'vm-00042', 'extra.bench.example'));
    const target = cache.currentSnapshot('host-1')!.resourceSet(RDS)!.version;
    await envoy.waitFor('the edit ACKed', () => envoy.acceptedVersions.get(RDS) === target, 120_000);
    const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
    const used = process.cpuUsage(cpu);
    const sent = envoy.responses.slice(before);
    const rds = sent.filter((r) => r.typeUrl === RDS);
    const rdsBytes = rds.reduce((sum, r) => sum + r.bytes, 0);
    const otherBytes = sent.filter((r) => r.typeUrl !== RDS).reduce((sum, r) => sum + r.bytes, 0);
    return (
      `${microVms} microVMs, ${tables} route tables (whole set ${wholeSet.toLocaleString('en-US')} B): one-name edit sent ` +
      `${rds.length} RDS response(s), ${rds.reduce((n, r) => n + r.resources.size, 0)} table(s), ${rdsBytes.toLocaleString('en-US')} B ` +
      `(+ ${otherBytes.toLocaleString('en-US')} B of other types); edit to ACK ${wallMs.toFixed(0)} ms wall / ${((used.user + used.system) / 1000).toFixed(0)} ms CPU (client and server in one process)`
    );
  } finally {
    envoy.close();
    await server.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(await rdsEditLine(Number(process.argv[2] ?? 1000)));
}
