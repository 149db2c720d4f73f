// The control plane for benchmarks, in a process of its own (as in production),
// so the benchmark's clients do not share its event loop. Prints its ports.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../src/log.js';
import { startControlPlane } from '../src/server/controlPlane.js';

const dataDir = await mkdtemp(join(tmpdir(), 'egress-xds-bench-'));
const cp = await startControlPlane({ xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir, embeddedDefault: true, logger: silentLogger });
process.stdout.write(`${JSON.stringify({ xds: cp.xdsPort, admin: cp.admin.port, dataDir })}\n`);
process.on('SIGTERM', () => {
  void cp.close().then(() => process.exit(0));
});
