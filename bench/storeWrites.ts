// The write path: the store alone, and single-policy writes over HTTP with
// 10,000 policies stored (each answered only once fsynced), and start-up time
// with a long history before and after compaction. The load client runs in
// this process; its CPU is reported beside the server's.
import { spawn } from 'node:child_process';
import { shippedEnv, shippedNodeFlags } from './shippedEnv.js';
import { readFile, rm, stat, writeFile, mkdtemp } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { HISTORY_FILE, openPolicyStore, STATE_FILE } from '../src/store/policyStore.js';
import { summarize } from './stats.js';

const spec = (i: number, round = 0) => ({ sources: [`10.${(i >> 8) & 255}.${i & 255}.0/24`], allow: { sni: [`h${i}-r${round}.bench.example`] } });
const cpuSeconds = (usage: NodeJS.CpuUsage) => (usage.user + usage.system) / 1e6;

/** utime + stime of a process, in seconds (Linux /proc). */
async function processCpu(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export interface Sustained {
  readonly writes: number;
  readonly perSecond: number;
  readonly latency: ReturnType<typeof summarize>;
  /** CPU-seconds per second of the run. */
  readonly serverCpu?: number;
  readonly clientCpu: number;
}

/** Runs `write` from `concurrency` loops for `seconds`; latencies in ms. */
async function sustain(seconds: number, concurrency: number, write: (i: number) => Promise<void>): Promise<Omit<Sustained, 'serverCpu'>> {
  const latencies: number[] = [];
  let next = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  const end = started + seconds * 1000;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < end) {
      const i = next++;
      const t = performance.now();
      await write(i);
      latencies.push(performance.now() - t);
    }
  }));
  const elapsed = (performance.now() - started) / 1000;
  return { writes: latencies.length, perSecond: latencies.length / elapsed, latency: summarize(latencies), clientCpu: cpuSeconds(process.cpuUsage(cpu)) / elapsed };
}

/** The store in this process: 10,000 creates issued at once, then concurrent single writes. */
export async function storeAlone(options: { policies: number; seconds: number; concurrency: number }) {
  const dir = await mkdtemp(join(tmpdir(), 'egress-xds-bench-'));
  const store = await openPolicyStore(dir);
  try {
    // All at once: group commit takes them in few fsyncs (one by one, each waits for its own fsync: see the HTTP row).
    const t = performance.now();
    const created = await Promise.all(Array.from({ length: options.policies }, (_, i) => store.put(`p${i}`, spec(i), { client: 'bench' })));
    const refused = created.find((r) => !r.ok);
    if (refused && !refused.ok) throw new Error(refused.error.message);
    const createSeconds = (performance.now() - t) / 1000;
    const sustained = await sustain(options.seconds, options.concurrency, async (i) => {
      const r = await store.put(`p${i % options.policies}`, spec(i % options.policies, i + 1), { client: 'bench' });
      if (!r.ok) throw new Error(r.error.message);
    });
    return { createSeconds, sustained };
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function httpPut(agent: Agent, port: number, name: string, body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ agent, host: '127.0.0.1', port, method: 'PUT', path: `/v1/policies/${name}`, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.once('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`PUT ${name}: ${res.statusCode}`))));
    });
    req.once('error', reject);
    req.end(body);
  });
}

/** A server process ("serve": the whole control plane; "admin": admin API + store), written to over HTTP. */
function httpBatch(agent: Agent, port: number, body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ agent, host: '127.0.0.1', port, method: 'POST', path: '/v1/policies:batch', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.once('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`batch: ${res.statusCode}`))));
    });
    req.once('error', reject);
    req.end(body);
  });
}

/**
 * oneByOne: the policies are created by sequential PUTs, timed; otherwise by
 * batches of 500 (setup only: createSeconds is then the batches' time).
 */
