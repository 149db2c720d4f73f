// A real Envoy (ENVOY_BIN) whose bootstrap lists two control-plane replicas on
// etcd: it gets its configuration from one; when that replica stops, it
// reopens ADS to the other and picks up a change made there. Skipped without
// ENVOY_BIN (no Envoy binary can be installed on the CI machines) or etcd.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { buildBootstrap } from '../../src/bootstrap/envoyBootstrap.js';
import type { ControlPlane } from '../../src/server/controlPlane.js';
import { etcdAvailable, freePort, startEtcd, type EtcdCluster } from '../support/etcdCluster.js';
import { api, startReplica, until } from '../cluster/support.js';
import { spawnEnvoy, stopEnvoy } from './envoyProcess.js';

const envoyBin = process.env.ENVOY_BIN;
const skip = !envoyBin
  ? 'ENVOY_BIN is not set: no Envoy binary can be installed on this machine (set ENVOY_BIN=/path/to/envoy to run it)'
  : !etcdAvailable()
    ? 'no etcd binary (apt-get install etcd-server, or set ETCD_BIN)'
    : false;

describe('a real Envoy fails over between replicas on etcd (ENVOY_BIN)', { skip }, () => {
  let dir: string;
  let etcd: EtcdCluster;
  const replicas: ControlPlane[] = [];
  let envoy: ChildProcess | undefined;
  let envoyAdmin: number;
  let envoyLog = '';
  const dump = async () => (await fetch(`http://127.0.0.1:${envoyAdmin}/config_dump`)).text();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'egress-xds-envoy-replicas-'));
    etcd = await startEtcd(1);
    for (const id of ['A', 'B']) replicas.push(await startReplica(etcd.endpoints, '/envoy-it/', id));
    const seeded = await api(replicas[0]!.admin.port, 'PUT', '/v1/policies/first', { allow: { sni: ['first.example'] } });
    assert.equal(seeded.status, 200);
    envoyAdmin = await freePort();
    const bootstrap = join(dir, 'bootstrap.yaml');
    const addresses = replicas.map((r) => ({ host: '127.0.0.1', port: r.xdsPort }));
    await writeFile(bootstrap, stringify(buildBootstrap({ nodeId: 'envoy-it', cluster: 'it', xdsHost: '127.0.0.1', xdsPort: addresses[0]!.port, xdsAddresses: addresses, delta: false, adminPort: envoyAdmin })));
    envoy = spawnEnvoy(envoyBin!, bootstrap, undefined, (text) => (envoyLog += text));
  });

  after(async () => {
    await stopEnvoy(envoy);
    for (const replica of replicas) await replica.close();
    await etcd?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('the replica it streams from stops: it converges through the other', async () => {
    try {
      await until('the first policy in /config_dump', async () => (await dump()).includes('first.example'), 30_000);
      const holder = replicas.findIndex((r) => r.registry.list().some((n) => n.id === 'envoy-it'));
      assert.ok(holder >= 0, 'one replica holds the Envoy');
      const other = replicas[1 - holder]!;
      const stopped = replicas.splice(holder, 1)[0]!;
      await stopped.close();
      const put = await api(other.admin.port, 'PUT', '/v1/policies/second', { allow: { sni: ['second.example'] } });
      assert.equal(put.status, 200);
      await until('the change made on the other replica in /config_dump', async () => (await dump()).includes('second.example'), 60_000);
      await until('the other replica holds it now', async () => other.registry.list().some((n) => n.id === 'envoy-it'), 30_000);
    } catch (error) {
      throw new Error(`${(error as Error).message}\nEnvoy's log:\n${envoyLog.slice(-4000)}`);
    }
  });
});
