// Issue 7 points 2 and 3 with a real Envoy behind the agent's TPROXY rules: a guest that
// dials an address of its choosing with an allowed SNI is connected to the NAME (resolved by
// Envoy), never to the address it dialled; a name it is not allowed is refused. Point 5 on the
// agent's side: its kernel cap refuses a guest's connection beyond --max-connections-per-source
// before Envoy accepts it, even while the others wait in tls_inspector.
//
//   microvm  m0 10.250.1.2/30 ──veth── h0 10.250.1.1/30  host (agent rules, Envoy)
//                                      h1 10.250.2.1/30 ──veth── u0 10.250.2.2/30  upstream
//                                                                lo 10.250.3.1 "allowed.test" + its DNS server
//                                                                lo 10.250.3.9 the address the guest dials
//
// The control plane runs in this process (the machine's own namespace) and serves ADS and the
// access log service on a Unix socket, which Envoy in the host namespace reaches through the
// filesystem: no interface is added to the machine's own namespace. Envoy's admin API is a
// Unix socket too. Needs ENVOY_BIN, root and a kernel with TPROXY in network namespaces.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { buildBootstrap, XDS_CLUSTER } from '../../src/bootstrap/envoyBootstrap.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { silentLogger } from '../../src/log.js';
import { startControlPlane, type ControlPlane } from '../../src/server/controlPlane.js';
import { startHoldingClient } from '../agent/support/holder.js';
import { type Listener, startListener, startPython } from '../agent/support/listener.js';
import { microvmHostUpstream, type Netns, tproxySkipReason } from '../agent/support/netns.js';
import { stopEnvoy, until } from './envoyProcess.js';

const envoyBin = process.env.ENVOY_BIN;
const skip = !envoyBin
  ? 'ENVOY_BIN is not set: no Envoy binary can be installed on this machine (set ENVOY_BIN=/path/to/envoy to run it)'
  : process.getuid?.() !== 0
    ? 'needs root: network namespaces, TPROXY and a transparent listener'
    : await tproxySkipReason();

const NAMED = '10.250.3.1';
const DIALLED = '10.250.3.9';
const PORT = 8443;
const LISTENER_PORT = 15001;

// A DNS server for one zone: A records for the names given, NXDOMAIN for the rest.
const DNS_SERVER = `
import socket, sys
host, records = sys.argv[1], dict(r.split('=') for r in sys.argv[2:])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, 53))
print('ready', flush=True)
while True:
    q, peer = s.recvfrom(512)
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode()); i += 1 + q[i]
    qtype = int.from_bytes(q[i + 1:i + 3], 'big')
    question = q[12:i + 5]
    name = '.'.join(labels).lower()
    answer = records.get(name) if qtype == 1 else None
    flags = b'\\x81\\x80' if name in records else b'\\x81\\x83'
    head = q[:2] + flags + b'\\x00\\x01' + (b'\\x00\\x01' if answer else b'\\x00\\x00') + b'\\x00\\x00\\x00\\x00'
    rr = (b'\\xc0\\x0c\\x00\\x01\\x00\\x01\\x00\\x00\\x00\\x1e\\x00\\x04' + socket.inet_aton(answer)) if answer else b''
    s.sendto(head + question + rr, peer)
`;

// A TLS client as far as tls_inspector cares: a ClientHello carrying one SNI, then the first
// line the far end sends (the upstream listeners answer one JSON line naming themselves).
const SNI_CLIENT = `
import json, socket, sys
host, port, sni = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
def u16(n): return n.to_bytes(2, 'big')
entry = b'\\x00' + u16(len(sni)) + sni
ext = u16(0) + u16(len(entry) + 2) + u16(len(entry)) + entry
body = b'\\x03\\x03' + b'\\x07' * 32 + b'\\x00' + u16(2) + b'\\x00\\x2f' + b'\\x01\\x00' + u16(len(ext)) + ext
hs = b'\\x01' + len(body).to_bytes(3, 'big') + body
try:
    c = socket.create_connection((host, port), timeout=5)
    c.sendall(b'\\x16\\x03\\x01' + u16(len(hs)) + hs)
    line = c.makefile().readline().strip()
    print(line or json.dumps({'error': 'closed'}))
except Exception as e:
    print(json.dumps({'error': type(e).__name__}))
`;

