// `egress-xds serve` as an operator runs it: a child process, JSON logs,
// SIGTERM to stop, and a clear message with a non-zero exit when it cannot start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { FakeEnvoy } from '../support/fakeEnvoy.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

interface Run {
  code: number | null;
  stderr: string;
}

/** Runs serve until it logs that it is serving (then calls whileServing) or exits; bounded by a timeout. */
function serve(args: string[], whileServing?: (ports: { xds: number; admin: number }) => Promise<void>, runAs: string[] = [], stopSignal: NodeJS.Signals = 'SIGTERM'): Promise<Run> {
  return new Promise((resolve, reject) => {
    const command = [...runAs, process.execPath, cli, 'serve', ...args];
    const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let started = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve did not finish in time; stderr:\n${stderr}`));
    }, 15_000);
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      const line = stderr.split('\n').find((l) => l.includes('"egress-xds serving"'));
      if (line && !started) {
        started = true;
        const record = JSON.parse(line) as { xds: string; admin: string };
        const port = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));
        (whileServing ?? (async () => {}))({ xds: port(record.xds), admin: port(record.admin) })
          .catch((error: unknown) => reject(error))
          .finally(() => child.kill(stopSignal));
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

test('serve: serves the seed policy to an Envoy, answers the admin API, stops cleanly on SIGTERM', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'egress-xds-serve-'));
  try {
    const run = await serve(['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--data-dir', dataDir], async ({ xds, admin }) => {
      const envoy = new FakeEnvoy(`127.0.0.1:${xds}`, { nodeId: 'host-1' }).connect();
      try {
        await envoy.waitFor('listener', () => envoy.state.has(TypeUrl.Listener));
      } finally {
        envoy.close();
      }
      const response = await fetch(`http://127.0.0.1:${admin}/v1/policies/github`);
      assert.equal(response.status, 200);
      assert.deepEqual(((await response.json()) as { allow: unknown }).allow, { sni: ['github.com', 'www.github.com'] });
    });
    assert.equal(run.code, 0, run.stderr);
    // Every log line is one JSON object; the shutdown is logged with its signal.
    const records = run.stderr.trim().split('\n').map((line) => JSON.parse(line) as { msg: string; signal?: string });
    assert.ok(records.some((r) => r.msg === 'shutting down' && r.signal === 'SIGTERM'), run.stderr);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});

test('serve: cannot start → a clear message naming the problem, non-zero exit', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'egress-xds-serve-bad-'));
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  const busyPort = (busy.address() as { port: number }).port;
  try {
    const notADir = join(dir, 'file');
    await writeFile(notADir, 'x');
    const cases: [string[], number, RegExp][] = [
      [['--bogus'], 2, /Unknown option '--bogus'/],
      [['--xds-address', 'nowhere'], 2, /--xds-address must be HOST:PORT/],
      [['--listener-port', '0'], 2, /--listener-port must be a port number/],
      [['--profile', 'strict'], 2, /--profile must be one of hardened, seed, got "strict"/],
      [['--max-connections-per-source=-1'], 2, /--max-connections-per-source must be a whole number from 0 \(no Envoy-side cap\) to 100000000, got "-1"/],
      [['--max-connections-per-source', '1.5'], 2, /--max-connections-per-source must be a whole number .*got "1\.5"/],
      [['--max-connections-per-source', 'x'], 2, /--max-connections-per-source must be a whole number .*got "x"/],
      [['--upstream-mark', '0x1ffffffff'], 2, /--upstream-mark must be a decimal or 0x-hex number, got "0x1ffffffff"/],
      [['--upstream-mark=-1'], 2, /--upstream-mark must be a decimal or 0x-hex number, got "-1"/],
      [['--data-dir', join(notADir, 'data'), '--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'], 1, new RegExp(`${notADir}`)],
      [['--data-dir', join(dir, 'd1'), '--xds-address', `127.0.0.1:${busyPort}`, '--admin-address', '127.0.0.1:0'], 1, /cannot listen for xDS on 127\.0\.0\.1:\d+: .*address already in use/],
      [['--data-dir', join(dir, 'd2'), '--xds-address', '127.0.0.1:0', '--admin-address', `127.0.0.1:${busyPort}`], 1, /cannot listen for the admin API on 127\.0\.0\.1:\d+/],
      [['--data-dir', join(dir, 'd3'), '--xds-address', '127.0.0.1:0', '--admin-address', '0.0.0.0:0'], 1, /token/],
      [['--history-retention', 'forever'], 2, /--history-retention must be a positive duration/],
      [['--admin-allowed-host', 'http://x/'], 2, /--admin-allowed-host must be a host name/],
    ];
    for (const [args, code, pattern] of cases) {
      const run = await serve(args);
      assert.equal(run.code, code, `${args.join(' ')}\n${run.stderr}`);
      assert.match(run.stderr, pattern, args.join(' '));
    }
  } finally {
    busy.close();
    await rm(dir, { recursive: true, force: true });
  }
});

const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
test('serve: a data dir it may not write → a message naming it, exit 1', {
  skip: process.getuid?.() !== 0 ? 'needs root to run the server as an unprivileged user' : !setpriv ? 'setpriv (util-linux) is not installed' : false,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'egress-xds-serve-ro-'));
  try {
    await chmod(dir, 0o755);
    const readOnly = join(dir, 'data');
    await mkdir(readOnly, { mode: 0o555 });
    const asNobody = [setpriv!, '--reuid=65534', '--regid=65534', '--clear-groups'];
    const run = await serve(['--data-dir', readOnly, '--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'], undefined, asNobody);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, new RegExp(`egress-xds serve: data dir ${readOnly} is not writable`));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

const canUnshare = spawnSync('unshare', ['--pid', '--fork', '--kill-child', 'true']).status === 0;
test('serve: two servers on one data dir, each pid 1 of its own pid namespace: the second refuses, naming the holder', {
  skip: canUnshare ? false : 'unshare --pid needs root or user namespaces',
}, async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'egress-xds-serve-lock-'));
  const inNamespace = ['unshare', '--pid', '--fork', '--kill-child'];
  const args = ['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--data-dir', dataDir];
  try {
    let second: Run | undefined;
    // unshare --fork does not pass SIGTERM on: the first server is stopped by
    // killing unshare, whose --kill-child takes the server with it.
    await serve(args, async () => {
      second = await serve(args, undefined, inNamespace);
    }, inNamespace, 'SIGKILL');
    assert.equal(second?.code, 1, second?.stderr);
    assert.match(second!.stderr, new RegExp(`data dir ${dataDir} is in use by process 1 on ${hostname()}`));
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
