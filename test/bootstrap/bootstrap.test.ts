import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { parseProtoJsonStrict } from '../../src/envoy/codec.js';

const BOOTSTRAP = 'type.googleapis.com/envoy.config.bootstrap.v3.Bootstrap';
const repo = fileURLToPath(new URL('../../../', import.meta.url));
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const run = (...args: string[]) => promisify(execFile)(process.execPath, [cli, 'bootstrap', ...args]);

test('the example in bootstrap/ decodes strictly as an Envoy v3 Bootstrap and is what the command prints', async () => {
  const text = await readFile(`${repo}/bootstrap/envoy-bootstrap.yaml`, 'utf8');
  const message = parseProtoJsonStrict(BOOTSTRAP, parse(text)) as unknown as Record<string, any>;
  assert.equal(message.node.id, 'microvm-host-1');
  assert.equal(message.dynamicResources.adsConfig.apiType, 2, 'ApiType GRPC');
  assert.equal(message.dynamicResources.adsConfig.transportApiVersion, 2, 'V3');
  assert.equal(message.dynamicResources.adsConfig.grpcServices[0].envoyGrpc.clusterName, 'xds_cluster');
  assert.ok(message.dynamicResources.cdsConfig.ads, 'CDS via ADS');
  assert.ok(message.dynamicResources.ldsConfig.ads, 'LDS via ADS');
  const xds = message.staticResources.clusters[0];
  assert.equal(xds.name, 'xds_cluster');
  assert.equal(xds.typedExtensionProtocolOptions['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'].type_url,
    'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions', 'HTTP/2 to the control plane');
  assert.equal(message.admin.address.socketAddress.address, '127.0.0.1');
  assert.equal(message.admin.address.socketAddress.portValue, 9901);
  const { stdout } = await run('--node-id', 'microvm-host-1', '--xds', '127.0.0.1:18000');
  assert.equal(stdout, text, 'bootstrap/envoy-bootstrap.yaml is up to date (regenerate it with the command in its first line)');
});

test('options: --delta, a DNS name for the control plane, cluster and admin port', async () => {
  const { stdout } = await run('--node-id', 'h2', '--cluster', 'fleet-a', '--xds', 'cp.internal:19000', '--delta', '--admin-port', '9902');
  const message = parseProtoJsonStrict(BOOTSTRAP, parse(stdout)) as unknown as Record<string, any>;
  assert.equal(message.dynamicResources.adsConfig.apiType, 3, 'DELTA_GRPC');
  assert.equal(message.node.cluster, 'fleet-a');
  const xds = message.staticResources.clusters[0];
  assert.equal(xds.type, 1, 'STRICT_DNS for a name');
  assert.equal(xds.loadAssignment.endpoints[0].lbEndpoints[0].endpoint.address.socketAddress.address, 'cp.internal');
  assert.equal(message.admin.address.socketAddress.portValue, 9902);
});

test('--forward-proxy-inspect-connect adds the internal-listener bootstrap extension, strictly decoded; without it there is none', async () => {
  const on = parseProtoJsonStrict(BOOTSTRAP, parse((await run('--node-id', 'h3', '--forward-proxy-inspect-connect')).stdout)) as unknown as Record<string, any>;
  assert.equal(on.bootstrapExtensions.length, 1);
  assert.equal(on.bootstrapExtensions[0].name, 'envoy.bootstrap.internal_listener');
  assert.equal(on.bootstrapExtensions[0].typedConfig.type_url, 'type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener');
  const off = parseProtoJsonStrict(BOOTSTRAP, parse((await run('--node-id', 'h3')).stdout)) as unknown as Record<string, any>;
  assert.equal(off.bootstrapExtensions?.length ?? 0, 0, 'older Envoys do not know the extension: only on request');
});

test('strict decoding refuses a field Envoy does not know', () => {
  assert.throws(() => parseProtoJsonStrict(BOOTSTRAP, { node: { id: 'x', colour: 'blue' } }), /unknown field/);
});

test('bad flags: a clear message naming the flag, exit code 2, nothing printed on stdout', async () => {
  for (const [args, pattern] of [
    [[], /--node-id is required/],
    [['--node-id', 'h', '--xds', 'nohostport'], /--xds must be HOST:PORT/],
    [['--node-id', 'h', '--admin-port', '70000'], /--admin-port must be a port number/],
    [['--node-id', 'h', '--bogus'], /bogus/],
    [['--node-id', 'bad id'], /--node-id may hold/],
  ] as const) {
    await assert.rejects(run(...args), (error: { code: number; stderr: string; stdout: string }) => {
      assert.equal(error.code, 2, String(args));
      assert.match(error.stderr, pattern);
      assert.equal(error.stdout, '');
      return true;
    });
  }
});
