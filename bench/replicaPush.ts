// Three replicas on one machine (`serve --store etcd://`, each its own
// process, one local etcd member): from an admin write sent to replica A to
// the ACK of the Envoys connected to replica C, beside the same measure with
// one process on the file store (write and Envoys on that process).
import { spawn, type ChildProcess } from 'node:child_process';
import { shippedEnv, shippedNodeFlags } from './shippedEnv.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TypeUrl } from '../src/envoy/typeUrls.js';
import { FakeEnvoy } from '../test/support/fakeEnvoy.js';
import { etcdAvailable, startEtcd } from '../test/support/etcdCluster.js';
import { summarize } from './stats.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

interface Served {
  readonly child: ChildProcess;
  readonly xds: number;
  readonly admin: number;
}

function serve(args: string[]): Promise<Served> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...shippedNodeFlags(), cli, 'serve', '--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: shippedEnv() });
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve did not start in 30 s:\n${stderr.slice(-2000)}`));
    }, 30_000);
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < 100_000) stderr += chunk;
      const line = stderr.split('\n').find((l) => l.includes('"egress-xds serving"'));
      if (!line) return;
      clearTimeout(timer);
      child.stderr!.resume();
      const record = JSON.parse(line) as { xds: string; admin: string };
      const port = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));
      resolve({ child, xds: port(record.xds), admin: port(record.admin) });
    });
  });
}

const stop = (served: Served) =>
  new Promise<void>((resolve) => {
    if (served.child.exitCode !== null) return resolve();
    served.child.once('exit', () => resolve());
    served.child.kill('SIGTERM');
  });

export interface ReplicaPushResult {
  readonly setup: string;
  readonly nodes: number;
  readonly changes: number;
  /** Per (change, node): ms from sending the write to the new Listener arriving (and being ACKed) on the Envoy. */
  readonly toAck: ReturnType<typeof summarize>;
  /** Per change: ms from sending the write to its 200. */
  readonly toOk: ReturnType<typeof summarize>;
}

async function measure(setup: string, writeAdmin: number, envoyXds: number, nodes: number, changes: number, warmup: number): Promise<ReplicaPushResult> {
  const envoys: FakeEnvoy[] = [];
  try {
    for (let i = 0; i < nodes; i++) envoys.push(new FakeEnvoy(`127.0.0.1:${envoyXds}`, { nodeId: `bench-${i}` }).connect());
    await Promise.all(envoys.map((e) => e.waitFor('initial listener', () => e.state.has(TypeUrl.Listener), 60_000)));
    const toAck: number[] = [];
    const toOk: number[] = [];
    for (let change = 0; change < warmup + changes; change++) {
      const before = envoys.map((e) => e.responsesOf(TypeUrl.Listener).length);
      const body = JSON.stringify({ allow: { sni: [`host-${change}.bench.example`] } });
      const sent = process.hrtime.bigint();
      const response = await fetch(`http://127.0.0.1:${writeAdmin}/v1/policies/bench`, { method: 'PUT', body, headers: { 'content-type': 'application/json' } });
      const okAt = process.hrtime.bigint();
      if (response.status !== 200) throw new Error(`PUT answered ${response.status}: ${await response.text()}`);
      await response.arrayBuffer();
      await Promise.all(envoys.map((e, i) => e.waitFor('pushed listener', () => e.responsesOf(TypeUrl.Listener).length > before[i]!, 20_000)));
      if (change < warmup) continue;
      toOk.push(Number(okAt - sent) / 1e6);
      toAck.push(...envoys.map((e, i) => Number(e.responsesOf(TypeUrl.Listener)[before[i]!]!.at - sent) / 1e6));
    }
    return { setup, nodes, changes, toAck: summarize(toAck), toOk: summarize(toOk) };
  } finally {
    for (const e of envoys) e.close();
  }
}

export async function replicaPushTable(nodes: number, changes: number): Promise<string[]> {
  const lines = ['| setup | Envoys | changes | write → 200, p50 | p99 | write → ACK on the Envoys, p50 | p99 |', '|---|---|---|---|---|---|---|'];
  const row = (r: ReplicaPushResult) =>
    `| ${r.setup} | ${r.nodes} | ${r.changes} | ${r.toOk.p50.toFixed(2)} ms | ${r.toOk.p99.toFixed(2)} ms | ${r.toAck.p50.toFixed(2)} ms | ${r.toAck.p99.toFixed(2)} ms |`;

  const dataDir = await mkdtemp(join(tmpdir(), 'egress-xds-bench-single-'));
  const single = await serve(['--data-dir', dataDir]);
  try {
    lines.push(row(await measure('one process, file store (write and Envoys on it)', single.admin, single.xds, nodes, changes, 5)));
  } finally {
    await stop(single);
    await rm(dataDir, { recursive: true, force: true });
  }

  if (!etcdAvailable()) {
    lines.push('| three replicas on etcd | – | – | skipped: no etcd binary | | | |');
    return lines;
  }
  const etcd = await startEtcd(1);
  const replicas: Served[] = [];
  try {
    for (const id of ['A', 'B', 'C']) replicas.push(await serve(['--store', etcd.url, '--replica-id', id]));
    const [a, , c] = replicas as [Served, Served, Served];
    lines.push(row(await measure('three replicas on one etcd member (write on A, Envoys on C)', a.admin, c.xds, nodes, changes, 5)));
  } finally {
    for (const replica of replicas) await stop(replica);
    await etcd.close();
  }
  return lines;
}
