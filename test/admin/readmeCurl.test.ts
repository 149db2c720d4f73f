// The README's curl lines, run as written against a real control plane: a new
// user copies them, so each must succeed (2xx) and do what it says. Only the
// address changes (the test's server listens on a free port).
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { createLogger } from '../../src/log.js';
import { startControlPlane } from '../../src/server/controlPlane.js';

const readme = fileURLToPath(new URL('../../../README.md', import.meta.url));
/** Async: the server runs in this process, so a synchronous child would block it. */
function run(file: string, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { encoding: 'utf8', timeout: 15_000 }, (error, stdout, stderr) => {
      const code = (error as { code?: unknown } | null)?.code;
      resolve({ status: error ? (typeof code === 'number' ? code : null) : 0, stdout, stderr });
    });
  });
}

const hasCurl = spawnSync('curl', ['--version']).status === 0;

/** Every command starting with curl in the README's sh blocks, continuation lines joined. */
export function curlCommands(markdown: string): string[] {
  const commands: string[] = [];
  for (const block of markdown.matchAll(/```(?:sh|bash|shell)\n([\s\S]*?)```/g)) {
    const joined = block[1]!.replace(/\\\n\s*/g, ' ');
    // Trailing shell comments are dropped, so that flags can be appended.
    for (const line of joined.split('\n')) if (/^\s*curl\s/.test(line)) commands.push(line.replace(/\s+#\s.*$/, '').trim());
  }
  return commands;
}

test('every curl example in the README works as written against a real server', { skip: hasCurl ? false : 'no curl' }, async () => {
  const commands = curlCommands(await readFile(readme, 'utf8'));
  assert.ok(commands.some((c) => c.includes('-X PUT')), 'the README shows a PUT with curl');
  const root = await mkdtemp(join(tmpdir(), 'egress-xds-readme-'));
  const plane = await startControlPlane({
    xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir: join(root, 'data'),
    logger: createLogger({ level: 'error', write: () => {} }),
  });
  try {
    for (const command of commands) {
      const line = command.replaceAll('127.0.0.1:18080', `127.0.0.1:${plane.admin.port}`);
      // --fail-with-body: exit 22 on a 4xx/5xx, printing the error the user would see.
      // A stream (-N, server-sent events) never ends: it must answer 2xx and
      // send something within 2 s, then curl's --max-time ends it (exit 28).
      const streaming = /\s-\w*N/.test(line);
      const result = await run('sh', ['-c', `${line} --fail-with-body${streaming ? ' --max-time 2' : ''}`]);
      if (streaming) {
        assert.equal(result.status, 28, `${command}\n${result.stdout}${result.stderr}`);
        assert.notEqual(result.stdout, '', command);
        continue;
      }
      assert.equal(result.status, 0, `${command}\n${result.stdout}${result.stderr}`);
      assert.doesNotThrow(() => JSON.parse(result.stdout), `${command} answers JSON: ${result.stdout}`);
    }
    // What the examples say they do happened: pypi was put, then replaced by npm in one batch.
    assert.ok(plane.store.get('npm'));
    assert.equal(plane.store.get('pypi'), undefined);
    assert.ok((await plane.store.history({ limit: 1000 })).entries.some((e) => e.name === 'pypi' && e.action === 'put'));
  } finally {
    await plane.close();
    await rm(root, { recursive: true, force: true });
  }
});

test("curl's default form type gets a 415 that says how to fix it", { skip: hasCurl ? false : 'no curl' }, async () => {
  const root = await mkdtemp(join(tmpdir(), 'egress-xds-readme-'));
  const plane = await startControlPlane({
    xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir: join(root, 'data'),
    logger: createLogger({ level: 'error', write: () => {} }),
  });
  try {
    const result = await run('curl', ['-s', '-X', 'PUT', `127.0.0.1:${plane.admin.port}/v1/policies/pypi`, '-d', '{"allow":{"sni":["pypi.org"]}}']);
    const body = JSON.parse(result.stdout) as { error: { message: string; field: string } };
    assert.equal(body.error.field, 'Content-Type');
    assert.ok(body.error.message.includes("add -H 'Content-Type: application/json'"), body.error.message);
    assert.equal(plane.store.get('pypi'), undefined);
  } finally {
    await plane.close();
    await rm(root, { recursive: true, force: true });
  }
});
