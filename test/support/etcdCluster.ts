// A real etcd (Debian's etcd-server, /usr/bin/etcd or ETCD_BIN) for tests: one
// member or a cluster of several on loopback ports in a temporary directory.
// Members are stopped by their pid; every wait is bounded.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ETCD_BIN = process.env.ETCD_BIN ?? '/usr/bin/etcd';
export const etcdAvailable = (): boolean => existsSync(ETCD_BIN);

/** Ports handed out by this process, so two members never get the same one. */
const handedOut = new Set<number>();

/** A free loopback port in [low, high] (the tests' range is 25000-25999). */
export async function freePort(low = 25000, high = 25999): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low + 1));
    if (handedOut.has(port)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port in ${low}-${high} after 200 attempts`);
}

export interface EtcdMember {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly dataDir: string;
  process?: ChildProcess;
  log: string;
}

export interface EtcdCluster {
  readonly members: EtcdMember[];
  /** "127.0.0.1:P1,127.0.0.1:P2,..." */
  readonly endpoints: string;
  /** "etcd://127.0.0.1:P1,..." for --store. */
  readonly url: string;
  /** SIGKILL one member (by pid). */
  kill(index: number): Promise<void>;
  /** Start a stopped member again (same data dir, same ports). */
  restart(index: number): Promise<void>;
  /** Stop every member. */
  stopAll(): Promise<void>;
  /** Start every stopped member again. */
  startAll(): Promise<void>;
  /** Stop everything and remove the directory. */
  close(): Promise<void>;
}

async function waitHealthy(member: EtcdMember, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`http://127.0.0.1:${member.clientPort}/health`, { signal: AbortSignal.timeout(1000) });
      if (response.ok && ((await response.json()) as { health?: string }).health === 'true') return;
    } catch {
      // not up yet
    }
    if (member.process?.exitCode !== null && member.process?.exitCode !== undefined) {
      throw new Error(`etcd member ${member.name} exited (${member.process.exitCode}):\n${member.log.slice(-3000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`etcd member ${member.name} not healthy within ${timeoutMs} ms:\n${member.log.slice(-3000)}`);
}

function stopProcess(child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}

/** Starts `size` members (1 or 3) and waits until the cluster is healthy. */
export async function startEtcd(size = 1, options: { extraArgs?: string[] } = {}): Promise<EtcdCluster> {
  const root = await mkdtemp(join(tmpdir(), 'egress-xds-etcd-'));
  const members: EtcdMember[] = [];
  for (let i = 0; i < size; i++) {
    members.push({ name: `m${i}`, clientPort: await freePort(), peerPort: await freePort(), dataDir: join(root, `m${i}`), log: '' });
  }
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
  const token = `egress-xds-test-${process.pid}-${Date.now()}`;
  let started = false;

  const launch = (member: EtcdMember) => {
    const args = [
      '--name', member.name,
      '--data-dir', member.dataDir,
      '--listen-client-urls', `http://127.0.0.1:${member.clientPort}`,
      '--advertise-client-urls', `http://127.0.0.1:${member.clientPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${member.peerPort}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${member.peerPort}`,
      '--initial-cluster', initialCluster,
      '--initial-cluster-token', token,
      '--initial-cluster-state', started ? 'existing' : 'new',
      // Short elections: the tests kill members and wait for a new leader.
      '--heartbeat-interval', '50',
      '--election-timeout', '500',
      '--logger', 'zap',
      '--log-level', 'warn',
      ...(options.extraArgs ?? []),
    ];
    const child = spawn(ETCD_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    member.process = child;
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      member.log = (member.log + chunk).slice(-20000);
    });
  };

  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => `127.0.0.1:${m.clientPort}`).join(','),
    url: `etcd://${members.map((m) => `127.0.0.1:${m.clientPort}`).join(',')}`,
    async kill(index) {
      await stopProcess(members[index]!.process, 'SIGKILL');
    },
    async restart(index) {
      const member = members[index]!;
      launch(member);
      await waitHealthy(member, 20_000);
    },
    async stopAll() {
      await Promise.all(members.map((m) => stopProcess(m.process, 'SIGKILL')));
    },
    async startAll() {
      for (const member of members) if (!member.process || member.process.exitCode !== null || member.process.signalCode !== null) launch(member);
      await Promise.all(members.map((m) => waitHealthy(m, 20_000)));
    },
    async close() {
      await Promise.all(members.map((m) => stopProcess(m.process, 'SIGTERM')));
      await rm(root, { recursive: true, force: true });
    },
  };
  try {
    for (const member of members) launch(member);
    await Promise.all(members.map((m) => waitHealthy(m, 20_000)));
    started = true;
  } catch (error) {
    await cluster.close();
    throw error;
  }
  return cluster;
}
