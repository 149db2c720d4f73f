// Node identity bound to the client certificate (serve --node-identity): under
// mTLS, a host with a valid fleet certificate can be served only as the node
// its certificate names; claiming another id is PERMISSION_DENIED, nothing is
// sent, and the other node's status is untouched.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import type { NodeIdentityRule } from '../../src/xds/nodeIdentity.js';
import { FakeEnvoy } from '../support/fakeEnvoy.js';
import { makePki, type Pki } from '../support/pki.js';
import { policy, startHarness, type Harness } from './harness.js';

const LDS = TypeUrl.Listener;
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const run = promisify(execFile);

describe('node identity bound to the client certificate', () => {
  let pki: Pki;
  const envoys: FakeEnvoy[] = [];
  const harnesses: Harness[] = [];

  before(async () => {
    pki = await makePki();
  });
  after(async () => {
    for (const e of envoys) e.close();
    for (const h of harnesses) await h.close();
    await pki.remove();
  });

  async function serve(nodeIdentity: NodeIdentityRule): Promise<Harness> {
    const harness = await startHarness([policy('github', ['github.com'])], {
      tls: { certChain: await pki.read('serverCert'), privateKey: await pki.read('serverKey'), clientCa: await pki.read('ca') },
      nodeIdentity,
    });
    harnesses.push(harness);
    return harness;
  }

  async function connect(harness: Harness, nodeId: string, cert: { cert: string; key: string }): Promise<FakeEnvoy> {
    const credentials = grpc.credentials.createSsl(await pki.read('ca'), await readFile(cert.key), await readFile(cert.cert));
    const e = new FakeEnvoy(harness.address, { nodeId, credentials }).connect();
    envoys.push(e);
    return e;
  }

  async function assertDenied(harness: Harness, e: FakeEnvoy, pattern: RegExp): Promise<void> {
    await e.waitFor('the stream status', () => e.status !== undefined);
    assert.equal(e.status!.code, grpc.status.PERMISSION_DENIED);
    assert.match(e.status!.details, pattern);
    assert.equal(e.responses.length, 0, 'nothing sent');
    const refused = (await harness.metrics.streamsRefused.get()).values.find((v) => v.labels.reason === 'identity');
    assert.ok((refused?.value ?? 0) >= 1);
  }

  test('uri-san: two nodes, each can only be itself', async () => {
    const harness = await serve({ kind: 'uri-san', prefix: 'spiffe://fleet/node/' });
    const certA = await pki.issueClient('node-a', { uri: ['spiffe://fleet/node/node-a'] });
    const certB = await pki.issueClient('node-b', { uri: ['spiffe://fleet/node/node-b'] });
    const a = await connect(harness, 'node-a', certA);
    const b = await connect(harness, 'node-b', certB);
    await Promise.all([a, b].map((e) => e.waitFor('listener', () => e.state.has(LDS))));
    const aPosingAsB = await connect(harness, 'node-b', certA);
    await assertDenied(harness, aPosingAsB, /node\.id "node-b": the client certificate has no URI SAN spiffe:\/\/fleet\/node\/node-b/);
    const bPosingAsA = await connect(harness, 'node-a', certB);
    await assertDenied(harness, bPosingAsA, /node\.id "node-a"/);
    // A prefix of the id is not the id.
    const partial = await connect(harness, 'node-a-2', certA);
    await assertDenied(harness, partial, /node-a-2/);
    const nodes = harness.registry.list();
    assert.deepEqual(nodes.map((n) => [n.id, n.streams]), [['node-a', 1], ['node-b', 1]], 'the impostors never reached the status');
  });

  test('dns-san and cn', async () => {
    const dns = await serve({ kind: 'dns-san' });
    const dnsCert = await pki.issueClient('dns-host', { dns: ['host-1.fleet.example'] });
    const good = await connect(dns, 'host-1.fleet.example', dnsCert);
    await good.waitFor('listener', () => good.state.has(LDS));
    await assertDenied(dns, await connect(dns, 'host-2.fleet.example', dnsCert), /no DNS SAN host-2\.fleet\.example/);

    const cn = await serve({ kind: 'cn' });
    const cnCert = await pki.issueClient('cn-host', { cn: 'host-9' });
    const goodCn = await connect(cn, 'host-9', cnCert);
    await goodCn.waitFor('listener', () => goodCn.state.has(LDS));
    await assertDenied(cn, await connect(cn, 'host-10', cnCert), /subject CN is not host-10/);
  });

  test('serve: --node-identity needs mTLS, takes known kinds, and checks the prefix', async () => {
    const cert = ['--xds-tls-cert', pki.files.serverCert, '--xds-tls-key', pki.files.serverKey];
    const cases: [string[], RegExp][] = [
      [['--node-identity', 'cn'], /--node-identity cn needs --xds-client-ca/],
      [[...cert, '--xds-client-ca', pki.files.ca, '--node-identity', 'email'], /--node-identity must be one of uri-san, dns-san, cn, none, got "email"/],
      [[...cert, '--xds-client-ca', pki.files.ca, '--node-identity-prefix', 'spiffe://fleet/node'], /--node-identity-prefix must be a URI prefix ending in/],
      [[...cert, '--xds-client-ca', pki.files.ca, '--node-identity', 'cn', '--node-identity-prefix', 'spiffe://x/'], /--node-identity-prefix goes with --node-identity uri-san/],
      [['--xds-max-streams', '0'], /--xds-max-streams must be a positive whole number, got "0"/],
      [['--xds-stuck-seconds', 'soon'], /--xds-stuck-seconds must be a positive whole number/],
    ];
    for (const [args, pattern] of cases) {
      await assert.rejects(run(process.execPath, [cli, 'serve', '--data-dir', join(pki.dir, 'never'), ...args]), (error: { code: number; stderr: string }) => {
        assert.equal(error.code, 2, args.join(' '));
        assert.match(error.stderr, pattern);
        return true;
      });
    }
  });
});
