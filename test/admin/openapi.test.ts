import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openApiDocument } from '../../src/admin/openapi.js';
import { startHarness } from './harness.js';

const OPERATIONS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

test('every route the server serves is in the OpenAPI document, and nothing else', async () => {
  const h = await startHarness();
  try {
    const served = h.server.routes.flatMap((r) => r.methods.map((m) => `${m.toLowerCase()} ${r.template}`)).sort();
    const documented = Object.entries(openApiDocument.paths)
      .flatMap(([path, item]) => Object.keys(item).filter((k) => OPERATIONS.includes(k)).map((m) => `${m} ${path}`))
      .sort();
    assert.deepEqual(documented, served);
    // Public (no token) routes are documented with an empty security list.
    for (const route of h.server.routes) {
      const item = openApiDocument.paths[route.template as keyof typeof openApiDocument.paths] as Record<string, { security?: unknown[] }>;
      for (const method of route.methods) assert.equal(item[method.toLowerCase()]!.security?.length === 0, route.public, `${method} ${route.template}`);
    }
    // And the server answers every documented operation (neither 404 nor 405).
    for (const op of documented) {
      const [method, template] = op.split(' ') as [string, string];
      const path = template.replace('{name}', 'probe');
      const body = method === 'put' || method === 'post' ? { body: {} } : {};
      const r = await h.request(method.toUpperCase(), path, body);
      assert.ok(r.status !== 405 && !(r.status === 404 && /no route/.test(r.text)), `${op} -> ${r.status}`);
    }
    const served200 = await h.request('GET', '/openapi.json');
    assert.deepEqual(served200.body, JSON.parse(JSON.stringify(openApiDocument)));
  } finally {
    await h.close();
  }
});

test('the OpenAPI document is 3.1 and every $ref resolves', () => {
  assert.equal(openApiDocument.openapi, '3.1.0');
  const refs: string[] = [];
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) value.forEach(walk);
    else if (value && typeof value === 'object') {
      for (const [key, inner] of Object.entries(value)) {
        if (key === '$ref') refs.push(inner as string);
        else walk(inner);
      }
    }
  };
  walk(openApiDocument);
  assert.ok(refs.length > 10);
  for (const ref of refs) {
    const name = ref.replace('#/components/schemas/', '');
    assert.ok(name in openApiDocument.components.schemas, ref);
  }
});
