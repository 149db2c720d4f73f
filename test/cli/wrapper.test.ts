// bin/egress-xds, the command npm links and `npm start` runs: it must be the
// CLI in every way an operator or a supervisor can see (same PID, arguments,
// exit codes, signals), plus the allocator settings, which a user can override.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WRAPPER, shippedNodeFlags, wrapperDefaults } from '../../bench/shippedEnv.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
// The node that runs the tests, so the wrapper does not depend on PATH here.
const baseEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, EGRESS_XDS_NODE: process.execPath };
  for (const name of ['EGRESS_XDS_MALLOC', 'EGRESS_XDS_NODE_FLAGS', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_ARENA_MAX']) delete env[name];
  return env;
};

/** The environment of a running process, as the kernel holds it. */
function environOf(pid: number): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}

interface Served {
  pid: number;
  cmdline: string[];
  environ: Record<string, string>;
  allocatorLine: Record<string, unknown>;
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Starts `command serve` (the wrapper or a link to it), waits until it serves, reads its /proc entries, stops it with SIGTERM. */
function serveThrough(command: string, env: NodeJS.ProcessEnv): Promise<Served> {
  return new Promise((resolve, reject) => {
    void mkdtemp(join(tmpdir(), 'egress-xds-wrapper-')).then((dataDir) => {
      const child = spawn(command, ['serve', '--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--data-dir', dataDir], { env, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      let seen: Omit<Served, 'code' | 'signal'> | undefined;
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`serve did not start in time; stderr:\n${stderr}`));
      }, 20_000);
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk;
        // Complete lines only (a chunk may end mid-line).
        const complete = stderr.split('\n').slice(0, -1);
        if (seen || !complete.some((l) => l.includes('"egress-xds serving"'))) return;
        const lines = complete.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
        const allocatorLine = lines.find((l) => String(l.msg).startsWith('allocator'));
        if (!allocatorLine) return reject(new Error(`no allocator line before serving:\n${stderr}`));
        const pid = child.pid!;
        seen = { pid, cmdline: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean), environ: environOf(pid), allocatorLine };
        // One admin round trip first: serve installs its SIGTERM handler just after logging
        // "serving", and an answer proves the process got past that point.
        const serving = lines.find((l) => l.msg === 'egress-xds serving') as { admin: string };
        fetch(`http://${serving.admin}/healthz`, { signal: AbortSignal.timeout(10_000) })
          .then((response) => response.arrayBuffer())
          .then(() => child.kill('SIGTERM'), (error: unknown) => {
            child.kill('SIGKILL');
            reject(error);
          });
      });
      child.on('error', reject);
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        void rm(dataDir, { recursive: true, force: true });
        if (!seen) reject(new Error(`serve exited (${code ?? signal}) before serving:\n${stderr}`));
        else resolve({ ...seen, code, signal });
      });
    }, reject);
  });
}

const defaults = wrapperDefaults();

test('wrapper: serve runs in the same process (exec), with the tuned allocator settings, logged once, and stops with 0 on SIGTERM', async () => {
  assert.ok(Object.keys(defaults).length >= 2, 'the wrapper names its defaults');
  const served = await serveThrough(WRAPPER, baseEnv());
  // The PID the supervisor got is node running the CLI, not a shell waiting for a child.
  assert.equal(served.cmdline[0], process.execPath);
  const at = served.cmdline.indexOf(cli);
  assert.deepEqual(served.cmdline.slice(1, at), shippedNodeFlags(baseEnv()), 'the default node flags, before the script');
  // The young generation the fan-out figures were measured with (BENCHMARKS.md): in the process and in its log line.
  assert.deepEqual(served.cmdline.slice(1, at), ['--max-semi-space-size=64']);
  assert.equal(served.allocatorLine.nodeFlags, '--max-semi-space-size=64');
  assert.equal(served.cmdline[at + 1], 'serve');
  for (const [name, value] of Object.entries(defaults)) {
    assert.equal(served.environ[name], value, `${name} in the server's environment`);
    assert.equal(served.allocatorLine[name], value, `${name} in the log line`);
  }
  assert.equal(served.allocatorLine.msg, 'allocator settings');
  // SIGTERM reached node's handler (a shell parent would have died of it instead).
  assert.equal(served.signal, null);
  assert.equal(served.code, 0);
});

