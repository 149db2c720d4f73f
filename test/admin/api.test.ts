import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger } from '../../src/log.js';
import { watchPolicyFile } from '../../src/store/policyFileWatch.js';
import { GITHUB, NODES, startHarness } from './harness.js';

test('PUT, GET, list, DELETE with revisions and ETags', async () => {
  const h = await startHarness();
  try {
    let r = await h.request('PUT', '/v1/policies/github', { body: { allow: { sni: ['WWW.GitHub.com', 'github.com'] }, sources: ['172.31.0.0/16'] } });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { name: 'github', revision: 1, changed: true });
    assert.equal(r.headers.get('etag'), '"1"');

    r = await h.request('GET', '/v1/policies/github');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('etag'), '"1"');
    assert.equal(r.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.deepEqual({ ...r.body, updatedAt: undefined }, { name: 'github', revision: 1, updatedAt: undefined, source: 'api', ...GITHUB });

    r = await h.request('PUT', '/v1/policies/github', { body: GITHUB });
    assert.deepEqual(r.body, { name: 'github', revision: 1, changed: false }, 'same meaning: nothing written');

    r = await h.request('PUT', '/v1/policies/internal', { body: { nodes: ['host-*'], allow: { cidrs: [{ cidr: '10.0.0.0/8', ports: [443] }] } } });
    assert.equal(r.status, 200);
    r = await h.request('GET', '/v1/policies');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.map((p: { name: string }) => p.name), ['github', 'internal']);
    assert.equal(r.headers.get('etag'), '"2"');

    r = await h.request('DELETE', '/v1/policies/internal');
    assert.deepEqual(r.body, { name: 'internal', revision: 2, changed: true });
    r = await h.request('GET', '/v1/policies/internal');
    assert.equal(r.status, 404);
    assert.match(r.body.error.message, /policy "internal" does not exist/);
    r = await h.request('DELETE', '/v1/policies/internal');
    assert.equal(r.status, 404);
  } finally {
    await h.close();
  }
});

test('If-Match: 412 when the policy moved on or does not exist; nothing changes', async () => {
  const h = await startHarness();
  try {
    let r = await h.request('PUT', '/v1/policies/github', { body: GITHUB, headers: { 'if-match': '"1"' } });
    assert.equal(r.status, 412);
    assert.match(r.body.error.message, /does not exist/);
    await h.request('PUT', '/v1/policies/github', { body: GITHUB });
    await h.request('PUT', '/v1/policies/github', { body: { allow: { sni: ['github.com'] } } });
    const before = await h.state();
    r = await h.request('PUT', '/v1/policies/github', { body: GITHUB, headers: { 'if-match': '"1"' } });
    assert.equal(r.status, 412);
    assert.match(r.body.error.message, /at revision 2, not 1/);
    r = await h.request('DELETE', '/v1/policies/github', { headers: { 'if-match': '1' } });
    assert.equal(r.status, 412);
    r = await h.request('PUT', '/v1/policies/github', { body: GITHUB, headers: { 'if-none-match': '*' } });
    assert.equal(r.status, 412);
    assert.deepEqual(await h.state(), before);
    r = await h.request('PUT', '/v1/policies/github', { body: GITHUB, headers: { 'if-match': '"2"' } });
    assert.deepEqual([r.status, r.body.revision], [200, 3]);
    r = await h.request('DELETE', '/v1/policies/github', { headers: { 'if-match': '"3"' } });
    assert.equal(r.status, 200);
  } finally {
    await h.close();
  }
});

test('a policy owned by the policy file: API writes get 409 naming the file', async () => {
  const h = await startHarness();
  const file = join(h.dataDir, '..', 'policies.yaml');
  await writeFile(file, 'policies:\n  github:\n    allow: {sni: [github.com]}\n');
  const watcher = await watchPolicyFile({ store: h.store, path: file, logger: silentLogger, pollMs: 0 });
  try {
    const before = await h.state();
    let r = await h.request('PUT', '/v1/policies/github', { body: GITHUB });
    assert.equal(r.status, 409);
    assert.ok(r.body.error.message.includes(file), r.body.error.message);
    r = await h.request('DELETE', '/v1/policies/github');
    assert.equal(r.status, 409);
    assert.deepEqual(await h.state(), before);
    r = await h.request('GET', '/v1/policies/github');
    assert.equal(r.body.source, `file:${file}`);
  } finally {
    await watcher.close();
    await h.close();
  }
});

