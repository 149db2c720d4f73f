// What every real-Envoy test does around its Envoy: a free port, a bounded wait, starting
// Envoy from a bootstrap file with its output kept for failure messages, and stopping it.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

export const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

/** Polls `probe` until it returns a value (errors count as "not yet"), within `timeoutMs`. */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/**
 * Starts Envoy on `bootstrap`; its stdout and stderr go to `onOutput`. `baseId` (the admin
 * port does) lets several Envoys run on one machine without sharing memory segments.
 */
export function spawnEnvoy(bin: string, bootstrap: string, baseId: number | undefined, onOutput: (text: string) => void): ChildProcess {
  const args = ['-c', bootstrap, '--disable-hot-restart', '--log-level', 'info', ...(baseId !== undefined ? ['--base-id', String(baseId)] : [])];
  const envoy = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  envoy.stdout!.on('data', (d: Buffer) => onOutput(d.toString()));
  envoy.stderr!.on('data', (d: Buffer) => onOutput(d.toString()));
  return envoy;
}

/** SIGTERM to an Envoy this test started, and waits for it to exit. */
export async function stopEnvoy(envoy: ChildProcess | undefined): Promise<void> {
  if (!envoy?.pid || envoy.exitCode !== null) return;
  const exited = new Promise((r) => envoy.once('exit', r));
  envoy.kill('SIGTERM');
  await exited;
}
