// A real Envoy, started from ENVOY_BIN with the bootstrap `egress-xds bootstrap`
// prints, must end up with our listener and clusters in its /config_dump and
// ACK them. No Envoy can be installed on the CI machines, so without ENVOY_BIN
// this test is skipped with the reason.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { buildBootstrap } from '../../src/bootstrap/envoyBootstrap.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { silentLogger } from '../../src/log.js';
import { startControlPlane, type ControlPlane } from '../../src/server/controlPlane.js';
import { DEFAULT_NODE_IDENTITY_PREFIX } from '../../src/xds/nodeIdentity.js';
import { makePki, type Pki } from '../support/pki.js';
import { freePort, spawnEnvoy, stopEnvoy, until } from './envoyProcess.js';

const envoyBin = process.env.ENVOY_BIN;
const skip = envoyBin ? false : 'ENVOY_BIN is not set: no Envoy binary can be installed on this machine (set ENVOY_BIN=/path/to/envoy to run it)';



/** A minimal TLS 1.2 ClientHello carrying one SNI: enough for tls_inspector. */
function clientHello(serverName: string): Buffer {
  const name = Buffer.from(serverName);
  const sniEntry = Buffer.concat([Buffer.from([0]), u16(name.length), name]);
  const sniList = Buffer.concat([u16(sniEntry.length), sniEntry]);
  const extension = Buffer.concat([u16(0), u16(sniList.length), sniList]);
  const extensions = Buffer.concat([u16(extension.length), extension]);
  const body = Buffer.concat([
    Buffer.from([3, 3]), Buffer.alloc(32, 7), Buffer.from([0]),
    u16(2), Buffer.from([0x00, 0x2f]), Buffer.from([1, 0]),
    extensions,
  ]);
  const handshake = Buffer.concat([Buffer.from([1]), u24(body.length), body]);
  return Buffer.concat([Buffer.from([0x16, 3, 1]), u16(handshake.length), handshake]);
}
const u16 = (n: number) => Buffer.from([n >> 8, n & 255]);
const u24 = (n: number) => Buffer.from([n >> 16, (n >> 8) & 255, n & 255]);