test('history records what, when, which revision and who', async () => {
  const h = await startHarness();
  try {
    await h.request('PUT', '/v1/policies/github', { body: GITHUB, headers: { 'user-agent': 'ops-script/1.0' } });
    await h.request('DELETE', '/v1/policies/github');
    const r = await h.request('GET', '/v1/history');
    assert.equal(r.status, 200);
    const entries = r.body.entries;
    assert.deepEqual(entries.map((e: any) => [e.storeRevision, e.action, e.name, e.revision]), [[1, 'put', 'github', 1], [2, 'delete', 'github', 2]]);
    assert.equal(r.body.next, undefined);
    assert.match(entries[0].client, /^127\.0\.0\.1 agent:"ops-script\/1\.0"$/);
    assert.deepEqual(entries[0].spec, GITHUB);
    assert.ok(!Number.isNaN(Date.parse(entries[0].at)));
    const page = await h.request('GET', '/v1/history?since=1&limit=5');
    assert.deepEqual(page.body.entries.map((e: any) => e.storeRevision), [2]);
    // Paging back from the newest: each page's next is the before= of the older one.
    const newest = await h.request('GET', '/v1/history?limit=1');
    assert.deepEqual([newest.body.entries.map((e: any) => e.storeRevision), newest.body.next], [[2], 2]);
    const older = await h.request('GET', `/v1/history?limit=1&before=${newest.body.next}`);
    assert.deepEqual([older.body.entries.map((e: any) => e.storeRevision), older.body.next], [[1], undefined]);
  } finally {
    await h.close();
  }
});

test('nodes, check, healthz, readyz', async () => {
  const h = await startHarness();
  try {
    await h.request('PUT', '/v1/policies/github', { body: GITHUB });
    await h.request('PUT', '/v1/policies/v6', { body: { allow: { cidrs: [{ cidr: '2001:db8::/32', ports: [443] }] } } });
    let r = await h.request('GET', '/v1/nodes');
    assert.deepEqual(r.body, NODES);
    r = await h.request('POST', '/v1/check', { body: { node: 'host-a', source: '172.31.0.9', destination: '140.82.112.3:443', sni: 'GitHub.com' } });
    assert.deepEqual(r.body, { verdict: 'allow', policy: 'github', filterChain: 'allow-github', path: ['allow-github'], upstream: { kind: 'name', address: 'github.com:443' } });
    r = await h.request('POST', '/v1/check', { body: { node: 'host-a', source: '10.9.9.9', destination: '140.82.112.3:443', sni: 'github.com' } });
    assert.deepEqual(r.body, { verdict: 'deny', policy: null, filterChain: 'default', path: [], upstream: null });
    r = await h.request('POST', '/v1/check', { body: { node: 'host-a', source: '10.9.9.9', destination: '[2001:db8::1]:443' } });
    assert.deepEqual(r.body, { verdict: 'allow', policy: 'v6', filterChain: 'allow-v6', path: ['allow-v6'], upstream: { kind: 'original-destination', address: '[2001:db8::1]:443' } });

    assert.deepEqual((await h.request('GET', '/healthz')).body, { status: 'ok' });
    assert.deepEqual(await h.request('GET', '/readyz').then((x) => [x.status, x.body]), [200, { ready: true }]);
    h.view.isReady = false;
    assert.deepEqual(await h.request('GET', '/readyz').then((x) => [x.status, x.body]), [503, { ready: false }]);
  } finally {
    await h.close();
  }
});

test('/metrics: request counts by route template and status, policy count, revision', async () => {
  const h = await startHarness();
  try {
    await h.request('PUT', '/v1/policies/github', { body: GITHUB });
    await h.request('PUT', '/v1/policies/other', { body: { allow: {} } });
    await h.request('GET', '/v1/policies/nope');
    await h.request('GET', '/nowhere/at/all');
    const r = await h.request('GET', '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type')!, /^text\/plain/);
    assert.match(r.text, /egress_xds_admin_requests_total\{route="\/v1\/policies\/\{name\}",method="PUT",status="200"\} 2/);
    assert.match(r.text, /egress_xds_admin_requests_total\{route="\/v1\/policies\/\{name\}",method="GET",status="404"\} 1/);
    assert.match(r.text, /egress_xds_admin_requests_total\{route="unmatched",method="GET",status="404"\} 1/);
    assert.match(r.text, /^egress_xds_policies 2$/m);
    assert.match(r.text, /^egress_xds_config_revision 2$/m);
    // Two PUTs one after the other: two commits, each its own fsync.
    assert.match(r.text, /^egress_xds_store_commits_total 2$/m);
    assert.match(r.text, /^egress_xds_store_fsyncs_total 2$/m);
    assert.doesNotMatch(r.text, /nowhere/);
  } finally {
    await h.close();
  }
});

