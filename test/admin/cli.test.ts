import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EXIT, parseCidrFlag, policyCommand, type CliIo } from '../../src/cli/policy.js';
import { createServer } from 'node:net';
import { startHarness } from './harness.js';

/** A port nothing listens on: bound, then released. */
const closedPort = () =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

const TOKEN = 'cli-test-token-0123456789abcdef';

function io(env: NodeJS.ProcessEnv = {}, stdin = '') {
  const out: string[] = [];
  const err: string[] = [];
  const value: CliIo = { out: (t) => out.push(t), err: (t) => err.push(t), env, stdin: async () => stdin };
  return { io: value, out: () => out.join(''), err: () => err.join('') };
}

test('--cidr flag parsing', () => {
  assert.deepEqual(parseCidrFlag('10.0.0.0/8'), { cidr: '10.0.0.0/8' });
  assert.deepEqual(parseCidrFlag('10.0.0.0/8:443,8443'), { cidr: '10.0.0.0/8', ports: [443, 8443] });
  assert.deepEqual(parseCidrFlag('1.2.3.4:22'), { cidr: '1.2.3.4', ports: [22] });
  assert.deepEqual(parseCidrFlag('2001:db8::/32'), { cidr: '2001:db8::/32' });
  assert.deepEqual(parseCidrFlag('2001:db8::/32:443'), { cidr: '2001:db8::/32', ports: [443] });
  assert.deepEqual(parseCidrFlag('[2001:db8::]/32:443'), { cidr: '2001:db8::/32', ports: [443] });
  assert.deepEqual(parseCidrFlag('[2001:db8::1]:443'), { cidr: '2001:db8::1', ports: [443] });
  assert.throws(() => parseCidrFlag('10.0.0.0/8:https'), /ports must be numbers/);
});