describe('a real Envoy (ENVOY_BIN)', { skip }, () => {
  let dir: string;
  let cp: ControlPlane;
  let envoy: ChildProcess | undefined;
  let envoyAdmin: number;
  let listenerPort: number;
  let envoyLog = '';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'egress-xds-envoy-'));
    listenerPort = await freePort();
    cp = await startControlPlane({ xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir: join(dir, 'data'), embeddedDefault: true, logger: silentLogger, compile: { port: listenerPort } });
    envoyAdmin = await freePort();
    const bootstrap = join(dir, 'bootstrap.yaml');
    await writeFile(bootstrap, stringify(buildBootstrap({ nodeId: 'envoy-it', cluster: 'it', xdsHost: '127.0.0.1', xdsPort: cp.xdsPort, delta: false, adminPort: envoyAdmin })));
    envoy = spawnEnvoy(envoyBin!, bootstrap, undefined, (text) => (envoyLog += text));
  });

  after(async () => {
    await stopEnvoy(envoy);
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('its /config_dump shows the egress listener and both clusters, and it ACKs them', async () => {
    const dump = await until('the listener and clusters in /config_dump', async () => {
      const text = await (await fetch(`http://127.0.0.1:${envoyAdmin}/config_dump`)).text();
      return ['egress_tproxy', 'original_dst_cluster', 'reject_cluster'].every((name) => text.includes(`"${name}"`)) ? text : undefined;
    }).catch((error: Error) => {
      throw new Error(`${error.message}\nEnvoy's log:\n${envoyLog.slice(-4000)}`);
    });
    assert.match(dump, /"transparent": true/);
    assert.match(dump, /envoy\.filters\.listener\.original_dst/);
    assert.match(dump, /envoy\.filters\.listener\.tls_inspector/);
    // Envoy does not compress its discovery requests: they are read off the HTTP/2 stream (src/xds/requestReader.ts).
    const reads = (await cp.metrics.streamsRead.get()).values;
    assert.ok((reads.find((v) => v.labels.path === 'direct')?.value ?? 0) >= 1, `streams read directly: ${JSON.stringify(reads)}`);
    assert.equal(reads.find((v) => v.labels.path === 'call')?.value ?? 0, 0);
    const status = await until('the ACK in the node status', async () => {
      const node = cp.registry.list().find((n) => n.id === 'envoy-it');
      const lds = node?.resources[TypeUrl.Listener];
      return lds?.acked && lds.acked === lds.sent ? node : undefined;
    });
    assert.equal(status.resources[TypeUrl.Listener]!.nack, undefined);
    assert.equal(status.resources[TypeUrl.Cluster]!.acked, status.resources[TypeUrl.Cluster]!.sent);
    // Issue 7: the short, opaque extension names (src/compile/names.ts) are accepted: Envoy
    // found the tcp_proxy filter and the matcher's actions and inputs by their type URLs.
    for (const name of ['tcp', 'chain', 'port']) assert.match(dump, new RegExp(`"name":\\s*"${name}"`), `"${name}" in /config_dump`);
    await until('upToDate in the node status', async () => (cp.registry.list().find((n) => n.id === 'envoy-it')?.upToDate ? true : undefined));
  });

  // Issue 10: Envoy's gRPC access logger streams the refusal to the control plane's ALS (beside ADS).
  test("a refused connection's record reaches /v1/denials", async () => {
    await until('the listener is up', async () => {
      const text = await (await fetch(`http://127.0.0.1:${envoyAdmin}/listeners`)).text();
      return text.includes('egress_tproxy') ? true : undefined;
    });
    // Straight to the listener, no TPROXY: the original destination is the listener itself,
    // with an SNI no policy allows: refused (the loop guard or no policy), and logged with the
    // SNI, which Envoy (>= 1.24) reports in tls_properties without terminating TLS.
    await new Promise<void>((resolve) => {
      const socket = connect(listenerPort, '127.0.0.1', () => socket.write(clientHello('refused.example.net')));
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
      socket.setTimeout(10_000, () => socket.destroy());
    });
    const record = await until('the record in /v1/denials', async () => {
      const body = (await (await fetch(`http://127.0.0.1:${cp.admin.port}/v1/denials?node=envoy-it`)).json()) as { denials: { verdict: string; reason: string; destination: string; listener: string; serverName?: string }[] };
      return body.denials[0];
    }).catch((error: Error) => {
      throw new Error(`${error.message}\nEnvoy's log:\n${envoyLog.slice(-4000)}`);
    });
    assert.equal(record.verdict, 'denied');
    assert.ok(['loop', 'no-policy'].includes(record.reason), record.reason);
    assert.equal(record.destination, `127.0.0.1:${listenerPort}`);
    assert.equal(record.listener, 'egress_tproxy');
    assert.equal(record.serverName, 'refused.example.net');
  });

  // Issue 7 point 4. A connection made straight to the listener (no TPROXY redirect) has
  // the listener's own address as its original destination: the loop guard must refuse it,
  // whatever the policies allow (the embedded default allows names from every source).
  // Binding a transparent listener needs CAP_NET_ADMIN, hence root.
  test('a connection to the listener\'s own port is refused, even with an allowed SNI', { skip: process.getuid?.() === 0 ? false : 'the transparent listener needs CAP_NET_ADMIN (run as root)' }, async () => {
    await cp.store.put('it-loop', { allow: { sni: ['allowed.example.org'], cidrs: [{ cidr: '127.0.0.0/8' }] } }, { client: 'test' });
    const port = listenerPort;
    await until('the listener bound', async () => {
      const text = await (await fetch(`http://127.0.0.1:${envoyAdmin}/listeners`)).text();
      return text.includes(`:${port}`) ? true : undefined;
    });
    const closedWithoutData = await new Promise<boolean>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.write(clientHello('allowed.example.org')));
      let data = 0;
      socket.on('data', (d: Buffer) => (data += d.length));
      socket.on('close', () => resolve(data === 0));
      socket.on('error', () => resolve(data === 0));
      setTimeout(() => reject(new Error('Envoy kept the connection open')), 10_000).unref();
    });
    assert.equal(closedWithoutData, true);
    await until('tcp.rejected_loop counted it', async () => {
      const text = await (await fetch(`http://127.0.0.1:${envoyAdmin}/stats?filter=rejected_loop`)).text();
      const match = /tcp\.rejected_loop\.downstream_cx_total: (\d+)/.exec(text);
      return match && Number(match[1]) >= 1 ? true : undefined;
    });
    // Its record names the SNI, which Envoy (>= 1.24) puts in tls_properties.tls_sni_hostname
    // without terminating TLS: the listener sets no filter state for it any more. Its tags
    // carry the reason and the chain only: verdict and listener are derived by the server.
    const record = await until('the loop record with its server name', async () => {
      const body = (await (await fetch(`http://127.0.0.1:${cp.admin.port}/v1/denials?node=envoy-it`)).json()) as { denials: { verdict: string; reason: string; serverName?: string; listener: string; chain?: string }[] };
      return body.denials.find((d) => d.serverName === 'allowed.example.org');
    });
    assert.deepEqual([record.verdict, record.reason, record.listener, record.chain], ['denied', 'loop', 'egress_tproxy', 'reject_loop']);
  });

  test('a policy change reaches it live', async () => {
    await cp.store.put('it-live', { allow: { sni: ['live.example.org'] } }, { client: 'test' });
    await until('the new name in /config_dump', async () => {
      const text = await (await fetch(`http://127.0.0.1:${envoyAdmin}/config_dump`)).text();
      return text.includes('live.example.org') ? true : undefined;
    });
  });
});