export async function httpWrites(options: { mode: 'serve' | 'admin'; policies: number; seconds: number; concurrency: number; oneByOne: boolean }) {
  const child = spawn(process.execPath, [...shippedNodeFlags(), fileURLToPath(new URL('./storeServer.js', import.meta.url)), options.mode], { stdio: ['ignore', 'pipe', 'inherit'], env: shippedEnv() });
  const info = await new Promise<{ admin: number; dataDir: string; pid: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start in 60 s')), 60_000);
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line));
    });
  });
  const agent = new Agent({ keepAlive: true, maxSockets: options.concurrency });
  try {
    const t = performance.now();
    if (options.oneByOne) for (let i = 0; i < options.policies; i++) await httpPut(agent, info.admin, `p${i}`, JSON.stringify(spec(i)));
    else {
      for (let from = 0; from < options.policies; from += 500) {
        const put = Object.fromEntries(Array.from({ length: Math.min(500, options.policies - from) }, (_, k) => [`p${from + k}`, spec(from + k)]));
        await httpBatch(agent, info.admin, JSON.stringify({ put }));
      }
    }
    const createSeconds = (performance.now() - t) / 1000;
    const serverBefore = await processCpu(info.pid);
    const started = performance.now();
    const run = await sustain(options.seconds, options.concurrency, (i) => httpPut(agent, info.admin, `p${i % options.policies}`, JSON.stringify(spec(i % options.policies, i + 1))));
    const serverCpu = ((await processCpu(info.pid)) - serverBefore) / ((performance.now() - started) / 1000);
    return { createSeconds, sustained: { ...run, serverCpu } };
  } finally {
    agent.destroy();
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('close', resolve));
    await rm(info.dataDir, { recursive: true, force: true });
  }
}

/** The disk's own latency: append 200 bytes + fdatasync, as one commit costs at least. */
export async function fsyncLatency(samples: number) {
  const dir = await mkdtemp(join(tmpdir(), 'egress-xds-bench-'));
  const { open } = await import('node:fs/promises');
  const handle = await open(join(dir, 'probe'), 'a');
  const times: number[] = [];
  try {
    for (let i = 0; i < samples; i++) {
      const t = performance.now();
      await handle.write('x'.repeat(200) + '\n');
      await handle.datasync();
      times.push(performance.now() - t);
    }
  } finally {
    await handle.close();
    await rm(dir, { recursive: true, force: true });
  }
  return summarize(times);
}

/** Opens the data dir in a fresh process (no heap left over from building it); seconds to open. */
function openInChild(dir: string): Promise<number> {
  const script = `const t = performance.now(); const { openPolicyStore } = await import(${JSON.stringify(new URL('../src/store/policyStore.js', import.meta.url).href)}); const s = await openPolicyStore(${JSON.stringify(dir)}); const took = (performance.now() - t) / 1000; await s.close(); console.log(took);`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'], env: shippedEnv() });
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.once('close', (code) => (code === 0 ? resolve(Number(out.trim())) : reject(new Error(`open exited ${code}`))));
  });
}

/**
 * A data dir with `commits` commits in one log (as every version before
 * compaction kept it), opened; then compacted and opened again.
 */
export async function startupWithHistory(options: { commits: number; policies: number }) {
  const dir = await mkdtemp(join(tmpdir(), 'egress-xds-bench-'));
  try {
    const lines: string[] = [];
    const revisions = new Map<string, number>();
    const at = new Date().toISOString();
    for (let r = 1; r <= options.commits; r++) {
      const name = `p${r % options.policies}`;
      const revision = (revisions.get(name) ?? 0) + 1;
      revisions.set(name, revision);
      lines.push(JSON.stringify({ revision: r, at, client: 'bench', changes: [{ action: 'put', name, revision, source: 'api', spec: spec(r % options.policies, r) }] }));
    }
    await writeFile(join(dir, HISTORY_FILE), `${lines.join('\n')}\n`);
    lines.length = 0;
    const historyBytes = (await stat(join(dir, HISTORY_FILE))).size;
    // First open: one long log to read and replay (what every start cost
    // before compaction); the store compacts it as it opens.
    const replayWhole = await openInChild(dir);
    // Then: the checkpoint and an empty active log, whatever the history's age.
    const afterCompaction = await openInChild(dir);
    const stateBytes = (await stat(join(dir, STATE_FILE))).size;
    return { historyBytes, stateBytes, replayWhole, afterCompaction };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