test('wrapper: a variable the user set wins over the default; EGRESS_XDS_MALLOC=system sets none', async () => {
  const [first, ...rest] = Object.keys(defaults);
  const mine = await serveThrough(WRAPPER, { ...baseEnv(), [first!]: '1048576', MALLOC_ARENA_MAX: '3' });
  assert.equal(mine.environ[first!], '1048576');
  assert.equal(mine.allocatorLine[first!], '1048576');
  assert.equal(mine.environ.MALLOC_ARENA_MAX, '3');
  for (const name of rest) assert.equal(mine.environ[name], defaults[name], `${name} keeps the default`);

  const system = await serveThrough(WRAPPER, { ...baseEnv(), EGRESS_XDS_MALLOC: 'system' });
  for (const name of Object.keys(defaults)) {
    assert.equal(system.environ[name], undefined, `${name} not set under EGRESS_XDS_MALLOC=system`);
    assert.equal(system.allocatorLine[name], 'glibc default');
  }
  assert.match(String(system.allocatorLine.msg), /EGRESS_XDS_MALLOC=system/);

  // Node flags: yours replace the default; empty means none.
  const flagged = await serveThrough(WRAPPER, { ...baseEnv(), EGRESS_XDS_NODE_FLAGS: '--max-semi-space-size=8 --stack-size=900' });
  assert.deepEqual(flagged.cmdline.slice(1, flagged.cmdline.indexOf(cli)), ['--max-semi-space-size=8', '--stack-size=900']);
  assert.equal(flagged.allocatorLine.nodeFlags, '--max-semi-space-size=8 --stack-size=900');
  const bare = await serveThrough(WRAPPER, { ...baseEnv(), EGRESS_XDS_NODE_FLAGS: '' });
  assert.deepEqual(bare.cmdline.slice(1), [cli, ...bare.cmdline.slice(bare.cmdline.indexOf(cli) + 1)]);
  assert.equal(bare.allocatorLine.nodeFlags, 'none');
});

test('wrapper: arguments and exit codes are the CLI\'s own (0, 1, 2), arguments byte for byte', () => {
  const odd = 'vm one $HOME "q" * \\ end';
  const cases: string[][] = [
    ['bootstrap', '--node-id', 'host-7', '--xds', '127.0.0.1:1'],
    ['bootstrap', '--node-id', odd, '--xds', '127.0.0.1:1'],
    ['no-such-command'],
    ['serve', '--data-dir', '/dev/null/not-a-dir', '--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'],
  ];
  const codes = new Set<number | null>();
  for (const args of cases) {
    const through = spawnSync(WRAPPER, args, { env: baseEnv(), encoding: 'utf8', timeout: 20_000 });
    const direct = spawnSync(process.execPath, [cli, ...args], { env: baseEnv(), encoding: 'utf8', timeout: 20_000 });
    assert.equal(through.status, direct.status, `exit code of ${args.join(' ')}`);
    assert.equal(through.stdout, direct.stdout, `stdout of ${args.join(' ')}`);
    codes.add(through.status);
  }
  assert.deepEqual([...codes].sort(), [0, 1, 2]);
  const good = spawnSync(WRAPPER, cases[0]!, { env: baseEnv(), encoding: 'utf8' });
  assert.match(good.stdout, /host-7/);
  const bad = spawnSync(WRAPPER, cases[1]!, { env: baseEnv(), encoding: 'utf8' });
  assert.ok(bad.stderr.includes(`got "${odd}"`), bad.stderr);
});

test('wrapper: works through symbolic links (npm\'s bin link, a relative chain, a linked directory) found on PATH', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'egress-xds-link-'));
  try {
    // PATH/egress-xds -> ../chain/hop (relative) -> absolute wrapper
    await mkdir(join(dir, 'bin'));
    await mkdir(join(dir, 'chain'));
    await symlink(WRAPPER, join(dir, 'chain', 'hop'));
    await symlink('../chain/hop', join(dir, 'bin', 'egress-xds'));
    // a link to the package's bin directory, as some installs do
    await symlink(dirname(WRAPPER), join(dir, 'linked-bin'));
    await writeFile(join(dir, 'marker'), '');
    for (const [command, pathDir] of [['egress-xds', join(dir, 'bin')], [join(dir, 'linked-bin', 'egress-xds'), '']] as const) {
      const env = { ...baseEnv(), PATH: `${pathDir ? `${pathDir}:` : ''}${process.env.PATH ?? ''}` };
      const run = spawnSync(command, ['bootstrap', '--node-id', 'linked', '--xds', '127.0.0.1:1'], { env, encoding: 'utf8', timeout: 20_000 });
      assert.equal(run.status, 0, `${command}: ${run.stderr}`);
      assert.match(run.stdout, /linked/);
    }
    const served = await serveThrough(join(dir, 'bin', 'egress-xds'), baseEnv());
    assert.ok(served.cmdline.includes(cli));
    assert.equal(served.code, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('wrapper: refuses an EGRESS_XDS_MALLOC it does not know, naming it, without starting anything', () => {
  const run = spawnSync(WRAPPER, ['serve', '--data-dir', '/dev/null/never'], { env: { ...baseEnv(), EGRESS_XDS_MALLOC: 'fast' }, encoding: 'utf8', timeout: 20_000 });
  assert.equal(run.status, 2);
  assert.match(run.stderr, /EGRESS_XDS_MALLOC must be tuned or system, not 'fast'/);
  assert.doesNotMatch(run.stderr, /"level"/);
});
