// The control plane as the benchmarks run it: ADS and the admin API on loopback, free ports,
// a fresh data dir, no log lines. Each benchmark adds only the options it measures.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../src/log.js';
import { type ControlPlane, type ControlPlaneOptions, startControlPlane } from '../src/server/controlPlane.js';

/**
 * warmedUp (default true): returns once the compile workers have warmed up
 * (src/snapshot/compileWarmup.ts), so what a benchmark measures from here (an idle RSS to
 * subtract, CPU per push) is the steady server's, not the warm-up's ~33 MiB and ~0.5 s of
 * CPU per worker. bench/hostServer.ts measures the first connect both ways itself.
 */
export async function startBenchControlPlane(
  name: string,
  options: Partial<ControlPlaneOptions> = {},
  { warmedUp = true }: { readonly warmedUp?: boolean } = {},
): Promise<{ cp: ControlPlane; dataDir: string }> {
  const dataDir = await mkdtemp(join(tmpdir(), `egress-xds-${name}-`));
  const cp = await startControlPlane({ xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir, logger: silentLogger, ...options });
  if (warmedUp) await cp.compilePool?.warmed();
  return { cp, dataDir };
}
