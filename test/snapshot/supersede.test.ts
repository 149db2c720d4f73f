// A compile overtaken by a newer version of one of its policies is given up,
// not pushed: the Envoys of the group are sent the newest state only, instead of
// taking, decoding and ACKing an outdated one first. Real ADS server, real
// grpc-js Envoy, the push scheduler over the real cache; the builder holds each
// compile until the test lets it finish, so what happens meanwhile is decided by
// the test, not by timing. Counts only: pushes, compiles, applies.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/log.js';
import type { GroupBuilder } from '../../src/snapshot/cache.js';
import { encodeResource } from '../../src/snapshot/encodedResource.js';
import { PushScheduler, type PushTiming } from '../../src/snapshot/pushScheduler.js';
import type { Policy } from '../../src/policy/model.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { FakeEnvoy } from '../support/fakeEnvoy.js';
import { policy, startHarness, testCompiler, type Harness } from '../xds/harness.js';

const LDS = TypeUrl.Listener;

/** A builder whose every call waits for release(); calls are recorded. */
function heldBuilder() {
  const calls: { names: string[]; release: () => void }[] = [];
  const build: GroupBuilder = async (sets) => {
    await new Promise<void>((resolve) => calls.push({ names: sets.flatMap((set) => set.flatMap((p) => p.allow.sni)), release: resolve }));
    return sets.map((policies) => testCompiler(policies).resources.map((r) => encodeResource(r.typeUrl, r.name, r.json)));
  };
  return { calls, build };
}

const serverNames = (e: FakeEnvoy, response = e.responsesOf(LDS).at(-1)) => JSON.stringify(response?.resources.get('egress_tproxy') ?? null);

let harness: Harness;
const envoys: FakeEnvoy[] = [];
let scheduler: PushScheduler | undefined;

before(async () => {
  harness = await startHarness([policy('mix', ['v0.example']), policy('other', ['o0.example'])]);
});
afterEach(() => scheduler?.stop());
after(async () => {
  for (const e of envoys) e.close();
  await harness.close();
});

async function setup(nodeId: string, timing: PushTiming) {
  const held = heldBuilder();
  scheduler = new PushScheduler(harness.cache, held.build, silentLogger, timing);
  const e = new FakeEnvoy(harness.address, { nodeId }).connect();
  envoys.push(e);
  await e.waitFor('the first listener', () => e.state.has(LDS));
  return { held, e, s: scheduler, listeners: e.responsesOf(LDS).length };
}

const put = (s: PushScheduler, revision: number, p: Policy) => s.enqueue({ revision, puts: [p], deletes: [] });

/** Waits for the scheduler to hand the builder its n-th call (a server-side state: the fake Envoy's bounded poll). */
const compileStarted = (e: FakeEnvoy, held: ReturnType<typeof heldBuilder>, n: number) => e.waitFor(`compile ${n}`, () => held.calls.length >= n);

test('a change whose policy gets a newer version while it compiles is not pushed: the Envoy is sent the newer state only', async () => {
  const { held, e, s, listeners } = await setup('node-a', { windowMs: 0, maxDelayMs: 600_000 });
  put(s, 1, policy('mix', ['v1.example']));
  await compileStarted(e, held, 1);
  put(s, 2, policy('mix', ['v2.example']));
  held.calls[0]!.release();
  await compileStarted(e, held, 2);
  assert.ok(held.calls[1]!.names.includes('v2.example'), 'the second compile is of the newest version');
  held.calls[1]!.release();
  await s.idle();
  await e.waitFor('the newest listener', () => serverNames(e).includes('v2.example'));
  const sent = e.responsesOf(LDS).slice(listeners);
  assert.equal(sent.length, 1, `one listener push for two changes, not ${sent.length}`);
  assert.ok(!sent.some((r) => serverNames(e, r).includes('v1.example')), 'the superseded state was never sent');
  assert.equal(s.superseded, 1);
  assert.equal(s.applies, 1);
  assert.equal(s.servedRevision, 2);
  assert.equal(held.calls.length, 2);
});

test('past maxDelayMs a superseded compile is pushed all the same (changes that never stop still reach Envoy)', async () => {
  // maxDelayMs 0: every commit has waited its longest, so nothing is ever given up.
  const { held, e, s, listeners } = await setup('node-b', { windowMs: 0, maxDelayMs: 0 });
  put(s, 3, policy('mix', ['v3.example']));
  await compileStarted(e, held, 1);
  put(s, 4, policy('mix', ['v4.example']));
  held.calls[0]!.release();
  await e.waitFor('the older change', () => serverNames(e).includes('v3.example'));
  await compileStarted(e, held, 2);
  held.calls[1]!.release();
  await s.idle();
  await e.waitFor('the newest listener', () => serverNames(e).includes('v4.example'));
  assert.equal(e.responsesOf(LDS).length - listeners, 2);
  assert.equal(s.superseded, 0);
  assert.equal(s.applies, 2);
});

test('a newer change of another policy does not supersede a compile: both are pushed', async () => {
  const { held, e, s, listeners } = await setup('node-c', { windowMs: 0, maxDelayMs: 600_000 });
  put(s, 5, policy('mix', ['v5.example']));
  await compileStarted(e, held, 1);
  put(s, 6, policy('other', ['o6.example']));
  held.calls[0]!.release();
  await e.waitFor('the first change', () => serverNames(e).includes('v5.example'));
  await compileStarted(e, held, 2);
  held.calls[1]!.release();
  await s.idle();
  await e.waitFor('the second change', () => serverNames(e).includes('o6.example') && serverNames(e).includes('v5.example'));
  assert.equal(e.responsesOf(LDS).length - listeners, 2);
  assert.equal(s.superseded, 0);
  assert.equal(s.applies, 2);
});
