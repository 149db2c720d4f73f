// Coalescing, end to end: real admin HTTP, store on disk, compile worker
// thread, ADS server and Envoy-like grpc-js clients. A burst of changes
// reaches every Envoy as its final state in fewer pushes than changes, and
// /v1/nodes says when the latest revision is acknowledged.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/log.js';
import { startControlPlane, type ControlPlane } from '../../src/server/controlPlane.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { FakeEnvoy, settle } from '../support/fakeEnvoy.js';

const LDS = TypeUrl.Listener;
const CHANGES = 100;

let dataDir: string;
let cp: ControlPlane;
const envoys: FakeEnvoy[] = [];

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'egress-xds-coalesce-'));
  // A wider window than the default so that a loaded test machine still sees the burst as close together.
  cp = await startControlPlane({
    xdsAddress: '127.0.0.1:0',
    adminHost: '127.0.0.1',
    adminPort: 0,
    dataDir,
    embeddedDefault: true,
    logger: silentLogger,
    pushTiming: { windowMs: 50, maxDelayMs: 500 },
    compileWorkers: 1,
  });
});
after(async () => {
  for (const e of envoys) e.close();
  await cp.close();
  await rm(dataDir, { recursive: true, force: true });
});

const listenerText = (e: FakeEnvoy) => JSON.stringify(e.state.get(LDS)?.get('egress_tproxy') ?? {});

test(`a burst of ${CHANGES} changes reaches every Envoy as the final state, in fewer pushes than changes; /v1/nodes shows the latest revision acknowledged`, { timeout: 120_000 }, async () => {
  const base = `http://127.0.0.1:${cp.admin.port}`;
  for (const [id, variant] of [['burst-1', 'sotw'], ['burst-2', 'sotw'], ['burst-3', 'delta']] as const) {
    envoys.push(new FakeEnvoy(`127.0.0.1:${cp.xdsPort}`, { nodeId: id, variant }).connect());
  }
  await Promise.all(envoys.map((e) => e.waitFor('listener', () => e.state.has(LDS), 20_000)));
  const before = envoys.map((e) => e.responsesOf(LDS).length);

  let lastRevision = 0;
  for (let k = 0; k < CHANGES; k++) {
    const response = await fetch(`${base}/v1/policies/burst`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ allow: { sni: [`burst-${k}.example`] } }),
    });
    assert.equal(response.status, 200, await response.text());
    lastRevision = cp.store.revision;
  }
  const last = `burst-${CHANGES - 1}.example`;
  for (const e of envoys) await e.waitFor('the final change', () => listenerText(e).includes(last), 30_000);
  await cp.push.idle();
  await settle(100);

  for (const [i, e] of envoys.entries()) {
    const pushes = e.responsesOf(LDS).length - before[i]!;
    assert.ok(pushes >= 1 && pushes < CHANGES, `${pushes} Listener pushes for ${CHANGES} changes`);
    assert.ok(!listenerText(e).includes(`burst-${CHANGES - 2}.example`), 'the final state, not an earlier one');
  }
  assert.ok(cp.push.applies < cp.push.commits, `${cp.push.applies} applies for ${cp.push.commits} commits`);

  let nodes: { id: string; upToDate: boolean; revision: { latest: number; served: number; acknowledged: number | null } }[] = [];
  for (let i = 0; i < 100; i++) {
    nodes = (await (await fetch(`${base}/v1/nodes`)).json()) as typeof nodes;
    if (nodes.every((n) => n.revision.acknowledged === lastRevision)) break;
    await settle(20);
  }
  for (const id of ['burst-1', 'burst-2', 'burst-3']) {
    const node = nodes.find((n) => n.id === id)!;
    assert.deepEqual(node.revision, { latest: lastRevision, served: lastRevision, acknowledged: lastRevision }, id);
    assert.equal(node.upToDate, true);
  }
});

test('while an Envoy holds its ACK, /v1/nodes shows the latest revision served but not acknowledged', { timeout: 60_000 }, async () => {
  const base = `http://127.0.0.1:${cp.admin.port}`;
  const e = new FakeEnvoy(`127.0.0.1:${cp.xdsPort}`, { nodeId: 'holder' }).connect();
  envoys.push(e);
  await e.waitFor('listener', () => e.state.has(LDS), 20_000);
  await cp.push.idle();
  const acknowledgedBefore = cp.store.revision;
  e.holdAnswers(LDS);
  const count = e.responsesOf(LDS).length;
  assert.equal((await fetch(`${base}/v1/policies/held`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ allow: { sni: ['held.example'] } }) })).status, 200);
  await e.waitFor('the change', () => e.responsesOf(LDS).length > count, 20_000);
  const holder = ((await (await fetch(`${base}/v1/nodes`)).json()) as { id: string; upToDate: boolean; revision: { latest: number; served: number; acknowledged: number | null } }[]).find((n) => n.id === 'holder')!;
  assert.equal(holder.revision.latest, cp.store.revision);
  assert.equal(holder.revision.served, cp.store.revision);
  assert.equal(holder.revision.acknowledged, acknowledgedBefore);
  assert.equal(holder.upToDate, false);
  e.releaseAnswers(LDS);
});
