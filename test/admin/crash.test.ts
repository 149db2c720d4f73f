// kill -9 the admin server while clients write through HTTP; every change
// that got a 200 must be served, at its revision, after a restart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { openPolicyStore } from '../../src/store/policyStore.js';
import { allHistory } from '../store/helpers.js';

const serverScript = fileURLToPath(new URL('./fixtures/adminServer.js', import.meta.url));

function start(dataDir: string): Promise<{ child: ChildProcess; url: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [serverScript, dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`server exited ${code} before listening`)));
    createInterface({ input: child.stdout! }).once('line', (line) => {
      child.removeAllListeners('exit');
      resolve({ child, url: `http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}` });
    });
  });
}

interface Ack {
  name: string;
  revision: number;
  sni?: string;
  deleted?: boolean;
}

test('crash test over HTTP: every 200 survives SIGKILL of the server', { timeout: 120_000 }, async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'egress-xds-http-crash-'));
  const acked: Ack[] = [];
  try {
    for (let round = 0; round < 6; round++) {
      const { child, url } = await start(dataDir);
      const exited = new Promise((resolve) => child.once('exit', resolve));
      let stop = false;
      const client = async (id: number) => {
        for (let i = 0; !stop; i++) {
          const name = `c${id}-p${i % 3}`;
          const del = i % 4 === 3;
          const sni = `r${round}-i${i}.c${id}.example.com`;
          try {
            const response = await fetch(`${url}/v1/policies/${name}`, {
              method: del ? 'DELETE' : 'PUT',
              headers: { 'content-type': 'application/json' },
              ...(del ? {} : { body: JSON.stringify({ allow: { sni: [sni] } }) }),
            });
            const body = (await response.json()) as { revision: number };
            if (response.status === 200) acked.push(del ? { name, revision: body.revision, deleted: true } : { name, revision: body.revision, sni });
          } catch {
            return; // the server is gone
          }
        }
      };
      const clients = [0, 1, 2, 3].map(client);
      // Kill mid-burst, but only once this round has had writes acknowledged (a loaded machine is slow to start).
      const before = acked.length;
      for (let waited = 0; acked.length - before < 5 && waited < 30_000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 200));
      child.kill('SIGKILL');
      await exited;
      stop = true;
      await Promise.all(clients);

      const store = await openPolicyStore(dataDir);
      try {
        const history = await allHistory(store);
        for (const ack of acked) {
          const entry = history.find((e) => e.name === ack.name && e.revision === ack.revision);
          assert.ok(entry, `acknowledged ${ack.deleted ? 'delete' : 'put'} of ${ack.name} at revision ${ack.revision} is missing`);
          assert.equal(entry.action, ack.deleted ? 'delete' : 'put');
          if (ack.sni) assert.deepEqual(entry.spec?.allow.sni, [ack.sni]);
        }
        // The newest acknowledged change of each policy is what is served, unless a later
        // (unacknowledged, in-flight) change of that policy also made it.
        const newest = new Map<string, Ack>();
        for (const ack of acked) if ((newest.get(ack.name)?.revision ?? 0) < ack.revision) newest.set(ack.name, ack);
        for (const [name, ack] of newest) {
          const policy = store.get(name);
          const served = policy?.revision ?? history.filter((e) => e.name === name).at(-1)?.revision;
          assert.ok(served !== undefined && served >= ack.revision, `${name}: served ${served}, acknowledged ${ack.revision}`);
          if (served === ack.revision) assert.deepEqual(policy?.allow.sni, ack.sni ? [ack.sni] : undefined);
        }
      } finally {
        await store.close();
      }
    }
    assert.ok(acked.length > 20, `only ${acked.length} changes acknowledged`);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
