// The control plane as the benchmarks run it: ADS and the admin API on loopback, free ports,
// a fresh data dir, no log lines. Each benchmark adds only the options it measures.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../src/log.js';
import { type ControlPlane, type ControlPlaneOptions, startControlPlane } from '../src/server/controlPlane.js';

export async function startBenchControlPlane(name: string, options: Partial<ControlPlaneOptions> = {}): Promise<{ cp: ControlPlane; dataDir: string }> {
  const dataDir = await mkdtemp(join(tmpdir(), `egress-xds-${name}-`));
  const cp = await startControlPlane({ xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir, logger: silentLogger, ...options });
  return { cp, dataDir };
}
