// The whole control plane in-process: real admin HTTP, real store on disk,
// real compiler, real ADS server, and the Envoy-like client.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/log.js';
import { startControlPlane, type ControlPlane } from '../../src/server/controlPlane.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { FakeEnvoy, settle } from '../support/fakeEnvoy.js';

const LDS = TypeUrl.Listener;
const CDS = TypeUrl.Cluster;

interface ChainJson {
  name: string;
  filterChainMatch?: { serverNames?: string[]; sourcePrefixRanges?: { addressPrefix: string; prefixLen: number }[] };
  filters: { typedConfig: { cluster: string } }[];
}
const chains = (envoy: FakeEnvoy): ChainJson[] =>
  ((envoy.state.get(LDS)?.get('egress_tproxy') as { filterChains?: ChainJson[] } | undefined)?.filterChains ?? []);
/** Server names the listener allows: in filter_chain_matcher's server-name matchers (hardened), or in chains (seed). */
const allowedNames = (envoy: FakeEnvoy): string[] => {
  const listener = envoy.state.get(LDS)?.get('egress_tproxy') as { filterChainMatcher?: unknown } | undefined;
  const inMatcher = [...JSON.stringify(listener?.filterChainMatcher ?? {}).matchAll(/"domains":\[([^\]]*)\]/g)].flatMap((m) => JSON.parse(`[${m[1]}]`) as string[]);
  return [...new Set([...inMatcher, ...chains(envoy).flatMap((c) => c.filterChainMatch?.serverNames ?? [])])].sort();
};

