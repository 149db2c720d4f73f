import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTokenCheck, isLoopbackHost, loadAdminToken, requireTokenUnlessLoopback, tokenFingerprint } from '../../src/admin/auth.js';
import { createAdminServer } from '../../src/admin/server.js';
import { silentLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { GITHUB, startHarness } from './harness.js';

const TOKEN = 'a-long-enough-admin-token-0123456789';

test('with a token configured: 401 without it or with a wrong one, and nothing changes', async () => {
  const h = await startHarness({ token: TOKEN });
  try {
    await h.request('PUT', '/v1/policies/github', { body: GITHUB, token: TOKEN });
    const before = await h.state();
    const attempts: Array<[string, string, Record<string, string>]> = [
      ['PUT', '/v1/policies/github', {}],
      ['PUT', '/v1/policies/github', { authorization: `Bearer ${TOKEN}x` }],
      ['PUT', '/v1/policies/github', { authorization: `Bearer ${TOKEN.slice(0, -1)}` }],
      ['PUT', '/v1/policies/github', { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` }],
      ['PUT', '/v1/policies/github', { authorization: TOKEN }],
      ['PUT', '/v1/policies/github', { authorization: 'Bearer ' }],
      ['DELETE', '/v1/policies/github', {}],
      ['PUT', '/v1/policies/new', {}],
      ['GET', '/v1/policies', {}],
      ['GET', '/v1/policies/github', {}],
      ['GET', '/v1/history', {}],
      ['GET', '/v1/nodes', {}],
      ['POST', '/v1/check', {}],
      ['GET', '/metrics', {}],
      ['GET', '/openapi.json', {}],
      ['GET', '/no/such/route', {}],
    ];
    for (const [method, path, headers] of attempts) {
      const body = method === 'PUT' || method === 'POST' ? { allow: { sni: ['evil.example.com'] } } : undefined;
      const r = await h.request(method, path, { headers, ...(body ? { body } : {}) });
      assert.equal(r.status, 401, `${method} ${path} ${JSON.stringify(headers)}`);
      assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="egress-xds"');
      assert.match(r.body.error.message, /Authorization: Bearer TOKEN/);
    }
    assert.deepEqual(await h.state(), before);
    // Probes answer without a token.
    assert.equal((await h.request('GET', '/healthz')).status, 200);
    assert.equal((await h.request('GET', '/readyz')).status, 200);
    // The right token works, in either case of "Bearer".
    assert.equal((await h.request('GET', '/v1/policies', { token: TOKEN })).status, 200);
    assert.equal((await h.request('GET', '/v1/policies', { headers: { authorization: `bearer ${TOKEN}` } })).status, 200);
    // The history knows which token, never the token.
    await h.request('DELETE', '/v1/policies/github', { token: TOKEN });
    const history = await h.request('GET', '/v1/history', { token: TOKEN });
    assert.ok(history.body.entries[1].client.includes(`token:${tokenFingerprint(TOKEN)}`));
    assert.ok(!history.text.includes(TOKEN));
    const metrics = await h.request('GET', '/metrics', { token: TOKEN });
    assert.match(metrics.text, /egress_xds_admin_requests_total\{route="\/v1\/policies\/\{name\}",method="PUT",status="401"\} \d+/);
    assert.ok(!h.logLines.some((line) => line.includes(TOKEN)), 'the token is never logged');
  } finally {
    await h.close();
  }
});

test('token comparison', () => {
  const check = createTokenCheck(TOKEN);
  assert.equal(check.allows(`Bearer ${TOKEN}`), true);
  assert.equal(check.allows(`Bearer  ${TOKEN} `), true);
  assert.equal(check.allows(undefined), false);
  assert.equal(check.allows(''), false);
  assert.equal(check.allows(`Bearer ${TOKEN} extra`), false);
  assert.equal(check.allows(`Token ${TOKEN}`), false);
  assert.equal(createTokenCheck(undefined).allows(undefined), true);
  assert.equal(createTokenCheck(undefined).identity, undefined);
});

test('loopback hosts', () => {
  for (const host of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) assert.equal(isLoopbackHost(host), true, host);
  for (const host of ['0.0.0.0', '::', '10.0.0.1', 'example.com', '', '::ffff:10.0.0.1', '128.0.0.1']) assert.equal(isLoopbackHost(host), false, host);
});

test('off loopback a token is mandatory: the rule, and the server refuses to listen', async () => {
  assert.deepEqual(requireTokenUnlessLoopback('127.0.0.1', undefined), { ok: true, value: undefined });
  assert.deepEqual(requireTokenUnlessLoopback('0.0.0.0', TOKEN), { ok: true, value: undefined });
  const refused = requireTokenUnlessLoopback('0.0.0.0', undefined);
  assert.ok(!refused.ok);
  assert.match(refused.error.message, /--admin-token-file FILE or EGRESS_XDS_ADMIN_TOKEN/);
  const h = await startHarness();
  try {
    const server = createAdminServer({ store: h.store, view: h.view, metrics: createMetrics(), logger: silentLogger });
    await assert.rejects(server.listen('0.0.0.0', 0), /needs a token/);
    await server.close();
  } finally {
    await h.close();
  }
});

test('loadAdminToken: file (wins), environment, and clear errors', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'egress-xds-token-'));
  try {
    const file = join(dir, 'token');
    await writeFile(file, `${TOKEN}\n`);
    await chmod(file, 0o600);
    assert.deepEqual(await loadAdminToken({ file, env: { EGRESS_XDS_ADMIN_TOKEN: 'other-token-from-the-environment' } }), { ok: true, value: TOKEN });
    assert.deepEqual(await loadAdminToken({ env: { EGRESS_XDS_ADMIN_TOKEN: ` ${TOKEN} ` } }), { ok: true, value: TOKEN });
    assert.deepEqual(await loadAdminToken({ env: {} }), { ok: true, value: undefined });
    assert.deepEqual(await loadAdminToken({ env: { EGRESS_XDS_ADMIN_TOKEN: '' } }), { ok: true, value: undefined });
    const missing = await loadAdminToken({ file: join(dir, 'nope'), env: {} });
    assert.ok(!missing.ok && missing.error.field === '--admin-token-file' && /cannot read .*nope: ENOENT/.test(missing.error.message));
    await writeFile(file, '\n');
    const empty = await loadAdminToken({ file, env: {} });
    assert.ok(!empty.ok && /is empty/.test(empty.error.message));
    const short = await loadAdminToken({ env: { EGRESS_XDS_ADMIN_TOKEN: 'short' } });
    assert.ok(!short.ok && short.error.field === 'EGRESS_XDS_ADMIN_TOKEN' && /5 characters; use at least 16/.test(short.error.message));
    const spaced = await loadAdminToken({ env: { EGRESS_XDS_ADMIN_TOKEN: 'two words of a token here' } });
    assert.ok(!spaced.ok && /whitespace/.test(spaced.error.message));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
