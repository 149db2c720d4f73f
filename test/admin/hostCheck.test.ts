// DNS rebinding: a page whose name resolves to 127.0.0.1 reaches the loopback
// API with its own name in Host; the API must refuse it (421) and change
// nothing, accept its own address and "localhost" (any port: port-forwards),
// accept names the operator allowed, refuse other origins (403), and grant no
// CORS permission to any page.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { test } from 'node:test';
import { createHostCheck, hostName } from '../../src/admin/hostCheck.js';
import { GITHUB, startHarness } from './harness.js';

/** node:http, since fetch() may not set Host. */
function send(url: string, method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; headers: Record<string, unknown>; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method, headers: { ...headers, ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown;
        try {
          parsed = text === '' ? undefined : JSON.parse(text);
        } catch {
          parsed = text;
        }
        resolve({ status: res.statusCode!, headers: res.headers, body: parsed });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const put = JSON.stringify(GITHUB);
const json = { 'content-type': 'application/json' };

test('hostName: ports, brackets, case and a trailing dot', () => {
  assert.equal(hostName('Example.COM.:8080'), 'example.com');
  assert.equal(hostName('[::1]:18080'), '::1');
  assert.equal(hostName('127.0.0.1'), '127.0.0.1');
  assert.equal(hostName('::1'), '::1');
  assert.equal(hostName('a:b:c'), undefined);
  assert.equal(hostName(''), undefined);
});

test('the check by listen address: one address, loopback, every address, allowed names', () => {
  const loop = createHostCheck('127.0.0.1');
  for (const ok of ['127.0.0.1', '127.0.0.1:1', 'localhost:8080', 'LOCALHOST', '[::1]:18080', '127.0.0.2']) assert.equal(loop.refuse(ok, undefined), undefined, ok);
  for (const bad of ['evil.example', 'evil.example:18080', '10.0.0.1', '127.0.0.1.nip.io', 'localhost.evil.example']) assert.equal(loop.refuse(bad, undefined)?.status, 421, bad);
  const one = createHostCheck('10.1.2.3', ['admin.internal']);
  assert.equal(one.refuse('10.1.2.3:18080', undefined), undefined);
  assert.equal(one.refuse('admin.internal', undefined), undefined);
  assert.equal(one.refuse('10.1.2.4', undefined)?.status, 421);
  assert.equal(one.refuse('localhost', undefined)?.status, 421);
  const all = createHostCheck('0.0.0.0');
  assert.equal(all.refuse('192.0.2.7:18080', undefined), undefined);
  assert.equal(all.refuse('localhost', undefined), undefined);
  assert.equal(all.refuse('rebound.example', undefined)?.status, 421);
  assert.equal(createHostCheck('127.0.0.1', ['*']).refuse('anything.example', 'http://anything.example'), undefined);
  // Origins: same names pass; other sites and opaque origins are refused.
  assert.equal(loop.refuse('127.0.0.1', 'http://127.0.0.1:18080'), undefined);
  assert.equal(loop.refuse('127.0.0.1', 'http://localhost:3000'), undefined);
  assert.equal(loop.refuse('127.0.0.1', 'https://evil.example')?.status, 403);
  assert.equal(loop.refuse('127.0.0.1', 'null')?.status, 403);
});

test('a rebound name in Host is refused with 421 naming the flag, and nothing changes; the served address passes', async () => {
  const h = await startHarness();
  try {
    const before = await h.state();
    const rebound = await send(h.url, 'PUT', '/v1/policies/github', { ...json, host: `evil.example:${new URL(h.url).port}` }, put);
    assert.equal(rebound.status, 421);
    assert.equal(rebound.body.error.field, 'Host');
    assert.match(rebound.body.error.message, /not an address this admin API serves/);
    assert.match(rebound.body.error.message, /--admin-allowed-host evil\.example/);
    const read = await send(h.url, 'GET', '/v1/policies', { host: 'evil.example' });
    assert.equal(read.status, 421);
    assert.deepEqual(await h.state(), before);
    const byName = await send(h.url, 'PUT', '/v1/policies/github', { ...json, host: 'localhost:9999' }, put);
    assert.equal(byName.status, 200);
    const byAddress = await send(h.url, 'GET', '/v1/policies/github', { host: new URL(h.url).host });
    assert.equal(byAddress.status, 200);
  } finally {
    await h.close();
  }
});

test('--admin-allowed-host lets a named proxy through', async () => {
  const h = await startHarness({ allowedHosts: ['egress-admin.internal'] });
  try {
    assert.equal((await send(h.url, 'GET', '/v1/policies', { host: 'egress-admin.internal:443' })).status, 200);
    assert.equal((await send(h.url, 'GET', '/v1/policies', { host: 'other.internal' })).status, 421);
  } finally {
    await h.close();
  }
});

test('no CORS: a cross-site write is refused (403), a preflight gets no permission, and no reply carries Access-Control headers', async () => {
  const h = await startHarness();
  try {
    const before = await h.state();
    const host = new URL(h.url).host;
    // A form POST needs no preflight: refused by its Origin, whatever its type.
    const cross = await send(h.url, 'POST', '/v1/check', { host, origin: 'https://evil.example', 'content-type': 'text/plain' }, '{}');
    assert.equal(cross.status, 403);
    assert.equal(cross.body.error.field, 'Origin');
    const preflight = await send(h.url, 'OPTIONS', '/v1/policies/github', {
      host, origin: 'https://evil.example', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'content-type',
    });
    assert.ok(preflight.status >= 400, String(preflight.status));
    const sameOrigin = await send(h.url, 'OPTIONS', '/v1/policies/github', { host, origin: h.url, 'access-control-request-method': 'PUT' });
    const plain = await send(h.url, 'GET', '/v1/policies', { host, origin: h.url });
    assert.equal(plain.status, 200);
    for (const reply of [cross, preflight, sameOrigin, plain]) {
      assert.deepEqual(Object.keys(reply.headers).filter((k) => k.startsWith('access-control-')), []);
    }
    assert.deepEqual(await h.state(), before);
  } finally {
    await h.close();
  }
});
