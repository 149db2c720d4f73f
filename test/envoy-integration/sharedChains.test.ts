// serve --max-connections-per-source 0 with a real Envoy (ENVOY_BIN; skipped without it):
// the listener without connection_limit and with the shared name|* / original_dst|* chains
// is ACKed, and edits of a microVM's policy and of the shared policy drain no filter chain.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { buildBootstrap } from '../../src/bootstrap/envoyBootstrap.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { silentLogger } from '../../src/log.js';
import { startControlPlane, type ControlPlane } from '../../src/server/controlPlane.js';
import { freePort, spawnEnvoy, stopEnvoy, until } from './envoyProcess.js';

const envoyBin = process.env.ENVOY_BIN;
const skip = envoyBin ? false : 'ENVOY_BIN is not set: no Envoy binary can be installed on this machine (set ENVOY_BIN=/path/to/envoy to run it)';
const NODE = 'envoy-cap0';

describe('a real Envoy (ENVOY_BIN), serve --max-connections-per-source 0', { skip }, () => {
  let dir: string;
  let cp: ControlPlane;
  let envoy: ChildProcess | undefined;
  let envoyAdmin: number;
  let envoyLog = '';
  const ldsAcked = () => {
    const lds = cp.registry.list().find((n) => n.id === NODE)?.resources[TypeUrl.Listener];
    return lds?.acked && lds.acked === lds.sent && lds.nack === undefined ? lds.acked : undefined;
  };
  const dump = async () => (await fetch(`http://127.0.0.1:${envoyAdmin}/config_dump?resource=dynamic_listeners`)).text();
  const draining = async () => {
    const text = await (await fetch(`http://127.0.0.1:${envoyAdmin}/stats?filter=total_filter_chains_draining`)).text();
    return Number(/total_filter_chains_draining: (\d+)/.exec(text)?.[1] ?? 'NaN');
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'egress-xds-envoy-cap0-'));
    cp = await startControlPlane({
      xdsAddress: '127.0.0.1:0',
      adminHost: '127.0.0.1',
      adminPort: 0,
      dataDir: join(dir, 'data'),
      embeddedDefault: true,
      logger: silentLogger,
      compile: { port: await freePort(), maxConnectionsPerSource: 0 },
    });
    for (let i = 0; i < 20; i++) {
      await cp.store.put(`vm-${i}`, { sources: [`10.100.0.${i * 4}/30`], allow: { sni: [`api${i}.example.org`], ...(i % 5 === 0 && { cidrs: [{ cidr: `192.0.2.${i}/32`, ports: [5432] }] }) } }, { client: 'test' });
    }
    await cp.store.put('common-deps', { allow: { sni: ['pkg0.common.dev'] } }, { client: 'test' });
    envoyAdmin = await freePort();
    const bootstrap = join(dir, 'bootstrap.yaml');
    await writeFile(bootstrap, stringify(buildBootstrap({ nodeId: NODE, cluster: 'it', xdsHost: '127.0.0.1', xdsPort: cp.xdsPort, delta: false, adminPort: envoyAdmin })));
    envoy = spawnEnvoy(envoyBin!, bootstrap, undefined, (text) => (envoyLog += text));
  });

  after(async () => {
    await stopEnvoy(envoy);
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('Envoy ACKs the listener: shared chains, no connection_limit; edits of a microVM and of the shared policy drain nothing', async () => {
    const first = await until('the ACK of the listener', async () => ldsAcked()).catch((error: Error) => {
      throw new Error(`${error.message}\nEnvoy's log:\n${envoyLog.slice(-4000)}`);
    });
    const text = await dump();
    assert.match(text, /"name": "name\|\*"/);
    assert.match(text, /"name": "original_dst\|\*"/);
    assert.doesNotMatch(text, /connection_limit/);
    assert.doesNotMatch(text, /"name": "name\|10\.100/);
    assert.equal(await draining(), 0);
    await cp.store.put('vm-3', { sources: ['10.100.0.12/30'], allow: { sni: ['api3.example.org', 'new3.example.org'] } }, { client: 'test' });
    const second = await until('the own edit ACKed', async () => (ldsAcked() !== undefined && ldsAcked() !== first ? ldsAcked() : undefined));
    await cp.store.put('common-deps', { allow: { sni: ['pkg0.common.dev', 'pkg1.common.dev'] } }, { client: 'test' });
    await until('the shared edit ACKed', async () => (ldsAcked() !== undefined && ldsAcked() !== second ? true : undefined));
    assert.ok((await dump()).includes('pkg1.common.dev'));
    // Only the matcher changed: no chain was replaced, none drains.
    assert.equal(await draining(), 0);
  });
});
