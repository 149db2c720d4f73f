// A policy's "log": "all", stored through the admin API, reaches the listener the server
// serves: the compiler is given the stored policy with every field that changes what Envoy
// receives (the server once dropped `log` between the store and the snapshot cache).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/log.js';
import { startControlPlane, type ControlPlane } from '../../src/server/controlPlane.js';

let dataDir: string;
let cp: ControlPlane;

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'egress-xds-logserved-'));
  cp = await startControlPlane({ xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir, logger: silentLogger, compileWorkers: 1 });
});
after(async () => {
  await cp.close();
  await rm(dataDir, { recursive: true, force: true });
});

test('"log": "all" and "mode": "audit" put through the admin API are in the policies the server compiles', async () => {
  const put = async (name: string, spec: unknown) => {
    const response = await fetch(`http://127.0.0.1:${cp.admin.port}/v1/policies/${name}`, { method: 'PUT', body: JSON.stringify(spec), headers: { 'content-type': 'application/json' } });
    assert.equal(response.status, 200, await response.text());
  };
  await put('logged', { sources: ['172.31.8.0/24'], log: 'all', allow: { sni: ['ok.example.com'] } });
  await put('audited', { sources: ['172.31.9.0/24'], mode: 'audit', upstream: 'original-destination', allow: { sni: ['a.example.com'] } });
  await cp.push.idle();
  const group = cp.cache.groupForNode('host-1');
  const byName = new Map(group.policies.map((p) => [p.name, p]));
  assert.equal(byName.get('logged')?.log, 'all');
  assert.equal(byName.get('audited')?.mode, 'audit');
  assert.equal(byName.get('audited')?.upstream, 'original-destination');
  // The logged source's chain logs its allowed connections, naming the policy.
  const chain = group.compiled.listeners[0]!.filterChains!.find((c) => c.name === 'name|172.31.8.0/24');
  const tcp = chain?.filters.find((f) => f.name === 'tcp')?.typedConfig as { accessLog?: { filter?: unknown; typedConfig: { commonConfig: { customTags: { tag: string; literal: { value: string } }[] } } }[] } | undefined;
  const logger = tcp?.accessLog?.[0];
  assert.ok(logger, 'the chain has an access logger');
  assert.equal(logger.filter, undefined, 'every connection, not only the refusals');
  const tags = Object.fromEntries(logger.typedConfig.commonConfig.customTags.map((t) => [t.tag, t.literal.value]));
  assert.equal(tags['egress.verdict'], 'allowed');
  assert.equal(tags['egress.policy'], 'logged');
});
