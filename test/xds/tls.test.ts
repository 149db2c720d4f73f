import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { parse } from 'yaml';
import { parseProtoJsonStrict } from '../../src/envoy/codec.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { silentLogger } from '../../src/log.js';
import { startControlPlane, type ControlPlane } from '../../src/server/controlPlane.js';
import { FakeEnvoy } from '../support/fakeEnvoy.js';
import { makePki, type Pki } from '../support/pki.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const run = promisify(execFile);

describe('ADS over mTLS', () => {
  let pki: Pki;
  let dataDir: string;
  let cp: ControlPlane;
  const envoys: FakeEnvoy[] = [];
  const connect = (nodeId: string, credentials: grpc.ChannelCredentials) => {
    const e = new FakeEnvoy(`127.0.0.1:${cp.xdsPort}`, { nodeId, credentials }).connect();
    envoys.push(e);
    return e;
  };

  before(async () => {
    pki = await makePki();
    dataDir = await mkdtemp(join(tmpdir(), 'egress-xds-tls-'));
    cp = await startControlPlane({
      xdsAddress: '127.0.0.1:0',
      xdsTls: { certChain: await pki.read('serverCert'), privateKey: await pki.read('serverKey'), clientCa: await pki.read('ca') },
      adminHost: '127.0.0.1',
      adminPort: 0,
      dataDir,
      embeddedDefault: true,
      logger: silentLogger,
    });
  });
  after(async () => {
    for (const e of envoys) e.close();
    await cp.close();
    await rm(dataDir, { recursive: true, force: true });
    await pki.remove();
  });

  test('an Envoy with a certificate from the client CA gets its configuration', async () => {
    const e = connect('tls-1', grpc.credentials.createSsl(await pki.read('ca'), await pki.read('clientKey'), await pki.read('clientCert')));
    await e.waitFor('listener', () => e.state.has(TypeUrl.Listener));
  });

  test('no client certificate, one from another CA, or plaintext: refused, nothing sent', async () => {
    const ca = await pki.read('ca');
    for (const [name, credentials] of [
      ['no-cert', grpc.credentials.createSsl(ca)],
      ['rogue', grpc.credentials.createSsl(ca, await pki.read('rogueKey'), await pki.read('rogueCert'))],
      ['plaintext', grpc.credentials.createInsecure()],
    ] as const) {
      const e = connect(name, credentials);
      await e.waitFor(`${name} to be refused`, () => e.status !== undefined || e.errors.length > 0);
      assert.equal(e.responses.length, 0, name);
      assert.equal(e.status?.code ?? grpc.status.UNAVAILABLE, grpc.status.UNAVAILABLE, name);
    }
    assert.deepEqual(cp.registry.list().map((n) => n.id).filter((id) => id !== 'tls-1'), []);
  });

  test('serve refuses bad TLS flags, naming the flag', async () => {
    const cases: [string[], RegExp][] = [
      [['--xds-tls-cert', pki.files.serverCert], /--xds-tls-cert and --xds-tls-key go together/],
      [['--xds-client-ca', pki.files.ca], /--xds-client-ca needs --xds-tls-cert/],
      [['--xds-tls-cert', pki.files.serverKey, '--xds-tls-key', pki.files.serverKey], /--xds-tls-cert: .* holds no PEM certificate/],
      [['--xds-tls-cert', pki.files.serverCert, '--xds-tls-key', pki.files.clientKey], /--xds-tls-key: .* is not the key of the certificate/],
      [['--xds-tls-cert', pki.files.serverCert, '--xds-tls-key', join(pki.dir, 'missing.key')], /--xds-tls-key: cannot read .*ENOENT/],
    ];
    for (const [args, pattern] of cases) {
      await assert.rejects(run(process.execPath, [cli, 'serve', '--data-dir', join(pki.dir, 'never'), ...args]), (error: { code: number; stderr: string }) => {
        assert.equal(error.code, 2, args.join(' '));
        assert.match(error.stderr, pattern);
        return true;
      });
    }
  });

  test('bootstrap --xds-ca/--xds-cert/--xds-key: an UpstreamTlsContext on xds_cluster, decoded strictly', async () => {
    const { stdout } = await run(process.execPath, [cli, 'bootstrap', '--node-id', 'h', '--xds', '127.0.0.1:18000', '--xds-ca', pki.files.ca, '--xds-cert', pki.files.clientCert, '--xds-key', pki.files.clientKey]);
    const bootstrap = parse(stdout) as { static_resources: { clusters: { transport_socket: { typed_config: Record<string, any> } }[] } };
    parseProtoJsonStrict('type.googleapis.com/envoy.config.bootstrap.v3.Bootstrap', bootstrap);
    const tls = bootstrap.static_resources.clusters[0]!.transport_socket.typed_config;
    assert.equal(tls['@type'], TypeUrl.UpstreamTlsContext);
    assert.equal(tls.sni, undefined, 'no SNI for an address');
    assert.deepEqual(tls.common_tls_context.alpn_protocols, ['h2']);
    assert.equal(tls.common_tls_context.validation_context.trusted_ca.filename, pki.files.ca);
    assert.deepEqual(tls.common_tls_context.validation_context.match_typed_subject_alt_names, [{ san_type: 'IP_ADDRESS', matcher: { exact: '127.0.0.1' } }]);
    assert.equal(tls.common_tls_context.tls_certificates[0].certificate_chain.filename, pki.files.clientCert);
    await assert.rejects(run(process.execPath, [cli, 'bootstrap', '--node-id', 'h', '--xds-cert', pki.files.clientCert]), /need --xds-ca/);
  });
});
