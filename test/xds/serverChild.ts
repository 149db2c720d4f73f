// The ADS server of test/xds/harness.ts in a process of its own, so a test can
// measure its memory (RSS) while clients misbehave, without counting its own
// clients. Driven over IPC: {setPolicies: N, tag} gives N policies (one
// cluster each, every policy's SNI in the listener) with the tag in one SNI;
// {status} answers RSS, open streams and the refusal counters. Limits come as
// JSON in argv[2].
import { getHeapSpaceStatistics } from 'node:v8';
import { createMetrics } from '../../src/metrics/metrics.js';
import { silentLogger } from '../../src/log.js';
import { SnapshotCache } from '../../src/snapshot/cache.js';
import { NodeRegistry } from '../../src/xds/nodeRegistry.js';
import { startXdsServer } from '../../src/xds/server.js';
import { policy, testCompiler } from './harness.js';

export type ChildCommand = { setPolicies: number; tag: string } | { status: true } | { stop: true };

export interface ChildStatus {
  readonly rssBytes: number;
  /** One full set of responses (all types) for a node, in bytes. */
  readonly snapshotBytes: number;
  readonly openStreams: number;
  readonly registered: number;
  readonly refused: Record<string, number>;
  /** The Listener version of the current snapshot. */
  readonly listenerVersion: string;
  /** V8 heap in use (code aside) right after a full collection: what is retained (only when run with --expose-gc). */
  readonly heapAfterGcBytes?: number;
}

export const manyPolicies = (count: number, tag: string) =>
  Array.from({ length: count }, (_, i) => policy(`p${String(i).padStart(5, '0')}`, [i === 0 ? `${tag}.tag.example` : `host-${i}.a-rather-long-name-to-make-the-listener-large.example`]));

const cache = new SnapshotCache(testCompiler);
cache.setPolicies(manyPolicies(1, 'start'));
const registry = new NodeRegistry(cache);
const metrics = createMetrics();
const limits = JSON.parse(process.argv[2] ?? '{}') as Record<string, number>;
const server = await startXdsServer({ source: cache, registry, metrics, logger: silentLogger }, '127.0.0.1:0', { limits });

/** The bytes of one full set of responses (every type) a node receives now. */
function snapshotBytes(): number {
  const snapshot = cache.snapshotFor('any-node');
  let total = 0;
  for (const typeUrl of snapshot.typeUrls()) for (const resource of snapshot.resourceSet(typeUrl)!.items.values()) total += resource.bytes.length;
  return total;
}

const collect = (globalThis as { gc?: () => void }).gc;
/** The V8 heap in use but for code (compiled and optimised lazily as functions get hot: not what a push retains). */
const dataHeapUsed = () => getHeapSpaceStatistics().reduce((sum, space) => (space.space_name.startsWith('code') ? sum : sum + space.space_used_size), 0);

async function status(): Promise<ChildStatus> {
  const refused = Object.fromEntries((await metrics.streamsRefused.get()).values.map((v) => [String(v.labels.reason), v.value]));
  return {
    rssBytes: process.memoryUsage.rss(),
    openStreams: server.openStreams(),
    registered: registry.streamCount(),
    refused,
    listenerVersion: cache.snapshotFor('any-node').version('type.googleapis.com/envoy.config.listener.v3.Listener') ?? '',
    snapshotBytes: snapshotBytes(),
    ...(collect ? { heapAfterGcBytes: (collect(), dataHeapUsed()) } : {}),
  };
}

process.on('message', (command: ChildCommand) => {
  void (async () => {
    if ('setPolicies' in command) {
      cache.setPolicies(manyPolicies(command.setPolicies, command.tag));
      process.send!({ done: true });
    } else if ('status' in command) {
      process.send!(await status());
    } else {
      await server.close();
      process.exit(0);
    }
  })();
});
process.send!({ port: server.port });
