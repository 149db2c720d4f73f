// POST /v1/policies:batch and `policy batch`: many changes as one commit, one
// store revision, all or nothing. A bad item (invalid spec, missing delete,
// failed ifMatch, a policy file's policy) refuses the whole batch, names the
// item, and changes nothing: no policy, no revision, no history entry.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { EXIT, policyCommand, type CliIo } from '../../src/cli/policy.js';
import { GITHUB, startHarness } from './harness.js';

const spec = (...sni: string[]) => ({ allow: { sni } });

test('a batch of puts and deletes is one commit at one store revision, with one history revision', async () => {
  const h = await startHarness();
  try {
    await h.request('PUT', '/v1/policies/old', { body: spec('old.example') });
    await h.request('PUT', '/v1/policies/keep', { body: spec('keep.example') });
    const events: number[] = [];
    h.store.onChange((change) => events.push(change.revision));
    const r = await h.request('POST', '/v1/policies:batch', {
      body: { put: { a: spec('a.example'), b: GITHUB, keep: spec('keep.example') }, delete: ['old'], ifMatch: { old: 1 } },
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, { storeRevision: 3, changed: ['a', 'b', 'old'] });
    assert.equal(r.headers.get('etag'), '"3"');
    assert.deepEqual(events, [3]);
    assert.deepEqual(h.store.list().map((p) => p.name), ['a', 'b', 'keep']);
    const page = await h.store.history({ since: 2 });
    assert.deepEqual(page.entries.map((e) => [e.storeRevision, e.action, e.name]), [[3, 'put', 'a'], [3, 'put', 'b'], [3, 'delete', 'old']]);
  } finally {
    await h.close();
  }
});

test('one bad item refuses the whole batch, naming it; nothing changes', async () => {
  const h = await startHarness();
  try {
    await h.request('PUT', '/v1/policies/web', { body: spec('web.example') });
    const before = await h.state();
    const cases: Array<[unknown, number, string]> = [
      [{ put: { a: spec('a.example'), b: { allow: { sni: ['not a name'] } } } }, 400, 'put.b.allow.sni[0]'],
      [{ put: { a: spec('a.example') }, delete: ['ghost'] }, 404, 'ghost'],
      [{ put: { a: spec('a.example'), web: spec('x.example') }, ifMatch: { web: 7 } }, 412, 'web'],
      [{ put: { a: spec('a.example') }, delete: ['a'] }, 400, 'delete[0]'],
      [{ put: { a: spec('a.example') }, ifMatch: { z: 1 } }, 400, 'ifMatch.z'],
      [{ put: { 'Bad Name': spec('a.example') } }, 400, 'put.Bad Name'],
      [{ puts: {} }, 400, 'puts'],
      [[], 400, 'body'],
    ];
    for (const [body, status, field] of cases) {
      const r = await h.request('POST', '/v1/policies:batch', { body });
      assert.equal(r.status, status, `${JSON.stringify(body)} -> ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.field, field, JSON.stringify(r.body));
      assert.deepEqual(await h.state(), before, JSON.stringify(body));
    }
    // A policy file's policy refuses the batch too (409), nothing applied.
    const release = h.store.claimSource('file:/etc/p.yaml');
    await h.store.apply([{ name: 'filed', spec: spec('f.example') }], { client: 'test', source: 'file:/etc/p.yaml' });
    const withFile = await h.state();
    const r = await h.request('POST', '/v1/policies:batch', { body: { put: { a: spec('a.example'), filed: spec('g.example') } } });
    assert.equal(r.status, 409);
    assert.match(r.body.error.message, /nothing in the batch was applied/);
    assert.deepEqual(await h.state(), withFile);
    release();
    const text = await h.request('POST', '/v1/policies:batch', { raw: '{}', headers: { 'content-type': 'text/plain' } });
    assert.equal(text.status, 415);
  } finally {
    await h.close();
  }
});

test('policy batch --file: one commit from a YAML file; a refusal exits 1 and changes nothing', async () => {
  const h = await startHarness();
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (t) => out.push(t), err: (t) => err.push(t), env: { EGRESS_XDS_ADMIN_URL: h.url }, stdin: async () => '' };
  try {
    const file = join(h.dataDir, '..', 'batch.yaml');
    await writeFile(file, 'put:\n  one:\n    allow: {sni: [one.example]}\n  two:\n    allow: {sni: [two.example]}\n');
    assert.equal(await policyCommand(['batch', '--file', file], io), EXIT.ok, err.join(''));
    assert.match(out.join(''), /committed at store revision 1: one, two/);
    await writeFile(file, 'put:\n  three:\n    allow: {sni: [three.example]}\ndelete: [one, ghost]\n');
    const before = await h.state();
    assert.equal(await policyCommand(['batch', '--file', file], io), EXIT.failed);
    assert.match(err.join(''), /404 ghost: policy "ghost" does not exist/);
    assert.deepEqual(await h.state(), before);
    assert.equal(await policyCommand(['batch'], io), EXIT.usage);
  } finally {
    await h.close();
  }
});
