// One writer per data dir across pid namespaces: two servers in containers on
// one volume are both pid 1, so no pid-based lock can tell them apart. Two
// processes each in its own pid namespace (unshare --pid --fork), both pid 1:
// exactly one gets the lock, the other is refused and told who holds it; when
// the holder is killed (-9), the kernel releases the lock and the other gets it.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { tempDir } from './helpers.js';

const contender = fileURLToPath(new URL('./fixtures/lockContender.js', import.meta.url));
const canUnshare = spawnSync('unshare', ['--pid', '--fork', '--kill-child', 'true']).status === 0;

interface Contender {
  child: ChildProcess;
  line: Promise<string>;
}

/** A contender as pid 1 of a new pid namespace; its first line says locked or refused. */
function start(dir: string): Contender {
  const child = spawn('unshare', ['--pid', '--fork', '--kill-child', process.execPath, contender, dir, '--now'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const line = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('contender said nothing within 20 s')), 20_000);
    lines.once('line', (text) => {
      clearTimeout(timer);
      resolve(text);
    });
    child.once('error', reject);
  });
  return { child, line };
}

const exited = (child: ChildProcess) => new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(null) : child.once('close', resolve)));

test('two processes with the same pid in separate pid namespaces: one holds the data dir, the other is refused naming it; kill -9 frees it', { skip: canUnshare ? false : 'unshare --pid needs root or user namespaces' }, async () => {
  const dir = await tempDir();
  const children: ChildProcess[] = [];
  try {
    const first = start(dir.path);
    children.push(first.child);
    assert.equal(await first.line, 'locked pid=1');
    const second = start(dir.path);
    children.push(second.child);
    const refusal = await second.line;
    assert.match(refusal, /^refused pid=1 /);
    assert.ok(refusal.includes(`is in use by process 1 on ${hostname()}`), refusal);
    assert.ok(refusal.includes(`${dir.path}/lock`), refusal);
    // The holder dies without releasing anything: the kernel drops its flock.
    first.child.kill('SIGKILL');
    await exited(first.child);
    const third = start(dir.path);
    children.push(third.child);
    assert.equal(await third.line, 'locked pid=1');
  } finally {
    for (const child of children) {
      child.stdin?.end();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited(child);
    }
    await dir.remove();
  }
});
