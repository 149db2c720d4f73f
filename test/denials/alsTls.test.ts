// The ALS is served with ADS's TLS and node identity rule: over mTLS a node
// logs as itself; claiming another node id is PERMISSION_DENIED and stores
// nothing; a client without a certificate never gets a stream.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { silentLogger } from '../../src/log.js';
import { startControlPlane, type ControlPlane } from '../../src/server/controlPlane.js';
import { DEFAULT_NODE_IDENTITY_PREFIX } from '../../src/xds/nodeIdentity.js';
import { TAG } from '../../src/denials/record.js';
import { makePki, type Pki } from '../support/pki.js';
import { openAlsStream, type TcpEntry } from '../support/alsClient.js';

const entry: TcpEntry = { source: '172.31.0.5:40000', destination: '93.184.216.34:443', sni: 'tls.example.com', tags: { [TAG.verdict]: 'denied', [TAG.reason]: 'no-policy', [TAG.listener]: 'egress_tproxy' } };

describe('the ALS over mTLS with node identity', () => {
  let dir: string;
  let pki: Pki;
  let cp: ControlPlane;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'egress-xds-als-tls-'));
    pki = await makePki();
    cp = await startControlPlane({
      xdsAddress: '127.0.0.1:0',
      xdsTls: { certChain: await pki.read('serverCert'), privateKey: await pki.read('serverKey'), clientCa: await pki.read('ca') },
      nodeIdentity: { kind: 'uri-san', prefix: DEFAULT_NODE_IDENTITY_PREFIX },
      adminHost: '127.0.0.1', adminPort: 0, dataDir: join(dir, 'data'), embeddedDefault: true, logger: silentLogger,
    });
  });
  after(async () => {
    await cp.close();
    await pki.remove();
    await rm(dir, { recursive: true, force: true });
  });

  test('a node logs as itself; as another node it is refused; without a certificate it is not served', async () => {
    const cert = await pki.issueClient('als-a', { uri: [`${DEFAULT_NODE_IDENTITY_PREFIX}als-a`] });
    const credentials = grpc.credentials.createSsl(await pki.read('ca'), await readFile(cert.key), await readFile(cert.cert));
    const target = `localhost:${cp.xdsPort}`;
    const own = openAlsStream(target, 'als-a', { credentials });
    own.sendTcp([entry]);
    assert.equal(await own.finish(), null);
    own.close();
    assert.equal(cp.denials.query({ node: 'als-a', verdicts: ['denied'], limit: 10 }).length, 1);

    const impostor = openAlsStream(target, 'als-b', { credentials });
    impostor.sendTcp([entry]);
    const refused = await impostor.done;
    impostor.close();
    assert.equal(refused?.code, grpc.status.PERMISSION_DENIED);
    assert.equal(cp.denials.query({ node: 'als-b', verdicts: ['denied'], limit: 10 }).length, 0);

    const anonymous = openAlsStream(target, 'als-a', { credentials: grpc.credentials.createSsl(await pki.read('ca')) });
    anonymous.sendTcp([entry]);
    const failed = await anonymous.done;
    anonymous.close();
    assert.ok(failed, 'a client without a certificate must fail');
    assert.equal(cp.denials.query({ node: 'als-a', verdicts: ['denied'], limit: 10 }).length, 1);
  });
});
