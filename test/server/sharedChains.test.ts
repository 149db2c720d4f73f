// serve --max-connections-per-source 0 through the whole control plane (admin HTTP, store,
// compile workers, ADS to an Envoy-like client): the listener Envoy receives has no
// connection_limit and one shared name chain, and POST /v1/check names that chain.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/log.js';
import { startControlPlane, type ControlPlane } from '../../src/server/controlPlane.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { FakeEnvoy } from '../support/fakeEnvoy.js';

interface Chain {
  name: string;
  filters: { typedConfig: { '@type': string } }[];
}

describe('the control plane with --max-connections-per-source 0', () => {
  let dataDir: string;
  let cp: ControlPlane;
  let envoy: FakeEnvoy | undefined;
  const api = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`http://127.0.0.1:${cp.admin.port}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'egress-xds-cap0-'));
    cp = await startControlPlane({ xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir, embeddedDefault: true, logger: silentLogger, compile: { maxConnectionsPerSource: 0 } });
  });
  after(async () => {
    envoy?.close();
    await cp?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  test('Envoy gets shared chains without connection_limit; /v1/check names the shared chain', async () => {
    for (let i = 0; i < 30; i++) {
      assert.equal((await api('PUT', `/v1/policies/vm-${i}`, { sources: [`10.100.0.${i * 4}/30`], allow: { sni: [`api${i}.example.org`] } })).status, 200);
    }
    envoy = new FakeEnvoy(`127.0.0.1:${cp.xdsPort}`, { nodeId: 'host-1', variant: 'sotw' }).connect();
    const current = () => envoy!.state.get(TypeUrl.Listener)?.get('egress_tproxy') as { filterChains: Chain[]; filterChainMatcher?: unknown } | undefined;
    await envoy.waitFor('the listener with every microVM', () => JSON.stringify(current()?.filterChainMatcher ?? {}).includes('api29.example.org'));
    const listener = current()!;
    const names = listener.filterChains.map((c) => c.name);
    assert.deepEqual(names.filter((n) => n.startsWith('name|')), ['name|*']);
    assert.equal(names.filter((n) => n.startsWith('http|')).length, 32, 'plain HTTP stays per source: 30 microVMs, the default policy\'s range, "*"');
    assert.deepEqual(listener.filterChains.filter((c) => c.filters.some((f) => f.typedConfig['@type'] === TypeUrl.ConnectionLimit)).map((c) => c.name), []);
    const check = await api('POST', '/v1/check', { node: 'host-1', source: '10.100.0.21', destination: '203.0.113.7:443', sni: 'api5.example.org' });
    assert.equal(check.status, 200);
    assert.equal(check.body.verdict, 'allow');
    assert.equal(check.body.policy, 'vm-5');
    assert.equal(check.body.filterChain, 'name|*');
    assert.deepEqual(check.body.upstream, { kind: 'name', address: 'api5.example.org:443' });
    const other = await api('POST', '/v1/check', { node: 'host-1', source: '10.100.0.25', destination: '203.0.113.7:443', sni: 'api5.example.org' });
    assert.deepEqual([other.body.verdict, other.body.filterChain], ['deny', 'reject']);
  });
});