interface Answer { who?: string; local?: string; error?: string }

async function dialWithSni(ns: Netns, host: string, port: number, sni: string): Promise<Answer> {
  const result = await ns.exec('python3', '-c', SNI_CLIENT, host, String(port), sni);
  try {
    return JSON.parse(result.stdout.trim()) as Answer;
  } catch {
    return { error: `client failed: ${result.stderr.trim() || result.stdout.trim()}` };
  }
}

/** GET on Envoy's admin API, which listens on a Unix socket. */
function envoyAdmin(socketPath: string, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

describe('a real Envoy behind TPROXY dials the allowed name, not the address the guest dialled (ENVOY_BIN)', { skip }, () => {
  let dir: string;
  let cp: ControlPlane;
  const namespaces: Netns[] = [];
  const listeners: Listener[] = [];
  let envoy: ChildProcess | undefined;
  let envoyLog = '';
  let mvm: Netns;
  let host: Netns;
  let adminSocket: string;
  const agentFlags = ['--source', '10.250.1.0/30', '--port', String(LISTENER_PORT), '--allow-upstream-cidr', `${NAMED}/32`];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'egress-xds-envoy-tproxy-'));
    const made = await microvmHostUpstream(namespaces, [NAMED, DIALLED]);
    mvm = made.mvm;
    host = made.host;
    const { up } = made;
    listeners.push(await startListener(up, 'named', NAMED, PORT, false));
    listeners.push(await startListener(up, 'dialled', DIALLED, PORT, false));
    listeners.push(await startPython(up, 'dns', DNS_SERVER, [NAMED, `allowed.test=${NAMED}`]));

    const xdsSocket = join(dir, 'xds.sock');
    adminSocket = join(dir, 'envoy-admin.sock');
    cp = await startControlPlane({
      xdsAddress: `unix:${xdsSocket}`,
      adminHost: '127.0.0.1',
      adminPort: 0,
      dataDir: join(dir, 'data'),
      embeddedDefault: false,
      logger: silentLogger,
      compile: { port: LISTENER_PORT, dnsCache: { resolvers: [NAMED] } },
    });
    await cp.store.put('microvm', { sources: ['10.250.1.0/30'], allow: { sni: ['allowed.test'] } }, { client: 'test' });

    // The agent's rules in the host namespace: TPROXY from the microVM to Envoy, and the
    // upstream guard, which lets Envoy's marked sockets reach this private range only because
    // it is named (a name resolving to 10.250.3.1 is otherwise a special address: refused).
    const installed = await host.cli('install', ...agentFlags);
    assert.equal(installed.exitCode, 0, installed.stderr);

    const bootstrap = buildBootstrap({ nodeId: 'envoy-tproxy', cluster: 'it', xdsHost: '127.0.0.1', xdsPort: 1, delta: false, adminPort: 1 });
    // Both ends on Unix sockets, across the namespace boundary through the filesystem.
    const clusters = (bootstrap['static_resources'] as { clusters: Record<string, unknown>[] }).clusters;
    const xds = clusters.find((c) => c['name'] === XDS_CLUSTER)!;
    xds['type'] = 'STATIC';
    xds['load_assignment'] = { cluster_name: XDS_CLUSTER, endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: xdsSocket } } } }] }] };
    bootstrap['admin'] = { address: { pipe: { path: adminSocket } } };
    const bootstrapFile = join(dir, 'bootstrap.yaml');
    await writeFile(bootstrapFile, stringify(bootstrap));
    // `ip netns exec` execs Envoy in place: the child's PID is Envoy's.
    envoy = spawn('ip', ['netns', 'exec', host.name, envoyBin!, '-c', bootstrapFile, '--disable-hot-restart', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
    envoy.stdout!.on('data', (d: Buffer) => (envoyLog += d.toString()));
    envoy.stderr!.on('data', (d: Buffer) => (envoyLog += d.toString()));
    await until('the listener acknowledged and bound', async () => {
      const node = cp.registry.list().find((n) => n.id === 'envoy-tproxy');
      const lds = node?.resources[TypeUrl.Listener];
      if (!lds?.acked || lds.acked !== lds.sent) return undefined;
      return (await envoyAdmin(adminSocket, '/listeners')).includes(`:${LISTENER_PORT}`) ? true : undefined;
    }, 60_000).catch((error: Error) => {
      throw new Error(`${error.message}\nEnvoy's log:\n${envoyLog.slice(-4000)}`);
    });
  });

  after(async () => {
    await stopEnvoy(envoy);
    for (const listener of listeners) await listener.stop();
    await cp?.close();
    for (const ns of namespaces.reverse()) await ns.delete();
    await rm(dir, { recursive: true, force: true });
  });

  test('an allowed SNI sent to another address reaches the name\'s address', async () => {
    const answer = await dialWithSni(mvm, DIALLED, PORT, 'allowed.test');
    assert.equal(answer.who, 'named', `dialled by name, not by the guest's address: ${JSON.stringify(answer)}\n${envoyLog.slice(-3000)}`);
    assert.equal(answer.local, `${NAMED}:${PORT}`);
  });

  test('the same SNI to the name\'s own address reaches it too', async () => {
    const answer = await dialWithSni(mvm, NAMED, PORT, 'allowed.test');
    assert.equal(answer.who, 'named', JSON.stringify(answer));
  });

  test('the agent\'s kernel cap: a 3rd connection, while two wait in tls_inspector, is refused before Envoy accepts it', async () => {
    const capped = await host.cli('install', ...agentFlags, '--max-connections-per-source', '2');
    assert.equal(capped.exitCode, 0, capped.stderr);
    // Envoy's own count of the connections its listener accepted.
    const accepted = async (): Promise<number> => {
      const stats = await envoyAdmin(adminSocket, '/stats?filter=downstream_cx_total');
      const line = stats.split('\n').find((l) => new RegExp(`^listener\\.[^ ]*_${LISTENER_PORT}\\.downstream_cx_total: `).test(l));
      return Number(line?.split(': ')[1] ?? NaN);
    };
    const before = await accepted();
    assert.ok(Number.isFinite(before), 'the listener\'s downstream_cx_total is readable');
    const client = await startHoldingClient(mvm);
    try {
      // No ClientHello: the connections sit in tls_inspector, where connection_limit cannot see them.
      for (let i = 0; i < 2; i++) assert.ok((await client.open('10.250.1.2', DIALLED, PORT)).id, `connection ${i + 1}`);
      assert.deepEqual(await client.open('10.250.1.2', DIALLED, PORT), { error: 'ConnectionRefusedError' }, 'the 3rd is reset at its SYN');
      await until('Envoy accepted the two', async () => ((await accepted()) === before + 2 ? true : undefined), 10_000);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(await accepted(), before + 2, 'Envoy never saw the 3rd');
    } finally {
      await client.stop();
      assert.equal((await host.cli('install', ...agentFlags)).exitCode, 0, 'back to the default cap');
    }
  });

  test('an SNI no policy allows reaches nothing, and the refusal is logged', async () => {
    const answer = await dialWithSni(mvm, DIALLED, PORT, 'other.test');
    assert.equal(answer.who, undefined, `refused: ${JSON.stringify(answer)}`);
    const record = await until('the refusal in /v1/denials', async () => {
      const body = (await (await fetch(`http://127.0.0.1:${cp.admin.port}/v1/denials?node=envoy-tproxy`)).json()) as { denials: { reason: string; destination: string; serverName?: string; source?: string }[] };
      return body.denials.find((d) => d.destination === `${DIALLED}:${PORT}`);
    });
    assert.equal(record.reason, 'no-policy');
  });
});
