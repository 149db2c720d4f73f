// kill -9 of `egress-xds serve` while admins write; after a restart, every change
// that got a 200 is what Envoy receives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { FakeEnvoy } from '../support/fakeEnvoy.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function serve(dataDir: string): Promise<{ child: ChildProcess; xds: number; admin: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, 'serve', '--data-dir', dataDir, '--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${log}`)), 10_000);
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      log += chunk;
      const line = log.split('\n').find((l) => l.includes('"egress-xds serving"'));
      if (!line) return;
      clearTimeout(timer);
      const record = JSON.parse(line) as { xds: string; admin: string };
      const port = (a: string) => Number(a.slice(a.lastIndexOf(':') + 1));
      resolve({ child, xds: port(record.xds), admin: port(record.admin) });
    });
  });
}

test('SIGKILL during writes: after restart Envoy receives every acknowledged change', { timeout: 90_000 }, async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'egress-xds-crash-serve-'));
  /** Newest acknowledged SNI per policy. */
  const acknowledged = new Map<string, { revision: number; sni: string }>();
  try {
    for (let round = 0; round < 3; round++) {
      const server = await serve(dataDir);
      let stop = false;
      let roundAcks = 0;
      const writer = async (id: number) => {
        for (let i = 0; !stop && i < 10_000; i++) {
          const name = `w${id}-p${i % 4}`;
          const sni = `r${round}-i${i}.w${id}.example.com`;
          try {
            const response = await fetch(`http://127.0.0.1:${server.admin}/v1/policies/${name}`, {
              method: 'PUT',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ allow: { sni: [sni] } }),
            });
            const body = (await response.json()) as { revision: number };
            if (response.status === 200) roundAcks++;
            if (response.status === 200 && (acknowledged.get(name)?.revision ?? 0) < body.revision) acknowledged.set(name, { revision: body.revision, sni });
          } catch {
            return; // killed
          }
        }
      };
      const writers = [0, 1, 2].map(writer);
      // Kill mid-burst, but only once this round has had writes acknowledged (a loaded machine is slow to start).
      for (let waited = 0; roundAcks < 8 && waited < 30_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 200));
      const exited = new Promise((resolve) => server.child.once('exit', resolve));
      server.child.kill('SIGKILL');
      await exited;
      stop = true;
      await Promise.all(writers);
    }
    assert.ok(acknowledged.size >= 6, `only ${acknowledged.size} policies acknowledged`);

    const server = await serve(dataDir);
    const envoy = new FakeEnvoy(`127.0.0.1:${server.xds}`, { nodeId: 'after-crash' }).connect();
    try {
      await envoy.waitFor('listener', () => envoy.state.has(TypeUrl.Listener));
      const listener = JSON.stringify(envoy.state.get(TypeUrl.Listener)!.get('egress_tproxy'));
      for (const [name, { revision, sni }] of acknowledged) {
        const stored = (await (await fetch(`http://127.0.0.1:${server.admin}/v1/policies/${name}`)).json()) as { revision: number; allow: { sni: string[] } };
        assert.ok(stored.revision >= revision, `${name}: revision ${stored.revision} < acknowledged ${revision}`);
        // A later write may have landed without its 200 reaching the client; then that one is served.
        if (stored.revision === revision) assert.deepEqual(stored.allow.sni, [sni]);
        assert.ok(listener.includes(`"${stored.allow.sni[0]}"`), `${name}: ${stored.allow.sni[0]} is not in the listener Envoy received`);
      }
    } finally {
      envoy.close();
      const exited = new Promise((resolve) => server.child.once('exit', resolve));
      server.child.kill('SIGTERM');
      await exited;
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
