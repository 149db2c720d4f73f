// ALS ingest: how many access log records per second the control plane takes
// through the real gRPC service (strict decode, ring buffer, metrics), the
// event-loop delay meanwhile (what an ADS stream would wait), and the heap the
// denial buffer holds when full. Batches are encoded before the clock starts,
// as Envoy's access logger encodes them (~50 entries per 16 KiB buffer flush).
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as grpc from '@grpc/grpc-js';
import { silentLogger } from '../src/log.js';
import { startControlPlane } from '../src/server/controlPlane.js';
import { encodeProtoJson } from '../src/envoy/codec.js';
import { TypeUrl } from '../src/envoy/typeUrls.js';
import { accessLogServiceDefinition } from '../src/als/alsService.js';
import { ALS_LOG_NAME, TAG } from '../src/denials/record.js';

setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;

function batch(index: number, size: number, first: boolean): Buffer {
  const logEntry = Array.from({ length: size }, (_, i) => {
    const n = index * size + i;
    return {
      commonProperties: {
        downstreamRemoteAddress: { socketAddress: { address: `172.31.${(n >> 8) & 255}.${n & 255}`, portValue: 30000 + (n % 30000) } },
        downstreamLocalAddress: { socketAddress: { address: '93.184.216.34', portValue: 443 } },
        startTime: new Date(1_764_583_200_000 + n).toISOString(),
        customTags: { [TAG.verdict]: 'denied', [TAG.reason]: 'no-policy', [TAG.listener]: 'egress_tproxy', [TAG.chain]: 'reject' },
        filterStateObjects: { 'egress.sni': { '@type': TypeUrl.StringValue, value: `host${n % 5000}.example.com` } },
      },
      connectionProperties: { receivedBytes: '517' },
    };
  });
  return Buffer.from(encodeProtoJson(TypeUrl.StreamAccessLogsMessage, { ...(first ? { identifier: { node: { id: 'bench-node', cluster: 'bench' }, logName: ALS_LOG_NAME } } : {}), tcpLogs: { logEntry } }));
}

export interface AlsIngestResult {
  records: number;
  batch: number;
  recordsPerSecond: number;
  loopDelayP99Ms: number;
  bound: number;
  buffered: number;
  heapAtBoundMiB: number;
  bytesPerRecord: number;
}

export async function alsIngest(options: { records: number; batch: number; bound: number }): Promise<AlsIngestResult> {
  const dir = await mkdtemp(join(tmpdir(), 'egress-xds-bench-als-'));
  const cp = await startControlPlane({
    xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir: join(dir, 'data'), logger: silentLogger, compileWorkers: 0,
    denials: { buffer: { total: options.bound, perNode: options.bound } },
  });
  const Client = grpc.makeGenericClientConstructor(accessLogServiceDefinition, 'AccessLogService');
  const client = new Client(`127.0.0.1:${cp.xdsPort}`, grpc.credentials.createInsecure()) as unknown as { streamAccessLogs(cb: (e: unknown) => void): grpc.ClientWritableStream<Buffer> };
  const batches = options.records / options.batch;
  const encoded = Array.from({ length: Math.min(batches, 200) }, (_, i) => batch(i, options.batch, false));
  const first = batch(0, options.batch, true);
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  const started = process.hrtime.bigint();
  const done = new Promise<unknown>((resolve) => {
    const call = client.streamAccessLogs((error) => resolve(error));
    const write = (i: number): void => {
      while (i < batches) {
        const ok = call.write(i === 0 ? first : encoded[i % encoded.length]!);
        i += 1;
        if (!ok) {
          call.once('drain', () => write(i));
          return;
        }
      }
      call.end();
    };
    write(0);
  });
  const error = await done;
  if (error) throw error as Error;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  delay.disable();
  gc();
  const heapAfter = process.memoryUsage().heapUsed;
  const buffered = cp.denials.buffer.size();
  await cp.close();
  await rm(dir, { recursive: true, force: true });
  return {
    records: options.records,
    batch: options.batch,
    recordsPerSecond: options.records / seconds,
    loopDelayP99Ms: delay.percentile(99) / 1e6,
    bound: options.bound,
    buffered,
    heapAtBoundMiB: (heapAfter - heapBefore) / 2 ** 20,
    bytesPerRecord: (heapAfter - heapBefore) / buffered,
  };
}

/** The BENCHMARKS.md table. */
export async function alsIngestTable(runs: readonly { records: number; batch: number; bound: number }[]): Promise<string[]> {
  const lines = ['| records sent | entries per message | records/s | event-loop delay p99 | buffer bound | held | heap at the bound | per record |', '|---|---|---|---|---|---|---|---|'];
  for (const run of runs) {
    const r = await alsIngest(run);
    lines.push(`| ${r.records} | ${r.batch} | ${Math.round(r.recordsPerSecond)} | ${r.loopDelayP99Ms.toFixed(1)} ms | ${r.bound} | ${r.buffered} | ${r.heapAtBoundMiB.toFixed(1)} MiB | ${Math.round(r.bytesPerRecord)} B |`);
  }
  return lines;
}

// `node dist/bench/denials.js` runs this table alone.
if (import.meta.url === `file://${process.argv[1]}`) {
  for (const line of await alsIngestTable([{ records: 200_000, batch: 50, bound: 100_000 }, { records: 200_000, batch: 50, bound: 10_000 }])) console.log(line);
}
