// kill -9 at random moments while changes stream in; after each kill the store
// must reopen and serve every change that was acknowledged, at its revision.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { openPolicyStore } from '../../src/store/policyStore.js';
import { allHistory, tempDir } from './helpers.js';

const writer = fileURLToPath(new URL('./fixtures/crashWriter.js', import.meta.url));

interface Ack {
  action: 'put' | 'delete';
  name: string;
  /** Absent for a batch's changes: the batch answers with the store revision only. */
  revision?: number;
  storeRevision: number;
  sni?: string[];
}

/** Runs the writer until it has acknowledged `acksBeforeKill` changes, then a random few ms more, then SIGKILL. */
function runAndKill(dataDir: string, round: number, acksBeforeKill: number, extraMs: number, env: NodeJS.ProcessEnv = {}): Promise<Ack[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [writer, dataDir, String(round)], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    const acks: Ack[] = [];
    let stderr = '';
    let killTimer: NodeJS.Timeout | undefined;
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const message = JSON.parse(line) as Ack | { ready: true };
      if ('ready' in message) return;
      acks.push(message);
      if (acks.length >= acksBeforeKill && !killTimer) killTimer = setTimeout(() => child.kill('SIGKILL'), extraMs);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(killTimer);
      if (signal !== 'SIGKILL') reject(new Error(`writer exited ${code} ${signal}: ${stderr}`));
      else resolve(acks);
    });
  });
}

for (const [what, env] of [
  ['single writes and batches', {}],
  ['while the store compacts every few kilobytes', { CHECKPOINT_BYTES: '4000' }],
  ['64 concurrent writers: large groups per fsync', { WORKERS: '64' }],
] as const) test(`crash test: every acknowledged change survives SIGKILL at a random moment (${what})`, { timeout: 120_000 }, async () => {
  const dir = await tempDir('egress-xds-crash-');
  const acked: Ack[] = [];
  try {
    for (let round = 0; round < 12; round++) {
      const acks = await runAndKill(dir.path, round, 1 + Math.floor(Math.random() * 120), Math.floor(Math.random() * 15), env);
      assert.ok(acks.length > 0, `round ${round} acknowledged nothing`);
      acked.push(...acks);

      const store = await openPolicyStore(dir.path);
      try {
        const all = await allHistory(store);
        const byRevision = new Map(all.map((entry) => [`${entry.storeRevision}/${entry.name}`, entry]));
        // 1. Every acknowledged change is in the history, as acknowledged.
        for (const ack of acked) {
          const entry = byRevision.get(`${ack.storeRevision}/${ack.name}`);
          assert.ok(entry, `acknowledged ${ack.action} ${ack.name} at store revision ${ack.storeRevision} is missing`);
          assert.equal(entry.action, ack.action);
          if (ack.revision !== undefined) assert.equal(entry.revision, ack.revision);
          if (ack.sni) assert.deepEqual(entry.spec?.allow.sni, ack.sni);
        }
        // 2. The served state is exactly the history folded: nothing torn, nothing lost.
        const folded = new Map<string, { revision: number; sni: readonly string[] }>();
        for (const entry of all) {
          if (entry.action === 'put') folded.set(entry.name, { revision: entry.revision, sni: entry.spec!.allow.sni });
          else folded.delete(entry.name);
        }
        assert.deepEqual(
          store.list().map((p) => [p.name, p.revision, p.allow.sni]),
          [...folded].sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, p]) => [name, p.revision, p.sni]),
        );
        // 3. Revisions are contiguous, and at most the in-flight writes (the workers, 1 batcher) went unacknowledged.
        const revisions = [...new Set(all.map((e) => e.storeRevision))];
        assert.deepEqual(revisions, Array.from({ length: store.revision }, (_, i) => i + 1));
        const lastAck = Math.max(...acked.map((a) => a.storeRevision));
        const inFlight = Number((env as { WORKERS?: string }).WORKERS ?? 3) + 1;
        assert.ok(store.revision >= lastAck && store.revision <= lastAck + inFlight, `revision ${store.revision}, last ack ${lastAck}`);
      } finally {
        await store.close();
      }
    }
  } finally {
    await dir.remove();
  }
});
