// The web console in a real headless chromium (Debian's /usr/bin/chromium,
// driven by playwright-core): it loads without a token, asks for the token the
// API needs, shows a connected node with its ACK state, and shows a denial sent
// through the ALS client within a second; its button opens the suggested policy.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { silentLogger } from '../../src/log.js';
import { startControlPlane, type ControlPlane } from '../../src/server/controlPlane.js';
import { TAG } from '../../src/denials/record.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { FakeEnvoy } from '../support/fakeEnvoy.js';
import { openAlsStream } from '../support/alsClient.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed`;
const TOKEN = 'console-test-token-0123456789';

describe('the web console in headless chromium', { skip }, () => {
  let dir: string;
  let cp: ControlPlane;
  let envoy: FakeEnvoy;
  let context: BrowserContext;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'egress-xds-console-'));
    cp = await startControlPlane({ xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, adminToken: TOKEN, dataDir: join(dir, 'data'), embeddedDefault: true, logger: silentLogger });
    envoy = new FakeEnvoy(`127.0.0.1:${cp.xdsPort}`, { nodeId: 'console-node' }).connect();
    await envoy.waitFor('the listener', () => envoy.acceptedVersions.has(TypeUrl.Listener), 10_000);
    context = await chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: 30_000,
    });
  });
  after(async () => {
    await context?.close();
    envoy?.close();
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('loads, asks for the token, shows the node and a live denial, opens the suggestion', async () => {
    const page = await context.newPage();
    const response = await page.goto(`http://127.0.0.1:${cp.admin.port}/`);
    assert.equal(response?.status(), 200);
    // The data needs the token: the page asks for it, and nothing is shown without it.
    await page.locator('#token-form').waitFor({ state: 'visible', timeout: 10_000 });
    assert.equal(await page.locator('#nodes tbody tr').count(), 0);
    await page.fill('#token-input', TOKEN);
    await page.click('#token button');
    const row = page.locator('#nodes tbody tr[data-node="console-node"]');
    await row.waitFor({ timeout: 10_000 });
    const listenerCell = await row.locator('td').nth(3).textContent();
    assert.equal(listenerCell, `ACK ${envoy.acceptedVersions.get(TypeUrl.Listener)}`);
    await page.locator('#policies tbody tr', { hasText: 'github' }).waitFor({ timeout: 10_000 });

    // The live feed is open (a follower is registered) before the denial is sent.
    const deadline = Date.now() + 10_000;
    while (cp.denials.followerCount() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(cp.denials.followerCount(), 1);
    const stream = openAlsStream(`127.0.0.1:${cp.xdsPort}`, 'console-node');
    stream.sendTcp([{ source: '172.31.0.7:41000', destination: '151.101.1.1:443', sni: 'console.example.com', tags: { [TAG.verdict]: 'denied', [TAG.reason]: 'no-policy', [TAG.listener]: 'egress_tproxy' } }]);
    const denial = page.locator('#denials tbody tr.denial', { hasText: 'console.example.com' });
    await denial.waitFor({ timeout: 1_000 });
    assert.match((await denial.textContent()) ?? '', /console-node.*172\.31\.0\.7:41000.*151\.101\.1\.1:443.*denied.*no-policy/);
    await stream.finish();
    // The record carries the revision the node runs, as /v1/nodes says and the node row shows.
    const auth = { authorization: `Bearer ${TOKEN}` };
    const nodes = (await (await fetch(`http://127.0.0.1:${cp.admin.port}/v1/nodes`, { headers: auth })).json()) as { id: string; revision: { acknowledged: number } }[];
    const acknowledged = nodes.find((n) => n.id === 'console-node')!.revision.acknowledged;
    const stored = (await (await fetch(`http://127.0.0.1:${cp.admin.port}/v1/denials?node=console-node`, { headers: auth })).json()) as { denials: { revision: string }[] };
    assert.equal(stored.denials[0]!.revision, String(acknowledged));
    assert.equal(await row.locator('td').nth(6).textContent(), String(acknowledged));

    await denial.locator('button').click();
    await page.locator('#suggestion-body', { hasText: 'console.example.com' }).waitFor({ timeout: 5_000 });
    const suggestion = (await page.locator('#suggestion-body').textContent()) ?? '';
    assert.match(suggestion, /PUT \/v1\/policies\/learned-172-31-0-7/);
    assert.match(suggestion, /console\.example\.com:443 \(1×\): deny → allow/);
    await page.close();
  });
});
