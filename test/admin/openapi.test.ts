import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { openApiDocument } from '../../src/admin/openapi.js';
import { batchShape } from '../../src/admin/batchRequest.js';
import { checkShape } from '../../src/admin/checkRequest.js';
import { forwardHttpShape, forwardTlsShape } from '../../src/admin/forwardCheckRequest.js';
import { policyNameShape, policySpecShape } from '../../src/policy/validate.js';
import { MESSAGE_KEYWORDS } from '../../src/schema/errorMessage.js';
import { compiledSchemas } from '../../src/schema/validator.js';
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

// A schema of the document, following one $ref into components.schemas.
const resolve = (schema: unknown): object => {
  const ref = (schema as { $ref?: string }).$ref;
  if (ref === undefined) return schema as object;
  const name = ref.replace('#/components/schemas/', '');
  return (openApiDocument.components.schemas as Record<string, object>)[name]!;
};

test('each request body in the document is the very schema object its route validates with (one source)', () => {
  const paths = openApiDocument.paths as unknown as Record<string, Record<string, { operationId: string; requestBody?: { content: Record<string, { schema: unknown }> } }>>;
  const bodies = new Map<string, object[]>();
  for (const item of Object.values(paths)) {
    for (const [method, operation] of Object.entries(item)) {
      if (!OPERATIONS.includes(method) || !operation.requestBody) continue;
      const schema = operation.requestBody.content['application/json']!.schema as { oneOf?: unknown[] };
      bodies.set(operation.operationId, (schema.oneOf ?? [schema]).map(resolve));
    }
  }
  // What each route handler calls (routes.ts) and the object it was compiled from.
  assert.deepEqual(
    [...bodies.keys()].sort(),
    ['batchPolicies', 'check', 'putPolicy'],
    'a new route with a body: add its validator here',
  );
  assert.deepEqual(bodies.get('putPolicy'), [policySpecShape.schema]);
  assert.deepEqual(bodies.get('batchPolicies'), [batchShape.schema]);
  assert.deepEqual(bodies.get('check'), [checkShape.schema, forwardHttpShape.schema, forwardTlsShape.schema]);
  for (const [operation, schemas] of bodies) {
    for (const schema of schemas) assert.ok(compiledSchemas().has(schema), `${operation}: its schema is compiled by a validator`);
  }
  // Identity, not equality: the document holds the objects themselves.
  assert.equal(bodies.get('putPolicy')![0], policySpecShape.schema);
  assert.equal(openApiDocument.components.schemas.PolicySpec, policySpecShape.schema);
  assert.equal((batchShape.schema as typeof openApiDocument.components.schemas.BatchRequest).properties.put.additionalProperties, policySpecShape.schema);
  assert.equal(openApiDocument.components.schemas.Allowlist, openApiDocument.components.schemas.PolicySpec.properties.allow);
  // The policy name in the path is the PolicyName schema the handlers check it with.
  const nameParameter = paths['/v1/policies/{name}'] as unknown as { parameters: Array<{ schema: unknown }> };
  assert.equal(resolve(nameParameter.parameters[0]!.schema), policyNameShape.schema);
});

test('every schema in the document is valid JSON Schema 2020-12 (OpenAPI 3.1\'s dialect), its $refs resolved, under ajv strict mode', () => {
  const ajv = new Ajv2020({ strict: true, formats: { 'date-time': true } });
  for (const keyword of MESSAGE_KEYWORDS) ajv.addKeyword(keyword);
  const base = 'https://egress-xds.invalid/schemas/';
  // $refs of the document ("#/components/schemas/X") become ids of their own.
  const rebase = (value: unknown): unknown =>
    Array.isArray(value)
      ? value.map(rebase)
      : value && typeof value === 'object'
        ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, k === '$ref' ? `${base}${String(v).replace('#/components/schemas/', '')}` : rebase(v)]))
        : value;
  const schemas = openApiDocument.components.schemas as Record<string, unknown>;
  for (const [name, schema] of Object.entries(schemas)) ajv.addSchema(rebase(schema) as object, `${base}${name}`);
  for (const name of Object.keys(schemas)) assert.doesNotThrow(() => ajv.getSchema(`${base}${name}`), name);
  // Request schemas inside paths (the oneOf of /v1/check) compile too.
  const check = openApiDocument.paths['/v1/check'].post.requestBody.content['application/json'].schema;
  const validate = ajv.compile(rebase(check) as object);
  assert.equal(validate({ node: 'n', source: '10.0.0.1', destination: '1.2.3.4:443' }), true);
  assert.equal(validate({ node: 'n', source: '10.0.0.1', listener: 'forward-http', authority: 'a.com:443' }), true);
  assert.equal(validate({ node: 'n', source: '10.0.0.1', listener: 'forward-tls', destination: '1.2.3.4:443' }), false);
});
