// serve's store flags: a mistake is a usage error naming the flag (exit 2) and
// nothing starts; an etcd that cannot be reached at start is a clear exit 1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { freePort } from '../support/etcdCluster.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const serve = (...args: string[]) =>
  promisify(execFile)(process.execPath, [cli, 'serve', '--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', ...args], { timeout: 60_000 }).then(
    ({ stderr }) => ({ code: 0, stderr }),
    (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
  );

test('serve --store: bad combinations and values are usage errors naming the flag', async () => {
  const both = await serve('--store', 'etcd://127.0.0.1:2379', '--data-dir', '/tmp/x');
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--store and --data-dir exclude each other/);
  const stray = await serve('--etcd-prefix', '/x/');
  assert.equal(stray.code, 2);
  assert.match(stray.stderr, /--etcd-prefix needs --store etcd:\/\//);
  const badUrl = await serve('--store', 'http://127.0.0.1:2379');
  assert.equal(badUrl.code, 2);
  assert.match(badUrl.stderr, /--store must be etcd:\/\/HOST:PORT/);
  const badPrefix = await serve('--store', 'etcd://127.0.0.1:2379', '--etcd-prefix', 'a b');
  assert.equal(badPrefix.code, 2);
  assert.match(badPrefix.stderr, /--etcd-prefix must be/);
  const halfTls = await serve('--store', 'etcd://127.0.0.1:2379', '--etcd-cert', '/c.pem');
  assert.equal(halfTls.code, 2);
  assert.match(halfTls.stderr, /--etcd-cert and --etcd-key go together/);
});

test('serve --store: an etcd nobody answers at start → exit 1 naming etcd', async () => {
  const port = await freePort();
  const run = await serve('--store', `etcd://127.0.0.1:${port}`);
  assert.equal(run.code, 1);
  assert.match(run.stderr, new RegExp(`cannot load policies: etcd at etcd://127\\.0\\.0\\.1:${port}/egress-xds/ is unavailable`));
  const missingAuth = await serve('--store', `etcd://127.0.0.1:${port}`, '--etcd-auth-file', '/nonexistent/auth');
  assert.equal(missingAuth.code, 1);
  assert.match(missingAuth.stderr, /cannot read --etcd-auth-file \/nonexistent\/auth/);
});
