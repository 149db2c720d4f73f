// Bad input over real HTTP: the right status, field and reason, and the store
// exactly as it was (policies, history, revision).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GITHUB, startHarness } from './harness.js';

type Case = [what: string, method: string, path: string, options: { body?: unknown; raw?: string; headers?: Record<string, string> }, status: number, field: string | undefined, message: RegExp];
const json = { 'content-type': 'application/json' };

const cases: Case[] = [
  ['bad JSON', 'PUT', '/v1/policies/web', { raw: '{"allow":', headers: json }, 400, 'body', /not valid JSON/],
  ['empty body', 'PUT', '/v1/policies/web', { raw: '', headers: json }, 400, 'body', /body is empty/],
  ['body an array', 'PUT', '/v1/policies/web', { body: [GITHUB] }, 400, 'body', /must be an object, got an array/],
  ['body a number', 'PUT', '/v1/policies/web', { body: 42 }, 400, 'body', /must be an object, got a number/],
  ['unknown field', 'PUT', '/v1/policies/web', { body: { ...GITHUB, priority: 1 } }, 400, 'priority', /unknown field/],
  ['name inside the body', 'PUT', '/v1/policies/web', { body: { ...GITHUB, name: 'web' } }, 400, 'name', /unknown field/],
  ['__proto__ field', 'PUT', '/v1/policies/web', { raw: '{"allow":{"sni":[]},"__proto__":{"x":1}}', headers: json }, 400, '__proto__', /unknown field/],
  ['allow missing', 'PUT', '/v1/policies/web', { body: { sources: ['10.0.0.0/8'] } }, 400, 'allow', /is required/],
  ['unknown allow field', 'PUT', '/v1/policies/web', { body: { allow: { sni: [], domains: [] } } }, 400, 'allow.domains', /unknown field/],
  ['bad source', 'PUT', '/v1/policies/web', { body: { sources: ['10.0.0.0/8', '300.0.0.0/8'], allow: {} } }, 400, 'sources[1]', /"300\.0\.0\.0" is not an IPv4 or IPv6 address/],
  ['source host bits', 'PUT', '/v1/policies/web', { body: { sources: ['172.31.5.5/16'], allow: {} } }, 400, 'sources[0]', /host bits set; the network is "172\.31\.0\.0\/16"/],
  ['empty sources', 'PUT', '/v1/policies/web', { body: { sources: [], allow: {} } }, 400, 'sources', /must not be empty/],
  ['bad node glob', 'PUT', '/v1/policies/web', { body: { nodes: ['host/1'], allow: {} } }, 400, 'nodes[0]', /may hold only/],
  ['sni IP literal', 'PUT', '/v1/policies/web', { body: { allow: { sni: ['1.2.3.4'] } } }, 400, 'allow.sni[0]', /IP address/],
  ['sni lone star', 'PUT', '/v1/policies/web', { body: { allow: { sni: ['ok.com', '*'] } } }, 400, 'allow.sni[1]', /lone/],
  ['sni partial wildcard', 'PUT', '/v1/policies/web', { body: { allow: { sni: ['a*.b.com'] } } }, 400, 'allow.sni[0]', /partial/],
  ['sni non-ASCII', 'PUT', '/v1/policies/web', { body: { allow: { sni: ['münchen.de'] } } }, 400, 'allow.sni[0]', /xn--mnchen-3ya\.de/],
  ['sni long label', 'PUT', '/v1/policies/web', { body: { allow: { sni: [`${'x'.repeat(64)}.com`] } } }, 400, 'allow.sni[0]', /at most 63/],
  ['port out of range', 'PUT', '/v1/policies/web', { body: { allow: { cidrs: [{ cidr: '10.0.0.0/8', ports: [70000] }] } } }, 400, 'allow.cidrs[0].ports[0]', /1 to 65535/],
  ['cidr entry missing cidr', 'PUT', '/v1/policies/web', { body: { allow: { cidrs: [{}] } } }, 400, 'allow.cidrs[0].cidr', /is required/],
  ['name upper case', 'PUT', '/v1/policies/Web', { body: GITHUB }, 400, 'name', /lower-case/],
  ['name too long', 'PUT', `/v1/policies/${'a'.repeat(64)}`, { body: GITHUB }, 400, 'name', /at most 63/],
  ['name with encoded slash', 'PUT', '/v1/policies/a%2Fb', { body: GITHUB }, 400, 'name', /lower-case/],
  ['name bad percent-encoding', 'PUT', '/v1/policies/a%zz', { body: GITHUB }, 400, 'name', /percent-encoding/],
  ['name bad on GET', 'GET', '/v1/policies/-x', {}, 400, 'name', /starting and ending/],
  ['name bad on DELETE', 'DELETE', '/v1/policies/x-', {}, 400, 'name', /starting and ending/],
  ['If-Match not a revision', 'PUT', '/v1/policies/web', { body: GITHUB, headers: { 'if-match': 'W/"1"' } }, 400, 'If-Match', /one policy revision/],
  ['If-Match list', 'DELETE', '/v1/policies/web', { headers: { 'if-match': '"1", "2"' } }, 400, 'If-Match', /one policy revision/],
  ['If-None-Match not *', 'PUT', '/v1/policies/web', { body: GITHUB, headers: { 'if-none-match': '"1"' } }, 400, 'If-None-Match', /only "If-None-Match: \*"/],
  ['If-None-Match on DELETE', 'DELETE', '/v1/policies/web', { headers: { 'if-none-match': '*' } }, 400, 'If-None-Match', /on PUT/],
  ['not JSON', 'PUT', '/v1/policies/web', { raw: 'allow: {}', headers: { 'content-type': 'application/yaml' } }, 415, 'Content-Type', /Content-Type is application\/yaml; add -H 'Content-Type: application\/json'/],
  ['check: no node', 'POST', '/v1/check', { body: { source: '10.0.0.1', destination: '1.2.3.4:443' } }, 400, 'node', /is required/],
  ['check: bad source', 'POST', '/v1/check', { body: { node: 'n', source: '10.0.0.0/8', destination: '1.2.3.4:443' } }, 400, 'source', /IPv4 or IPv6 address/],
  ['check: no port', 'POST', '/v1/check', { body: { node: 'n', source: '10.0.0.1', destination: '1.2.3.4' } }, 400, 'destination', /"IP:PORT"/],
  ['check: port 0', 'POST', '/v1/check', { body: { node: 'n', source: '10.0.0.1', destination: '1.2.3.4:0' } }, 400, 'destination', /port 1 to 65535/],
  ['check: unbracketed IPv6', 'POST', '/v1/check', { body: { node: 'n', source: '::1', destination: '2001:db8::1:443' } }, 400, 'destination', /\[2001:db8::1\]:443/],
  ['check: bracketed IPv4', 'POST', '/v1/check', { body: { node: 'n', source: '10.0.0.1', destination: '[1.2.3.4]:443' } }, 400, 'destination', /IP:PORT/],
  ['check: host name', 'POST', '/v1/check', { body: { node: 'n', source: '10.0.0.1', destination: 'github.com:443' } }, 400, 'destination', /IP:PORT/],
  ['check: sni with space', 'POST', '/v1/check', { body: { node: 'n', source: '10.0.0.1', destination: '1.2.3.4:443', sni: 'a b' } }, 400, 'sni', /no spaces/],
  ['check: host with space', 'POST', '/v1/check', { body: { node: 'n', source: '10.0.0.1', destination: '1.2.3.4:80', host: 'a b' } }, 400, 'host', /Host header/],
  ['check: host and sni', 'POST', '/v1/check', { body: { node: 'n', source: '10.0.0.1', destination: '1.2.3.4:80', host: 'a.example', sni: 'a.example' } }, 400, 'host', /plain HTTP/],
  ['check: unknown field', 'POST', '/v1/check', { body: { node: 'n', source: '10.0.0.1', destination: '1.2.3.4:443', port: 1 } }, 400, 'port', /unknown field/],
  ['check: body an array', 'POST', '/v1/check', { body: [] }, 400, 'body', /must be a JSON object/],
  ['check: empty node', 'POST', '/v1/check', { body: { node: '', source: '10.0.0.1', destination: '1.2.3.4:443' } }, 400, 'node', /is required: the Envoy node id/],
  ['check: no destination', 'POST', '/v1/check', { body: { node: 'n', source: '10.0.0.1' } }, 400, 'destination', /is required: "IP:PORT"/],
  ['check: unknown listener', 'POST', '/v1/check', { body: { node: 'n', source: '10.0.0.1', listener: 'sideways' } }, 400, 'listener', /must be "transparent" \(the default\), "forward-http" or "forward-tls"/],
  ['check: sni too long', 'POST', '/v1/check', { body: { node: 'n', source: '10.0.0.1', destination: '1.2.3.4:443', sni: `${'a'.repeat(250)}.com` } }, 400, 'sni', /at most 253 characters/],
  ['check forward-tls: field of another listener', 'POST', '/v1/check', { body: { node: 'n', source: '10.0.0.1', listener: 'forward-tls', destination: '1.2.3.4:443' } }, 400, 'destination', /not used by the forward-tls listener; expected node, source, listener, sni/],
  ['check forward-http: no authority', 'POST', '/v1/check', { body: { node: 'n', source: '10.0.0.1', listener: 'forward-http' } }, 400, 'authority', /is required: the CONNECT target or Host/],
  ['check forward-http: lower-case method', 'POST', '/v1/check', { body: { node: 'n', source: '10.0.0.1', listener: 'forward-http', authority: 'a.com:443', method: 'get' } }, 400, 'method', /HTTP method in capitals/],
  ['upstream not a choice', 'PUT', '/v1/policies/web', { body: { upstream: 'dns', allow: {} } }, 400, 'upstream', /"dns" is not one of "name", "original-destination"/],
  ['port as text', 'PUT', '/v1/policies/web', { body: { allow: { cidrs: [{ cidr: '10.0.0.0/8', ports: ['443'] }] } } }, 400, 'allow.cidrs[0].ports[0]', /must be an integer port 1 to 65535, got "443"/],
  ['sni not a list', 'PUT', '/v1/policies/web', { body: { allow: { sni: 'a.com' } } }, 400, 'allow.sni', /must be an array, got a string/],
  ['batch: body an array', 'POST', '/v1/policies:batch', { body: [] }, 400, 'body', /must be a JSON object: \{"put"/],
  ['batch: put a list', 'POST', '/v1/policies:batch', { body: { put: [GITHUB] } }, 400, 'put', /must be an object of policy name to policy/],
  ['batch: bad name', 'POST', '/v1/policies:batch', { body: { put: { 'Web 1': GITHUB } } }, 400, 'put.Web 1', /must be lower-case letters/],
  ['batch: item shape', 'POST', '/v1/policies:batch', { body: { put: { a: GITHUB, b: { allow: { cidrs: [{ cidr: '10.0.0.0/8', ports: [] }] } } } } }, 400, 'put.b.allow.cidrs[0].ports', /must not be empty; leave put.b.allow.cidrs\[0\].ports out for every port/],
  ['batch: item meaning', 'POST', '/v1/policies:batch', { body: { put: { a: GITHUB, b: { sources: ['10.1.2.3/8'], allow: {} } } } }, 400, 'put.b.sources[0]', /host bits set/],
  ['batch: item unknown field', 'POST', '/v1/policies:batch', { body: { put: { b: { allow: {}, priority: 1 } } } }, 400, 'put.b.priority', /unknown field; expected sources, nodes, upstream, mode, log, allow/],
  ['batch: delete not a list', 'POST', '/v1/policies:batch', { body: { delete: 'web' } }, 400, 'delete', /must be an array of policy names/],
  ['batch: delete bad name', 'POST', '/v1/policies:batch', { body: { delete: ['web', '-x'] } }, 400, 'delete[1]', /starting and ending with a letter or digit/],
  ['batch: ifMatch not a revision', 'POST', '/v1/policies:batch', { body: { put: { web: GITHUB }, ifMatch: { web: 'latest' } } }, 400, 'ifMatch.web', /must be a revision \(a whole number, as in the ETag\) or "\*"/],
  ['batch: a policy named "0" is a name, not an index', 'POST', '/v1/policies:batch', { body: { put: { '0': { allow: { sni: [7] } } } } }, 400, 'put.0.allow.sni[0]', /must be a string, got a number/],
  ['batch: "/" and "~" in a name (JSON pointer escapes)', 'POST', '/v1/policies:batch', { body: { put: { web: GITHUB }, ifMatch: { web: 1, 'a/~b': 'x' } } }, 400, 'ifMatch.a/~b', /must be a revision/],
  ['batch: ifMatch negative', 'POST', '/v1/policies:batch', { body: { put: { web: GITHUB }, ifMatch: { web: -1 } } }, 400, 'ifMatch.web', /must be a revision/],
  ['history: limit 0', 'GET', '/v1/history?limit=0', {}, 400, 'limit', /integer 1 to 1000/],
  ['history: limit text', 'GET', '/v1/history?limit=ten', {}, 400, 'limit', /integer/],
  ['history: since negative', 'GET', '/v1/history?since=-1', {}, 400, 'since', /integer 0/],
  ['history: unknown parameter', 'GET', '/v1/history?after=3', {}, 400, 'after', /unknown query parameter/],
  ['delete missing', 'DELETE', '/v1/policies/missing', {}, 404, undefined, /does not exist/],
  ['wrong method', 'PATCH', '/v1/policies/web', { body: GITHUB }, 405, undefined, /PATCH is not allowed/],
];

test('bad input over HTTP: right status, field and reason; the store unchanged', async () => {
  const h = await startHarness();
  try {
    await h.request('PUT', '/v1/policies/web', { body: GITHUB });
    const before = await h.state();
    for (const [what, method, path, options, status, field, message] of cases) {
      const r = await h.request(method, path, options);
      assert.equal(r.status, status, `${what}: ${r.text}`);
      assert.equal(r.body?.error?.field, field, `${what}: ${r.text}`);
      assert.match(r.body.error.message, message, what);
      assert.deepEqual(await h.state(), before, `${what} changed the store`);
    }
    // The server still works after all of that.
    assert.equal((await h.request('PUT', '/v1/policies/web', { body: { allow: { sni: ['ok.example.com'] } } })).status, 200);
  } finally {
    await h.close();
  }
});