// serve --node-identity uri-san: Envoys with certificates issued as `bootstrap --help`
// says; one is served as itself, one claiming another id is refused.
describe('a real Envoy over mTLS with node identity (ENVOY_BIN)', { skip }, () => {
  let dir: string;
  let pki: Pki;
  let cp: ControlPlane;
  const envoys: ChildProcess[] = [];
  let envoyLog = '';

  async function startEnvoy(nodeId: string, cert: { cert: string; key: string }): Promise<number> {
    const adminPort = await freePort();
    const bootstrap = join(dir, `${nodeId}-${adminPort}.yaml`);
    const tls = { caFile: pki.files.ca, certFile: cert.cert, keyFile: cert.key };
    await writeFile(bootstrap, stringify(buildBootstrap({ nodeId, cluster: 'it', xdsHost: '127.0.0.1', xdsPort: cp.xdsPort, delta: false, adminPort, tls })));
    const envoy = spawnEnvoy(envoyBin!, bootstrap, adminPort, (text) => (envoyLog += text));
    envoys.push(envoy);
    return adminPort;
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'egress-xds-envoy-mtls-'));
    pki = await makePki();
    cp = await startControlPlane({
      xdsAddress: '127.0.0.1:0',
      xdsTls: { certChain: await pki.read('serverCert'), privateKey: await pki.read('serverKey'), clientCa: await pki.read('ca') },
      nodeIdentity: { kind: 'uri-san', prefix: DEFAULT_NODE_IDENTITY_PREFIX },
      adminHost: '127.0.0.1',
      adminPort: 0,
      dataDir: join(dir, 'data'),
      embeddedDefault: true,
      logger: silentLogger,
      compile: { port: await freePort() },
    });
  });

  after(async () => {
    for (const envoy of envoys) {
      await stopEnvoy(envoy);
    }
    await cp?.close();
    await pki?.remove();
    await rm(dir, { recursive: true, force: true });
  });

  test('an Envoy is served as the node its certificate names, and refused as another', async () => {
    const certA = await pki.issueClient('envoy-a', { uri: [`${DEFAULT_NODE_IDENTITY_PREFIX}envoy-a`] });
    const adminA = await startEnvoy('envoy-a', certA);
    await until('the listener in envoy-a', async () => {
      const text = await (await fetch(`http://127.0.0.1:${adminA}/config_dump`)).text();
      return text.includes('"egress_tproxy"') ? true : undefined;
    }).catch((error: Error) => {
      throw new Error(`${error.message}\nEnvoy's log:\n${envoyLog.slice(-4000)}`);
    });
    await startEnvoy('envoy-b', certA);
    const refused = await until('the refusal counted', async () => {
      const value = (await cp.metrics.streamsRefused.get()).values.find((v) => v.labels.reason === 'identity')?.value;
      return value ? value : undefined;
    });
    assert.ok(refused >= 1);
    assert.deepEqual(cp.registry.list().map((n) => n.id), ['envoy-a']);
  });
});