test('the CLI against a real server: put, list, get, check, history, delete, exit codes', async () => {
  const h = await startHarness({ token: TOKEN });
  const env = { EGRESS_XDS_ADMIN_URL: h.url, EGRESS_XDS_ADMIN_TOKEN: TOKEN };
  const run = async (argv: string[], options: { env?: NodeJS.ProcessEnv; stdin?: string } = {}) => {
    const c = io(options.env ?? env, options.stdin);
    const code = await policyCommand(argv, c.io);
    return { code, out: c.out(), err: c.err() };
  };
  try {
    let r = await run(['put', 'github', '--sni', 'github.com,www.github.com', '--source', '172.31.0.0/16']);
    assert.deepEqual([r.code, r.out], [EXIT.ok, 'github: stored at revision 1\n']);
    r = await run(['put', 'github', '--sni', 'www.github.com', '--sni', 'github.com', '--source', '172.31.0.0/16']);
    assert.deepEqual([r.code, r.out], [EXIT.ok, 'github: unchanged (revision 1)\n']);
    r = await run(['put', 'internal', '--cidr', '10.0.0.0/8:443,80', '--node', 'host-*', '--json']);
    assert.equal(r.code, EXIT.ok);
    assert.deepEqual(JSON.parse(r.out), { name: 'internal', revision: 1, changed: true });

    const file = join(h.dataDir, '..', 'spec.yaml');
    await writeFile(file, 'allow:\n  sni: [pypi.org]\n');
    r = await run(['put', 'pypi', '--file', file]);
    assert.equal(r.code, EXIT.ok, r.err);
    r = await run(['put', 'npm', '--file', '-'], { env, stdin: '{"allow": {"sni": ["registry.npmjs.org"]}}' });
    assert.equal(r.code, EXIT.ok, r.err);

    r = await run(['list']);
    assert.equal(r.code, EXIT.ok);
    assert.match(r.out, /^NAME\s+REV\s+SOURCES\s+NODES\s+MANAGED BY\s+ALLOW\n/);
    assert.match(r.out, /^github\s+1\s+172\.31\.0\.0\/16\s+\*\s+api\s+github\.com www\.github\.com$/m);
    assert.match(r.out, /^internal\s+1\s+\*\s+host-\*\s+api\s+10\.0\.0\.0\/8:80,443$/m);
    r = await run(['list', '--json']);
    assert.deepEqual(JSON.parse(r.out).map((p: { name: string }) => p.name), ['github', 'internal', 'npm', 'pypi']);
    r = await run(['get', 'github']);
    assert.match(r.out, /^name: github\nrevision: 1\n/);
    assert.match(r.out, /sni:\n\s+- github\.com\n\s+- www\.github\.com/);

    r = await run(['check', '--node', 'host-a', '--source', '172.31.0.5', '--destination', '140.82.112.3:443', '--sni', 'github.com']);
    assert.deepEqual([r.code, r.out], [EXIT.ok, 'allow: allowed by policy github (filter chain allow-github)\n']);
    r = await run(['check', '--node', 'host-a', '--source', '172.31.0.5', '--destination', '140.82.112.3:443', '--sni', 'gitlab.com']);
    assert.deepEqual([r.code, r.out], [EXIT.denied, 'deny: no policy allows it (filter chain default)\n']);
    r = await run(['check', '--node', 'host-a', '--source', '172.31.0.5', '--destination', '140.82.112.3:443', '--json']);
    assert.equal(r.code, EXIT.denied);
    assert.equal(JSON.parse(r.out).verdict, 'deny');

    // Server refusals: exit 1 with the status, field and reason.
    r = await run(['put', 'github', '--sni', 'github.com', '--if-match', '7']);
    assert.equal(r.code, EXIT.failed);
    assert.match(r.err, /412 policy "github" is at revision 1, not 7/);
    r = await run(['put', 'bad', '--sni', 'ok.com,a*.b.com']);
    assert.equal(r.code, EXIT.failed);
    assert.match(r.err, /400 allow\.sni\[1\]: "a\*\.b\.com"/);
    r = await run(['put', 'github', '--sni', 'x.com', '--create']);
    assert.match(r.err, /412 .*already exists/);
    r = await run(['get', 'nope']);
    assert.deepEqual([r.code, r.err], [EXIT.failed, 'egress-xds policy: 404 policy "nope" does not exist\n']);
    r = await run(['list'], { env: { EGRESS_XDS_ADMIN_URL: h.url } });
    assert.equal(r.code, EXIT.failed);
    assert.match(r.err, /401 .*EGRESS_XDS_ADMIN_TOKEN/);
    const tokenFile = join(h.dataDir, '..', 'token');
    await writeFile(tokenFile, `${TOKEN}\n`);
    r = await run(['list', '--server', h.url, '--token-file', tokenFile], { env: {} });
    assert.equal(r.code, EXIT.ok, r.err);

    r = await run(['delete', 'github', '--if-match', '1']);
    assert.deepEqual([r.code, r.out], [EXIT.ok, 'github: deleted (revision 2)\n']);
    r = await run(['history', '--limit', '2']);
    assert.equal(r.code, EXIT.ok);
    assert.match(r.out, /^REV\s+AT\s+ACTION/);
    assert.match(r.out, /delete\s+github\s+2\s+127\.0\.0\.1 token:\w+ agent:"egress-xds-cli"$/m);
  } finally {
    await h.close();
  }
});

test('CLI usage errors exit 2; an unreachable server exits 1', async () => {
  const cases: string[][] = [
    [],
    ['frobnicate'],
    ['get'],
    ['put', 'x'],
    ['put', 'x', '--file', 'f.yaml', '--sni', 'a.com'],
    ['put', 'x', '--sni', 'a.com', '--if-match', 'abc'],
    ['put', 'x', '--cidr', '10.0.0.0/8:https'],
    ['list', 'extra'],
    ['list', '--sni', 'a.com'],
    ['delete', 'x', '--sni', 'a.com'],
    ['check', '--node', 'n'],
    ['history', '--limit', 'ten'],
    ['list', '--no-such-flag'],
    ['put', 'x', '--file', '/no/such/file.yaml'],
    ['list', '--server', 'not a url'],
  ];
  for (const argv of cases) {
    const c = io({ EGRESS_XDS_ADMIN_URL: 'http://127.0.0.1:9' });
    assert.equal(await policyCommand(argv, c.io), EXIT.usage, argv.join(' '));
    assert.match(c.err(), /^egress-xds policy: .+\n\nusage:/, argv.join(' '));
  }
  const help = io();
  assert.equal(await policyCommand(['--help'], help.io), EXIT.ok);
  assert.match(help.out(), /exit codes: 0 ok/);
  const port = await closedPort();
  const down = io({ EGRESS_XDS_ADMIN_URL: `http://127.0.0.1:${port}` });
  assert.equal(await policyCommand(['list'], down.io), EXIT.failed);
  assert.equal(down.err(), `egress-xds policy: cannot reach the admin API at http://127.0.0.1:${port}: ECONNREFUSED\n`);
});
