// The server for the write benchmarks, in a process of its own: "serve" is the
// whole control plane (store → snapshot cache → ADS, admin API); "admin" is the
// admin API over the store alone, which isolates the write path. Prints its
// admin port and pid; logs nothing (a log line per request would be measured too).
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAdminServer } from '../src/admin/server.js';
import { silentLogger } from '../src/log.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { startControlPlane } from '../src/server/controlPlane.js';
import { openPolicyStore } from '../src/store/policyStore.js';

const mode = process.argv[2] ?? 'serve';
const dataDir = await mkdtemp(join(tmpdir(), 'egress-xds-bench-store-'));
let close: () => Promise<void>;
let port: number;
if (mode === 'serve') {
  const cp = await startControlPlane({ xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir, logger: silentLogger });
  port = cp.admin.port;
  close = cp.close;
} else {
  const store = await openPolicyStore(dataDir);
  const view = { nodes: () => [], check: () => ({ verdict: 'deny' as const, filterChain: 'default' }), ready: () => true };
  const admin = createAdminServer({ store, view, metrics: createMetrics(), logger: silentLogger });
  port = (await admin.listen('127.0.0.1', 0)).port;
  close = async () => {
    await admin.close();
    await store.close();
  };
}
process.stdout.write(`${JSON.stringify({ admin: port, dataDir, pid: process.pid })}\n`);
process.on('SIGTERM', () => {
  void close().then(() => process.exit(0));
});