// Issue 10: the DNS listener and the port-80 HTTP path, on a real Envoy. Envoy must ACK the
// listeners (dns_filter, http_inspector, the HTTP connection manager, the CEL access-log
// filters), and the DNS listener must answer an allowed name and refuse another. Both
// listeners are transparent, which needs CAP_NET_ADMIN, hence root.
function dnsQuery(name: string, id: number): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  return Buffer.concat([u16(id), u16(0x0100), u16(1), u16(0), u16(0), u16(0), ...labels, Buffer.from([0]), u16(1), u16(1)]);
}

async function askDns(port: number, name: string): Promise<{ rcode: number; addresses: string[] }> {
  const { createSocket } = await import('node:dgram');
  const socket = createSocket('udp4');
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no DNS answer for ${name}`)), 5_000);
      socket.on('message', (msg: Buffer) => {
        clearTimeout(timer);
        const rcode = msg[3]! & 0x0f;
        const answers = msg.readUInt16BE(6);
        // The answers follow the question; each A record ends in its 4 address bytes.
        const addresses: string[] = [];
        let offset = 12;
        while (msg[offset] !== 0) offset += msg[offset]! + 1;
        offset += 5;
        for (let i = 0; i < answers; i++) {
          if ((msg[offset]! & 0xc0) === 0xc0) offset += 2;
          else {
            while (msg[offset] !== 0) offset += msg[offset]! + 1;
            offset += 1;
          }
          const type = msg.readUInt16BE(offset);
          const length = msg.readUInt16BE(offset + 8);
          if (type === 1 && length === 4) addresses.push([...msg.subarray(offset + 10, offset + 14)].join('.'));
          offset += 10 + length;
        }
        resolve({ rcode, addresses });
      });
      socket.send(dnsQuery(name, 0x1234), port, '127.0.0.1');
    });
  } finally {
    socket.close();
  }
}

describe('a real Envoy: the DNS listener and the plain-HTTP path over RDS (ENVOY_BIN, root)', { skip: skip || (process.getuid?.() === 0 ? false : 'the transparent listeners need CAP_NET_ADMIN (run as root)') }, () => {
  let dir: string;
  let cp: ControlPlane;
  let envoy: ChildProcess | undefined;
  let envoyAdmin: number;
  let dnsPort: number;
  let envoyLog = '';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'egress-xds-envoy-dns-'));
    const listenerPort = await freePort();
    dnsPort = await freePort();
    cp = await startControlPlane({
      xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir: join(dir, 'data'), embeddedDefault: true, logger: silentLogger,
      compile: { port: listenerPort, dns: { port: dnsPort } },
    });
    envoyAdmin = await freePort();
    const bootstrap = join(dir, 'bootstrap.yaml');
    await writeFile(bootstrap, stringify(buildBootstrap({ nodeId: 'envoy-dns', cluster: 'it', xdsHost: '127.0.0.1', xdsPort: cp.xdsPort, delta: false, adminPort: envoyAdmin })));
    envoy = spawnEnvoy(envoyBin!, bootstrap, envoyAdmin, (text) => (envoyLog += text));
  });

  after(async () => {
    await stopEnvoy(envoy);
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('Envoy ACKs the DNS listener and the HTTP path (dns_filter, http_inspector, HTTP connection manager, CEL log filters)', async () => {
    await until('the ACK of both listeners', async () => {
      const node = cp.registry.list().find((n) => n.id === 'envoy-dns');
      const lds = node?.resources[TypeUrl.Listener];
      return lds?.acked && lds.acked === lds.sent ? node : undefined;
    }).catch((error: Error) => {
      throw new Error(`${error.message}\nEnvoy's log:\n${envoyLog.slice(-4000)}`);
    });
    const dump = await (await fetch(`http://127.0.0.1:${envoyAdmin}/config_dump`)).text();
    for (const what of ['egress_dns', 'envoy.filters.udp.dns_filter', 'envoy.filters.listener.http_inspector', TypeUrl.HttpConnectionManager.slice('type.googleapis.com/'.length), 'envoy.access_loggers.tcp_grpc']) {
      assert.ok(dump.includes(what), `${what} in /config_dump`);
    }
  });

  // Port 80 over RDS: the HTTP chains name their route tables (http|SOURCE); Envoy asks for
  // them on the ADS stream, ACKs them, and an edit of allowed names changes only a route
  // table, which Envoy applies without draining a filter chain.
  test('Envoy asks for the port-80 route tables by name over ADS, ACKs them, and a name edit drains no filter chain', async () => {
    const rdsAcked = () => {
      const rds = cp.registry.list().find((n) => n.id === 'envoy-dns')?.resources[TypeUrl.RouteConfiguration];
      return rds?.acked && rds.acked === rds.sent ? rds.acked : undefined;
    };
    const first = await until('the ACK of the route tables', async () => rdsAcked()).catch((error: Error) => {
      throw new Error(`${error.message}\nEnvoy's log:\n${envoyLog.slice(-4000)}`);
    });
    const routes = async () => (await (await fetch(`http://127.0.0.1:${envoyAdmin}/config_dump?resource=dynamic_route_configs`)).text());
    assert.match(await routes(), /"name": "http\|\*"/);
    const draining = async () => {
      const text = await (await fetch(`http://127.0.0.1:${envoyAdmin}/stats?filter=total_filter_chains_draining`)).text();
      return Number(/total_filter_chains_draining: (\d+)/.exec(text)?.[1] ?? 'NaN');
    };
    assert.equal(await draining(), 0);
    await cp.store.put('it-http', { allow: { sni: ['plain-http.example.org'] } }, { client: 'test' });
    await until('the new name in the route tables Envoy holds', async () => ((await routes()).includes('plain-http.example.org') ? true : undefined));
    await until('the new route tables ACKed', async () => (rdsAcked() !== undefined && rdsAcked() !== first ? true : undefined));
    // The listener changed only in its matcher; no chain was replaced, none drains (drain time: 600 s by default).
    assert.equal(await draining(), 0);
  });

  test('the DNS listener answers an allowed name with the synthetic address and refuses another', async () => {
    const allowed = await until('an answer for github.com', async () => askDns(dnsPort, 'github.com').catch(() => undefined));
    assert.equal(allowed.rcode, 0);
    assert.deepEqual(allowed.addresses, ['198.18.0.1']);
    const refused = await askDns(dnsPort, 'c2VjcmV0.exfil.example');
    assert.equal(refused.rcode, 3, 'NXDOMAIN');
    assert.deepEqual(refused.addresses, []);
  });
});