test('unknown route 404, wrong method 405 with Allow, HEAD like GET', async () => {
  const h = await startHarness();
  try {
    let r = await h.request('GET', '/v2/policies');
    assert.equal(r.status, 404);
    assert.match(r.body.error.message, /no route for \/v2\/policies/);
    r = await h.request('GET', '/v1/policies/');
    assert.equal(r.status, 404);
    r = await h.request('POST', '/v1/policies/github', { body: GITHUB });
    assert.equal(r.status, 405);
    assert.equal(r.headers.get('allow'), 'GET, HEAD, PUT, DELETE');
    r = await h.request('DELETE', '/v1/policies');
    assert.deepEqual([r.status, r.headers.get('allow')], [405, 'GET, HEAD']);
    r = await h.request('GET', '/v1/check');
    assert.deepEqual([r.status, r.headers.get('allow')], [405, 'POST']);
    r = await h.request('HEAD', '/v1/policies');
    assert.deepEqual([r.status, r.text], [200, '']);
  } finally {
    await h.close();
  }
});

/** Raw HTTP for bodies fetch will not send as we want (chunked, oversized). */
function rawRequest(url: string, path: string, headers: Record<string, string>, chunks: Buffer[]): Promise<{ status: number; body: any; connection?: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${path}`, { method: 'PUT', headers }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text), connection: res.headers.connection }));
    });
    req.on('error', (error) => reject(error));
    for (const chunk of chunks) req.write(chunk);
    req.end();
  });
}

test('413 for a body over the limit (declared or streamed), 415 for non-JSON; nothing changes', async () => {
  const h = await startHarness({ bodyLimit: 4096 });
  try {
    const before = await h.state();
    const big = JSON.stringify({ allow: { sni: Array.from({ length: 400 }, (_, i) => `n${i}.example.com`) } });
    let r = await h.request('PUT', '/v1/policies/big', { raw: big, headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 413);
    assert.match(r.body.error.message, /larger than 4096 bytes/);
    const chunked = await rawRequest(h.url, '/v1/policies/big', { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, [Buffer.from(big)]);
    assert.equal(chunked.status, 413);
    assert.equal(chunked.connection, 'close');

    r = await h.request('PUT', '/v1/policies/github', { raw: JSON.stringify(GITHUB), headers: { 'content-type': 'text/plain' } });
    assert.equal(r.status, 415);
    assert.equal(r.body.error.field, 'Content-Type');
    assert.match(r.body.error.message, /Content-Type is text\/plain/);
    // The error says how to fix the request.
    assert.ok(r.body.error.message.includes("-H 'Content-Type: application/json'"), r.body.error.message);
    r = await h.request('PUT', '/v1/policies/github', { raw: JSON.stringify(GITHUB) });
    assert.equal(r.status, 415);
    r = await h.request('POST', '/v1/check', { raw: '{}', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(r.status, 415);
    assert.match(r.body.error.message, /curl -d sends a form type/);
    assert.deepEqual(await h.state(), before);
    // application/merge-patch+json style types and charset parameters are JSON too.
    r = await h.request('PUT', '/v1/policies/github', { raw: JSON.stringify(GITHUB), headers: { 'content-type': 'application/json; charset=utf-8' } });
    assert.equal(r.status, 200);
  } finally {
    await h.close();
  }
});

test('a client that hangs up mid-body is a 400, not a server error; nothing changes', async () => {
  const h = await startHarness();
  try {
    const before = await h.state();
    const socket = connect(Number(new URL(h.url).port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('PUT /v1/policies/web HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"allow":');
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.destroy();
    const logged = () => h.logLines.map((line) => JSON.parse(line) as { msg: string; status?: number }).filter((l) => l.msg === 'admin request' || l.msg.startsWith('admin:'));
    for (let i = 0; i < 100 && !logged().some((l) => l.msg === 'admin request'); i++) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(logged().map((l) => [l.msg, l.status]), [['admin request', 400]]);
    const counted = await h.metrics.adminRequests.get();
    assert.deepEqual(counted.values.map((v) => [v.labels.route, v.labels.status, v.value]), [['/v1/policies/{name}', '400', 1]]);
    assert.deepEqual(await h.state(), before);
  } finally {
    await h.close();
  }
});

test('the default body limit is 1 MiB', async () => {
  const h = await startHarness();
  try {
    const r = await h.request('PUT', '/v1/policies/big', { raw: `{"allow":{"sni":[]},"x":"${'a'.repeat(1024 * 1024)}"}`, headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 413);
    assert.match(r.body.error.message, /larger than 1048576 bytes/);
  } finally {
    await h.close();
  }
});
