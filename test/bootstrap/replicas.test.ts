// bootstrap --xds repeated (several control-plane replicas): every address is
// an endpoint of the xDS cluster, decoded strictly as an Envoy v3 Bootstrap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { parseProtoJsonStrict } from '../../src/envoy/codec.js';

const BOOTSTRAP = 'type.googleapis.com/envoy.config.bootstrap.v3.Bootstrap';
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const run = (...args: string[]) =>
  promisify(execFile)(process.execPath, [cli, 'bootstrap', ...args]).then(
    ({ stdout }) => ({ code: 0, stdout, stderr: '' }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
const endpointsOf = (message: Record<string, any>) =>
  (message.staticResources.clusters[0].loadAssignment.endpoints[0].lbEndpoints as { endpoint: { address: { socketAddress: { address: string; portValue: number } } } }[])
    .map((e) => `${e.endpoint.address.socketAddress.address}:${e.endpoint.address.socketAddress.portValue}`);

test('several --xds addresses: one endpoint each, STATIC for addresses', async () => {
  const { code, stdout, stderr } = await run('--node-id', 'h1', '--xds', '10.0.0.1:18000', '--xds', '10.0.0.2:18000', '--xds', '[fd00::3]:18001');
  assert.equal(code, 0, stderr);
  const message = parseProtoJsonStrict(BOOTSTRAP, parse(stdout)) as unknown as Record<string, any>;
  assert.deepEqual(endpointsOf(message), ['10.0.0.1:18000', '10.0.0.2:18000', 'fd00::3:18001']);
  assert.equal(message.staticResources.clusters[0].type ?? 0, 0, 'STATIC');
});

test('one DNS name (a record per replica), or names among addresses: STRICT_DNS', async () => {
  const one = parseProtoJsonStrict(BOOTSTRAP, parse((await run('--node-id', 'h1', '--xds', 'cp.fleet.internal:18000')).stdout)) as unknown as Record<string, any>;
  assert.equal(one.staticResources.clusters[0].type, 1, 'STRICT_DNS: Envoy resolves every record');
  const mixed = parseProtoJsonStrict(BOOTSTRAP, parse((await run('--node-id', 'h1', '--xds', 'cp-a.internal:18000', '--xds', '10.0.0.2:18000')).stdout)) as unknown as Record<string, any>;
  assert.equal(mixed.staticResources.clusters[0].type, 1);
  assert.deepEqual(endpointsOf(mixed), ['cp-a.internal:18000', '10.0.0.2:18000']);
});

test('several hosts under TLS need the one name their certificates carry', async () => {
  const refused = await run('--node-id', 'h1', '--xds', '10.0.0.1:18000', '--xds', '10.0.0.2:18000', '--xds-ca', '/etc/ca.pem');
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /--xds-server-name/);
  const ok = await run('--node-id', 'h1', '--xds', '10.0.0.1:18000', '--xds', '10.0.0.2:18000', '--xds-ca', '/etc/ca.pem', '--xds-server-name', 'cp.fleet.internal');
  assert.equal(ok.code, 0, ok.stderr);
  const message = parseProtoJsonStrict(BOOTSTRAP, parse(ok.stdout)) as unknown as Record<string, any>;
  const tlsBytes = Buffer.from(message.staticResources.clusters[0].transportSocket.typedConfig.value);
  assert.ok(tlsBytes.includes('cp.fleet.internal'), 'SNI and SAN match carry the shared name');
});
