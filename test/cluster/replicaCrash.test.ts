// A replica run as operators run it (`egress-xds serve --store etcd://...`, a
// child process) is killed with SIGKILL in the middle of a burst of writes:
// every write it answered 200 is on every other replica and served to their
// Envoys; an Envoy-like client whose bootstrap lists two replicas fails over
// to the live one and converges; the dead replica's nodes leave the fleet list.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { buildBootstrap } from '../../src/bootstrap/envoyBootstrap.js';
import type { ControlPlane } from '../../src/server/controlPlane.js';
import { FakeEnvoy } from '../support/fakeEnvoy.js';
import { FailoverEnvoy, targetOf } from '../support/failoverEnvoy.js';
import { etcdAvailable, startEtcd, type EtcdCluster } from '../support/etcdCluster.js';
import { allowedNames, api, startReplica, until } from './support.js';

const skip = etcdAvailable() ? false : 'no etcd binary (apt-get install etcd-server, or set ETCD_BIN)';
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const PREFIX = '/crash-test/';

let etcd: EtcdCluster;
const inProcess: ControlPlane[] = [];
let child: ChildProcess | undefined;

before(async () => {
  if (skip) return;
  etcd = await startEtcd(1);
});
after(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const replica of inProcess) await replica.close();
  await etcd?.close();
});

/** `serve --store` as a child; resolves with its ports once it logs that it serves. */
function serveChild(args: string[]): Promise<{ child: ChildProcess; xds: number; admin: number }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [cli, 'serve', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`serve did not start in 20 s:\n${stderr}`));
    }, 20_000);
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      const line = stderr.split('\n').find((l) => l.includes('"egress-xds serving"'));
      if (!line) return;
      clearTimeout(timer);
      const record = JSON.parse(line) as { xds: string; admin: string };
      const port = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));
      resolve({ child: proc, xds: port(record.xds), admin: port(record.admin) });
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited (${code}):\n${stderr}`));
    });
  });
}

test('kill -9 of a replica during a burst: every 200 is everywhere and served; clients fail over; its nodes expire', { skip, timeout: 120_000 }, async () => {
  const x = await serveChild(['--store', etcd.url, '--etcd-prefix', PREFIX, '--replica-id', 'X', '--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0']);
  child = x.child;
  const a = await startReplica(etcd.endpoints, PREFIX, 'A');
  inProcess.push(a);
  const b = await startReplica(etcd.endpoints, PREFIX, 'B');
  inProcess.push(b);

  // The Envoy's bootstrap lists X first, then A: it streams from X until X dies.
  const bootstrap = buildBootstrap({
    nodeId: 'host-failover', cluster: 'fleet', xdsHost: '127.0.0.1', xdsPort: x.xds, delta: false, adminPort: 9901,
    xdsAddresses: [{ host: '127.0.0.1', port: x.xds }, { host: '127.0.0.1', port: a.xdsPort }],
  }) as { static_resources: { clusters: { load_assignment: { endpoints: { lb_endpoints: { endpoint: { address: { socket_address: { address: string; port_value: number } } } }[] }[] } }[] } };
  const endpoints = bootstrap.static_resources.clusters[0]!.load_assignment.endpoints[0]!.lb_endpoints.map((e) => ({
    host: e.endpoint.address.socket_address.address,
    port: e.endpoint.address.socket_address.port_value,
  }));
  assert.equal(endpoints.length, 2);
  const failover = new FailoverEnvoy(targetOf(endpoints), { nodeId: 'host-failover' });
  const onB = new FakeEnvoy(`127.0.0.1:${b.xdsPort}`, { nodeId: 'host-b' }).connect();
  try {
    await failover.current.waitFor('the first state from X', () => allowedNames(failover.current).includes('github.com'), 10_000);
    await until('A lists the failover node on X', async () =>
      ((await api(a.admin.port, 'GET', '/v1/nodes')).body as { id: string; replica: string }[]).some((n) => n.id === 'host-failover' && n.replica === 'X'));

    // The burst: 4 writers on X; X is killed once some writes were acknowledged.
    const acknowledged: string[] = [];
    let stop = false;
    const writer = async (w: number) => {
      for (let i = 0; !stop && i < 500; i++) {
        const name = `burst-${w}-${i}`;
        try {
          const reply = await api(x.admin, 'PUT', `/v1/policies/${name}`, { allow: { sni: [`${name}.example`] } });
          if (reply.status === 200) acknowledged.push(name);
        } catch {
          return; // the connection died with X
        }
      }
    };
    const writers = [0, 1, 2, 3].map(writer);
    await until('some writes acknowledged', () => acknowledged.length >= 12, 20_000);
    x.child.kill('SIGKILL');
    stop = true;
    await Promise.all(writers);
    const ackedAtKill = [...acknowledged];
    assert.ok(ackedAtKill.length >= 12);

    for (const replica of [a, b]) {
      const names = new Set(((await api(replica.admin.port, 'GET', '/v1/policies')).body as { name: string }[]).map((p) => p.name));
      const missing = ackedAtKill.filter((name) => !names.has(name));
      assert.deepEqual(missing, [], 'every write X answered 200 is on the other replicas');
    }
    const wanted = ackedAtKill.map((name) => `${name}.example`);
    await onB.waitFor('B serves every acknowledged write', () => wanted.every((n) => allowedNames(onB).includes(n)), 10_000);

    // The failover client is now on A, and converges on the current state, including a later change made on B.
    const later = await api(b.admin.port, 'PUT', '/v1/policies/after-failover', { allow: { sni: ['after-failover.example'] } });
    assert.equal(later.status, 200, JSON.stringify(later.body));
    await until('the client failed over and converged', () => {
      const names = allowedNames(failover.current);
      return names.includes('after-failover.example') && wanted.every((n) => names.includes(n));
    }, 20_000);
    assert.ok(failover.streams >= 2, 'it reconnected');

    // X's lease runs out (10 s): its entries leave the fleet list; the node shows on A.
    await until('the dead replica\'s entries expired; the node is listed on A', async () => {
      const nodes = (await api(b.admin.port, 'GET', '/v1/nodes')).body as { id: string; replica: string }[];
      return !nodes.some((n) => n.replica === 'X') && nodes.some((n) => n.id === 'host-failover' && n.replica === 'A');
    }, 30_000);
  } finally {
    failover.close();
    onB.close();
  }
});
