// serve --forward-proxy end to end: an Envoy-like ADS client receives the forward
// proxy's listeners (strictly decoded), with or without the transparent one, and
// POST /v1/check answers for forward-http and forward-tls through the served resources;
// a policy change reaches both. The flags refuse bad values with a message naming them.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseForwardFlags } from '../../src/cli/forwardFlags.js';
import { UsageError } from '../../src/cli/flags.js';
import { silentLogger } from '../../src/log.js';
import { startControlPlane, type ControlPlane } from '../../src/server/controlPlane.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { FakeEnvoy } from '../support/fakeEnvoy.js';

const LDS = TypeUrl.Listener;
const CDS = TypeUrl.Cluster;

describe('serve --forward-proxy --transparent=false', () => {
  let dataDir: string;
  let cp: ControlPlane;
  let base: string;
  const envoys: FakeEnvoy[] = [];
  const check = async (body: unknown) => {
    const response = await fetch(`${base}/v1/check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'egress-xds-forward-'));
    const flags = parseForwardFlags({ 'forward-proxy': true, transparent: 'false', 'dns-resolver': ['127.0.0.11'] });
    cp = await startControlPlane({ xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir, embeddedDefault: true, logger: silentLogger, compile: flags });
    base = `http://127.0.0.1:${cp.admin.port}`;
  });
  after(async () => {
    for (const e of envoys) e.close();
    await cp.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  test('Envoy receives forward_http and forward_tls only, one name cluster with the seed DNS settings', async () => {
    const e = new FakeEnvoy(`127.0.0.1:${cp.xdsPort}`, { nodeId: 'fwd-1', variant: 'sotw' }).connect();
    envoys.push(e);
    await e.waitFor('listeners', () => (e.state.get(LDS)?.size ?? 0) >= 2);
    assert.deepEqual([...e.state.get(LDS)!.keys()].sort(), ['forward_http', 'forward_tls']);
    assert.deepEqual([...e.state.get(CDS)!.keys()].sort(), ['dynamic_forward_proxy_cluster', 'reject_cluster']);
    const cluster = JSON.stringify(e.state.get(CDS)!.get('dynamic_forward_proxy_cluster'));
    assert.match(cluster, /"address":"127\.0\.0\.11","portValue":53/);
    assert.match(cluster, /"useTcpForDnsLookups":true,"noDefaultSearchDomain":true/);
    assert.match(cluster, /"dnsLookupFamily":"V4_ONLY"/);
    // The HTTP filter's cache config is the cluster's, byte for byte (Envoy requires it).
    const http = JSON.stringify(e.state.get(LDS)!.get('forward_http'));
    const cache = JSON.stringify((e.state.get(CDS)!.get('dynamic_forward_proxy_cluster') as { clusterType: { typedConfig: { dnsCacheConfig: unknown } } }).clusterType.typedConfig.dnsCacheConfig);
    assert.ok(http.includes(cache.slice(1, -1)));
  });

  test('POST /v1/check: forward-http CONNECT and absolute-form, allowed and refused, and forward-tls', async () => {
    // The embedded default: github.com and www.github.com from 172.31.0.0/16.
    let r = await check({ node: 'fwd-1', source: '172.31.0.9', listener: 'forward-http', authority: 'github.com:443' });
    assert.equal(r.status, 200);
    assert.equal(r.body['verdict'], 'allow');
    assert.equal(r.body['policy'], 'github');
    assert.equal(r.body['filterChain'], 'forward_http|172.31.0.0/16');
    assert.equal(r.body['route'], 'names / connect name:443');
    assert.deepEqual(r.body['upstream'], { kind: 'name', address: 'github.com:443' });

    r = await check({ node: 'fwd-1', source: '172.31.0.9', listener: 'forward-http', authority: 'example.org:443' });
    assert.deepEqual([r.body['verdict'], r.body['status']], ['deny', 403]);
    assert.equal(r.body['body'], 'egress-xds: example.org:443 refused for 172.31.0.9: no policy selecting this source allows this name (allow.sni)\n');
    assert.deepEqual(r.body['logs'], [{ 'egress.verdict': 'denied', 'egress.reason': 'no-policy', 'egress.listener': 'forward_http', 'egress.chain': 'forward_http|172.31.0.0/16' }]);

    // The loop guard: the proxy's own port on any host, even an allowed name.
    r = await check({ node: 'fwd-1', source: '172.31.0.9', listener: 'forward-http', authority: 'github.com:10000' });
    assert.deepEqual([r.body['verdict'], r.body['status']], ['deny', 403]);
    assert.match(String(r.body['body']), /egress proxy's own \(a loop\)/);
    assert.deepEqual((r.body['logs'] as Record<string, string>[]).map((l) => l['egress.reason']), ['loop']);

    r = await check({ node: 'fwd-1', source: '172.31.0.9', listener: 'forward-http', authority: 'github.com:8443' });
    assert.equal(r.body['status'], 403);
    assert.match(String(r.body['body']), /github\.com:8443 refused .* port 443 .*allow\.cidrs\[\]\.ports/);

    r = await check({ node: 'fwd-1', source: '172.31.0.9', listener: 'forward-http', method: 'GET', authority: 'github.com' });
    assert.deepEqual([r.body['verdict'], r.body['route']], ['allow', 'names / http name']);

    r = await check({ node: 'fwd-1', source: '10.9.9.9', listener: 'forward-http', authority: 'github.com:443' });
    assert.deepEqual([r.body['verdict'], r.body['filterChain']], ['deny', 'forward_http|*']);

    r = await check({ node: 'fwd-1', source: '172.31.0.9', listener: 'forward-tls', sni: 'www.github.com' });
    assert.deepEqual([r.body['listener'], r.body['verdict'], r.body['filterChain']], ['forward-tls', 'allow', 'forward_tls|172.31.0.0/16']);
    r = await check({ node: 'fwd-1', source: '172.31.0.9', listener: 'forward-tls' });
    assert.deepEqual([r.body['verdict'], r.body['filterChain']], ['deny', 'forward_tls_reject']);
  });

  test('a policy change reaches the forward listeners', async () => {
    const put = await fetch(`${base}/v1/policies/addresses`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sources: ['172.31.0.0/16'], allow: { sni: [], cidrs: [{ cidr: '10.1.2.0/24', ports: [5432] }] } }) });
    assert.equal(put.status, 200);
    // The cache may apply a change a moment after the 200 (batched pushes): bounded wait.
    let r = await check({ node: 'fwd-1', source: '172.31.0.9', listener: 'forward-http', authority: '10.1.2.3:5432' });
    for (let i = 0; i < 100 && r.body['verdict'] !== 'allow'; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      r = await check({ node: 'fwd-1', source: '172.31.0.9', listener: 'forward-http', authority: '10.1.2.3:5432' });
    }
    assert.deepEqual([r.body['verdict'], r.body['policy'], r.body['route']], ['allow', 'addresses', 'addresses|5432 / connect address:5432']);
    r = await check({ node: 'fwd-1', source: '172.31.0.9', listener: 'forward-http', authority: '10.1.2.3:22' });
    assert.match(String(r.body['body']), /allowed on port 5432 only/);
  });

  test('bad check bodies are 400s naming the field', async () => {
    const cases: [unknown, string][] = [
      [{ node: 'fwd-1', source: '172.31.0.9', listener: 'forward-http' }, 'authority'],
      [{ node: 'fwd-1', source: '172.31.0.9', listener: 'forward-http', authority: 'a.com/x' }, 'authority'],
      [{ node: 'fwd-1', source: '172.31.0.9', listener: 'forward-http', authority: 'a.com:443', method: 'connect' }, 'method'],
      [{ node: 'fwd-1', source: '172.31.0.9', listener: 'forward-http', authority: 'a.com:443', innerSni: 'a b' }, 'innerSni'],
      [{ node: 'fwd-1', source: '172.31.0.9', listener: 'forward-tls', innerSni: 'a.com' }, 'innerSni'],
      [{ node: 'fwd-1', source: '172.31.0.9', listener: 'forward-tls', destination: '1.2.3.4:443' }, 'destination'],
      [{ node: 'fwd-1', source: 'nope', listener: 'forward-tls' }, 'source'],
      [{ node: 'fwd-1', source: '172.31.0.9', listener: 'sideways', destination: '1.2.3.4:443' }, 'listener'],
    ];
    for (const [body, field] of cases) {
      const r = await check(body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal((r.body['error'] as { field: string }).field, field, JSON.stringify(body));
    }
  });
});

describe('serve --forward-proxy --forward-proxy-inspect-connect', () => {
  let dataDir: string;
  let cp: ControlPlane;
  let base: string;
  const envoys: FakeEnvoy[] = [];
  const check = async (body: unknown) => {
    const response = await fetch(`${base}/v1/check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'egress-xds-inspect-'));
    const flags = parseForwardFlags({ 'forward-proxy': true, 'forward-proxy-inspect-connect': true, transparent: 'false' });
    cp = await startControlPlane({ xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir, embeddedDefault: true, logger: silentLogger, compile: flags });
    base = `http://127.0.0.1:${cp.admin.port}`;
  });
  after(async () => {
    for (const e of envoys) e.close();
    await cp.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  test('Envoy receives the internal listener and its cluster, strictly decoded; the CONNECT route goes there', async () => {
    const e = new FakeEnvoy(`127.0.0.1:${cp.xdsPort}`, { nodeId: 'fwd-2', variant: 'sotw' }).connect();
    envoys.push(e);
    await e.waitFor('listeners', () => (e.state.get(LDS)?.size ?? 0) >= 3);
    const names = [...e.state.get(LDS)!.keys()].sort();
    assert.equal(names.length, 3, names.join(' '));
    const inspect = names.find((n) => n.startsWith('forward_inspect|'))!;
    assert.match(inspect, /^forward_inspect\|[0-9a-f]{16}$/);
    const listener = e.state.get(LDS)!.get(inspect) as { internalListener?: unknown; address?: unknown };
    assert.ok(listener.internalListener !== undefined && listener.address === undefined, 'an internal listener, with no address');
    const cluster = e.state.get(CDS)!.get(inspect) as { loadAssignment: { endpoints: { lbEndpoints: { endpoint: { address: unknown } }[] }[] } };
    assert.deepEqual(cluster.loadAssignment.endpoints[0]!.lbEndpoints[0]!.endpoint.address, { envoyInternalAddress: { serverListenerName: inspect } });
    assert.ok(JSON.stringify(e.state.get(LDS)!.get('forward_http')).includes(`"cluster":"${inspect}"`));
  });

  test('POST /v1/check: the SNI inside an allowed CONNECT decides (domain fronting refused)', async () => {
    // The embedded default: github.com and www.github.com from 172.31.0.0/16.
    let r = await check({ node: 'fwd-2', source: '172.31.0.9', listener: 'forward-http', authority: 'github.com:443' });
    assert.equal(r.body['verdict'], 'allow', JSON.stringify(r.body));
    assert.deepEqual(r.body['upstream'], { kind: 'name', address: 'github.com:443' });
    r = await check({ node: 'fwd-2', source: '172.31.0.9', listener: 'forward-http', authority: 'github.com:443', innerSni: 'www.github.com' });
    assert.equal(r.body['verdict'], 'allow');
    assert.deepEqual(r.body['upstream'], { kind: 'name', address: 'www.github.com:443' });
    r = await check({ node: 'fwd-2', source: '172.31.0.9', listener: 'forward-http', authority: 'github.com:443', innerSni: 'evil.example' });
    assert.equal(r.body['verdict'], 'deny', JSON.stringify(r.body));
    assert.ok((r.body['path'] as string[]).some((step) => /\|reject/.test(step)), JSON.stringify(r.body['path']));
    assert.ok((r.body['logs'] as Record<string, string>[]).some((l) => l['egress.verdict'] === 'denied' && l['egress.reason'] === 'no-policy'));
    r = await check({ node: 'fwd-2', source: '172.31.0.9', listener: 'forward-http', authority: 'github.com:443', innerSni: '' });
    assert.equal(r.body['verdict'], 'deny', 'no SNI inside: closed');
  });
});

describe('forward proxy flags', () => {
  test('defaults: seed 000 ports and address, V4_ONLY, the transparent listener kept', () => {
    assert.deepEqual(parseForwardFlags({ 'forward-proxy': true }), {
      forwardProxy: { address: '0.0.0.0', httpPort: 10000, tlsPort: 10001 },
      transparent: true,
      dnsCache: { lookupFamily: 'V4_ONLY' },
    });
    assert.deepEqual(parseForwardFlags({ 'dns-resolver': ['10.0.0.2', '[2001:db8::53]:5353'], 'dns-lookup-family': 'ALL' }), {
      dnsCache: { resolvers: ['10.0.0.2', '[2001:db8::53]:5353'], lookupFamily: 'ALL' },
    });
  });

  test('bad values are usage errors naming the flag', () => {
    const bad: [Parameters<typeof parseForwardFlags>[0], RegExp][] = [
      [{ transparent: 'false' }, /--transparent=false leaves no listener/],
      [{ 'forward-proxy-ports': '1,2' }, /needs --forward-proxy/],
      [{ 'forward-proxy': true, 'forward-proxy-ports': '10000' }, /two ports/],
      [{ 'forward-proxy': true, 'forward-proxy-ports': '10000,10000' }, /different/],
      [{ 'forward-proxy': true, 'forward-proxy-ports': '10000,70000' }, /from 1 to 65535/],
      [{ 'forward-proxy': true, 'forward-proxy-address': 'envoy' }, /--forward-proxy-address must be an IP/],
      [{ 'forward-proxy': true, transparent: 'no' }, /--transparent must be true or false/],
      [{ 'dns-resolver': ['dns.google'] }, /--dns-resolver must be an IP/],
      [{ 'dns-resolver': ['1.1.1.1:0'] }, /--dns-resolver port 0/],
      [{ 'dns-lookup-family': 'v4' }, /--dns-lookup-family must be one of/],
      [{ 'forward-proxy-inspect-connect': true }, /--forward-proxy-inspect-connect needs --forward-proxy/],
    ];
    for (const [values, message] of bad) assert.throws(() => parseForwardFlags(values), (e: unknown) => e instanceof UsageError && message.test(e.message), JSON.stringify(values));
    assert.throws(() => parseForwardFlags({ 'forward-proxy': true, 'forward-proxy-ports': '15001,10001' }, 15001), /collides/);
    assert.doesNotThrow(() => parseForwardFlags({ 'forward-proxy': true, transparent: 'false', 'forward-proxy-ports': '15001,10001' }, 15001));
    assert.equal(parseForwardFlags({ 'forward-proxy': true, 'forward-proxy-inspect-connect': true }).forwardProxy?.inspectConnect, true);
  });
});