describe('control plane end to end', () => {
  let dataDir: string;
  let cp: ControlPlane;
  let base: string;
  const envoys: FakeEnvoy[] = [];
  const connect = (nodeId: string, variant: 'sotw' | 'delta' = 'sotw') => {
    const e = new FakeEnvoy(`127.0.0.1:${cp.xdsPort}`, { nodeId, variant }).connect();
    envoys.push(e);
    return e;
  };
  const api = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, body: text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : text };
  };
  const nodeStatus = async (id: string) => ((await api('GET', '/v1/nodes')).body as { id: string; resources: Record<string, { sent?: string; acked?: string; nack?: { message: string } }> }[]).find((n) => n.id === id);

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'egress-xds-e2e-'));
    cp = await startControlPlane({ xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir, embeddedDefault: true, logger: silentLogger });
    base = `http://127.0.0.1:${cp.admin.port}`;
  });
  after(async () => {
    for (const e of envoys) e.close();
    await cp.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  test('first start serves the embedded default: the seed allowlist, hardened layout, its clusters', async () => {
    const e = connect('host-1');
    await e.waitFor('listener', () => e.state.has(LDS));
    assert.deepEqual([...e.state.get(CDS)!.keys()], ['dynamic_forward_proxy_cluster', 'original_dst_cluster', 'reject_cluster']);
    assert.deepEqual(allowedNames(e), ['github.com', 'www.github.com']);
    // The seed policy's source range gets its own chain, which dials the name.
    const named = chains(e).find((c) => c.name === 'name|172.31.0.0/16');
    assert.equal(named?.filters.at(-1)!.typedConfig.cluster, 'dynamic_forward_proxy_cluster');
  });

  test('a PUT reaches connected Envoys, is ACKed, and /v1/nodes shows it', async () => {
    const sotw = connect('host-2');
    const delta = connect('host-3', 'delta');
    await Promise.all([sotw, delta].map((e) => e.waitFor('listener', () => e.state.has(LDS))));
    const put = await api('PUT', '/v1/policies/pypi', { allow: { sni: ['pypi.org', 'files.pythonhosted.org'] } });
    assert.equal(put.status, 200);
    for (const e of [sotw, delta]) await e.waitFor('pypi allowed', () => allowedNames(e).includes('pypi.org'));
    let status;
    for (let i = 0; i < 100; i++) {
      status = await nodeStatus('host-2');
      if (status?.resources[LDS]?.acked === sotw.acceptedVersions.get(LDS)) break;
      await settle(20);
    }
    assert.equal(status!.resources[LDS]!.sent, sotw.acceptedVersions.get(LDS));
    assert.equal(status!.resources[LDS]!.acked, sotw.acceptedVersions.get(LDS));
  });

  test('a NACK shows in /v1/nodes and in the metrics; the last good config stays', async () => {
    const e = connect('host-4');
    await e.waitFor('listener', () => e.state.has(LDS));
    const good = e.acceptedVersions.get(LDS);
    e.rejectNextResponse(LDS, 'Listener egress_tproxy: rejected by the test');
    assert.equal((await api('PUT', '/v1/policies/crates', { allow: { sni: ['crates.io'] } })).status, 200);
    let status;
    for (let i = 0; i < 100 && !status?.resources[LDS]?.nack; i++) {
      status = await nodeStatus('host-4');
      await settle(20);
    }
    assert.equal(status!.resources[LDS]!.nack!.message, 'Listener egress_tproxy: rejected by the test');
    assert.equal(status!.resources[LDS]!.acked, good);
    const metrics = (await api('GET', '/metrics')).body as string;
    assert.match(metrics, /egress_xds_nacks_total\{type="Listener"\} [1-9]/);
    assert.match(metrics, /egress_xds_push_latency_seconds_count\{type="Listener"\} [1-9]/);
  });

  test('a policy for other nodes does not disturb this one; POST /v1/check follows node selection', async () => {
    const e = connect('web-1');
    // The listener, then the port-80 route tables it names (RDS): all it is sent.
    await e.waitFor('listener and route tables', () => e.configured());
    const count = e.responses.length;
    assert.equal((await api('PUT', '/v1/policies/builders', { nodes: ['build-*'], allow: { sni: ['registry.npmjs.org'] } })).status, 200);
    await settle(300);
    assert.equal(e.responses.length, count, 'web-1 is not selected by "build-*": nothing is sent to it');

    const check = (node: string, sni: string, source = '172.31.0.9') =>
      api('POST', '/v1/check', { node, source, destination: '104.16.0.1:443', sni });
    const forBuilder = await check('build-7', 'registry.npmjs.org');
    assert.equal(forBuilder.status, 200);
    assert.equal(forBuilder.body.verdict, 'allow');
    assert.equal(forBuilder.body.policy, 'builders');
    assert.equal(forBuilder.body.filterChain, 'name|172.31.0.0/16', 'the embedded seed policy names 172.31.0.0/16: its own chain');
    assert.deepEqual(forBuilder.body.upstream, { kind: 'name', address: 'registry.npmjs.org:443' });
    const forWeb = await check('web-1', 'registry.npmjs.org');
    assert.deepEqual({ ...forWeb.body, path: undefined }, { verdict: 'deny', policy: null, filterChain: 'reject', path: undefined, upstream: null });
    assert.equal((await check('web-1', 'github.com', '10.9.9.9')).body.verdict, 'deny', 'the seed policy is for 172.31.0.0/16 only');
  });

  test('an invalid PUT changes nothing: no push, no new revision', async () => {
    const e = connect('host-5');
    // The listener, then the port-80 route tables it names (RDS): all it is sent.
    await e.waitFor('listener and route tables', () => e.configured());
    const count = e.responses.length;
    const before = (await api('GET', '/v1/policies')).body;
    const bad = await api('PUT', '/v1/policies/bad', { allow: { sni: ['*.*.example.com'] } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.field, 'allow.sni[0]');
    await settle(200);
    assert.equal(e.responses.length, count);
    assert.deepEqual((await api('GET', '/v1/policies')).body, before);
  });

  test('a restart serves every change that got a 200, and Envoys get it at once', async () => {
    const policies = (await api('GET', '/v1/policies')).body as { name: string; revision: number }[];
    await cp.close();
    cp = await startControlPlane({ xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir, embeddedDefault: true, logger: silentLogger });
    base = `http://127.0.0.1:${cp.admin.port}`;
    assert.deepEqual((await api('GET', '/v1/policies')).body, policies, 'same policies and revisions; the default is not re-added');
    const e = connect('host-6');
    await e.waitFor('listener', () => e.state.has(LDS));
    assert.ok(allowedNames(e).includes('pypi.org') && allowedNames(e).includes('crates.io'));
  });
});
