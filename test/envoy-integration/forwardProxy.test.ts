// A real Envoy (ENVOY_BIN) serving `serve --forward-proxy --transparent=false`: it ACKs
// forward_http and forward_tls, and curl through https_proxy reaches an allowed name and
// gets a 403 naming the field for a refused one. The allowed name is "localhost" on the
// port of a local HTTPS server (the name ports are a compile option; 443 by default).
// Skipped with the reason without ENVOY_BIN: no Envoy can be installed here. Envoy ≥ 1.26
// (ignore_port_in_host_matching, filter_chain_matcher, the dynamic forward proxy with
// connect_config).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { buildBootstrap } from '../../src/bootstrap/envoyBootstrap.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { silentLogger } from '../../src/log.js';
import { startControlPlane, type ControlPlane } from '../../src/server/controlPlane.js';
import { makePki, type Pki } from '../support/pki.js';
import { freePort, spawnEnvoy, stopEnvoy, until } from './envoyProcess.js';

const envoyBin = process.env.ENVOY_BIN;
const skip = envoyBin ? false : 'ENVOY_BIN is not set: no Envoy binary can be installed on this machine (set ENVOY_BIN=/path/to/envoy to run it)';



const curl = (args: string[], env: Record<string, string>) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', ...args], { env: { PATH: process.env.PATH ?? '', ...env } }, (error, stdout, stderr) =>
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });

/** What each real-Envoy forward-proxy suite runs: an HTTPS upstream on loopback, the control plane
 * compiling only the forward listeners (allowing "localhost"), and an Envoy on its bootstrap. */
interface ForwardFixture {
  readonly dir: string;
  readonly pki: Pki;
  readonly cp: ControlPlane;
  readonly upstream: Server;
  readonly upstreamPort: number;
  readonly httpPort: number;
  readonly envoy: ChildProcess;
  readonly envoyAdmin: number;
  readonly nodeId: string;
  /** Envoy's output so far, for failure messages. */
  log(): string;
}

async function startForwardFixture(nodeId: string, inspectConnect: boolean): Promise<ForwardFixture> {
  const dir = await mkdtemp(join(tmpdir(), `egress-xds-${nodeId}-`));
  const pki = await makePki();
  const upstream = createHttpsServer({ cert: await pki.read('serverCert'), key: await pki.read('serverKey') }, (_req, res) => res.end('hello from upstream\n'));
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  const upstreamPort = (upstream.address() as AddressInfo).port;
  const httpPort = await freePort();
  const cp = await startControlPlane({
    xdsAddress: '127.0.0.1:0',
    adminHost: '127.0.0.1',
    adminPort: 0,
    dataDir: join(dir, 'data'),
    logger: silentLogger,
    compile: {
      transparent: false,
      upstreamMark: 0,
      forwardProxy: { address: '127.0.0.1', httpPort, tlsPort: await freePort(), namePorts: { connect: [upstreamPort], http: [80] }, ...(inspectConnect && { inspectConnect }) },
    },
  });
  await cp.store.put('local', { allow: { sni: ['localhost'] } }, { client: 'test' });
  const envoyAdmin = await freePort();
  const bootstrap = join(dir, 'bootstrap.yaml');
  await writeFile(
    bootstrap,
    stringify(buildBootstrap({ nodeId, cluster: 'it', xdsHost: '127.0.0.1', xdsPort: cp.xdsPort, delta: false, adminPort: envoyAdmin, ...(inspectConnect && { internalListeners: true }) })),
  );
  let envoyLog = '';
  const envoy = spawnEnvoy(envoyBin!, bootstrap, envoyAdmin, (text) => (envoyLog += text));
  return { dir, pki, cp, upstream, upstreamPort, httpPort, envoy, envoyAdmin, nodeId, log: () => envoyLog };
}

async function stopForwardFixture(f: ForwardFixture | undefined): Promise<void> {
  if (!f) return;
  await stopEnvoy(f.envoy);
  await f.cp.close();
  await new Promise((r) => f.upstream.close(r));
  await f.pki.remove();
  await rm(f.dir, { recursive: true, force: true });
}

/** Until the node ACKs its listeners (Envoy's log in the error otherwise). */
async function listenersAcked(f: ForwardFixture): Promise<void> {
  await until('the ACK of the listeners', async () => {
    const lds = f.cp.registry.list().find((n) => n.id === f.nodeId)?.resources[TypeUrl.Listener];
    return lds?.acked && lds.acked === lds.sent && !lds.nack ? true : undefined;
  }).catch((error: Error) => {
    throw new Error(`${error.message}\nEnvoy's log:\n${f.log().slice(-4000)}`);
  });
}

describe('a real Envoy as the forward proxy (ENVOY_BIN)', { skip }, () => {
  let f: ForwardFixture;
  before(async () => {
    f = await startForwardFixture('envoy-forward', false);
  });
  after(() => stopForwardFixture(f));

  test('it ACKs forward_http and forward_tls', async () => {
    await listenersAcked(f);
    const dump = await (await fetch(`http://127.0.0.1:${f.envoyAdmin}/config_dump`)).text();
    assert.match(dump, /"forward_http"/);
    assert.match(dump, /"forward_tls"/);
  });

  test('curl through https_proxy: the allowed name answers, a refused one gets 403 naming allow.sni', async () => {
    const env = { https_proxy: `http://127.0.0.1:${f.httpPort}`, HTTPS_PROXY: `http://127.0.0.1:${f.httpPort}` };
    const allowed = await until('the allowed name through the proxy', async () => {
      const r = await curl(['-k', `https://localhost:${f.upstreamPort}/`], env);
      return r.code === 0 ? r : undefined;
    });
    assert.equal(allowed.stdout, 'hello from upstream\n');
    const refused = await curl(['-k', '-v', `https://refused.example:${f.upstreamPort}/`], env);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /HTTP\/1\.1 403/);
    const plain = await curl(['-x', `http://127.0.0.1:${f.httpPort}`, 'http://refused.example/'], {});
    assert.match(plain.stdout, /refused\.example refused for 127\.0\.0\.1: no policy selecting this source allows this name \(allow\.sni\)/);
  });

  // Issue 10 on the forward proxy: the refusals above reach the ALS beside ADS as records
  // of listener forward_http; the loop guard refuses the proxy's own port on any host.
  test('the refusals reach /v1/denials as forward_http records; a CONNECT to the proxy itself is refused as a loop', async () => {
    const looped = await curl(['-v', '-p', '-x', `http://127.0.0.1:${f.httpPort}`, `http://127.0.0.1:${f.httpPort}/`], {});
    assert.match(looped.stderr, /HTTP\/1\.1 403/);
    const records = await until('the forward_http records in /v1/denials', async () => {
      const body = (await (await fetch(`http://127.0.0.1:${f.cp.admin.port}/v1/denials?node=envoy-forward`)).json()) as {
        denials: { verdict: string; reason: string; listener: string; serverName?: string; destination: string }[];
      };
      const mine = body.denials.filter((d) => d.listener === 'forward_http');
      return mine.some((d) => d.reason === 'loop') && mine.some((d) => d.serverName === 'refused.example') ? mine : undefined;
    }).catch((error: Error) => {
      throw new Error(`${error.message}\nEnvoy's log:\n${f.log().slice(-4000)}`);
    });
    for (const record of records) assert.equal(record.verdict, 'denied');
    assert.ok(records.some((d) => d.reason === 'loop' && d.destination === `127.0.0.1:${f.httpPort}`), JSON.stringify(records));
  });
});

/** CONNECT `authority` through the proxy, then TLS inside with `servername`; the body of GET / or the error. */
function throughTunnel(proxyPort: number, authority: string, servername: string): Promise<{ ok: true; body: string } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const request = httpRequest({ host: '127.0.0.1', port: proxyPort, method: 'CONNECT', path: authority, headers: { host: authority }, timeout: 10_000 });
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', (error) => resolve({ ok: false, error: error.message }));
    request.on('connect', (response, socket) => {
      if (response.statusCode !== 200) {
        socket.destroy();
        resolve({ ok: false, error: `CONNECT answered ${response.statusCode}` });
        return;
      }
      const tls = tlsConnect({ socket, servername, rejectUnauthorized: false }, () => tls.write(`GET / HTTP/1.1\r\nhost: ${servername}\r\nconnection: close\r\n\r\n`));
      let body = '';
      tls.setTimeout(10_000, () => tls.destroy(new Error('timeout')));
      tls.on('data', (d: Buffer) => (body += d.toString()));
      tls.on('error', (error) => resolve({ ok: false, error: error.message }));
      tls.on('close', () => resolve(body ? { ok: true, body } : { ok: false, error: 'closed without an answer' }));
    });
    request.end();
  });
}

// serve --forward-proxy-inspect-connect: the tunnel of an allowed CONNECT goes through the
// internal listener, which dials an allowed inner SNI and closes another (domain fronting).
// Envoy ≥ 1.25 for internal listeners; the bootstrap carries envoy.bootstrap.internal_listener.
describe('a real Envoy checking the SNI inside CONNECT (ENVOY_BIN)', { skip }, () => {
  let f: ForwardFixture;
  before(async () => {
    f = await startForwardFixture('envoy-inspect', true);
  });
  after(() => stopForwardFixture(f));

  test('it ACKs the internal listener; an allowed inner SNI answers, another is closed and logged denied', async () => {
    await listenersAcked(f);
    assert.match(await (await fetch(`http://127.0.0.1:${f.envoyAdmin}/config_dump`)).text(), /"forward_inspect\|[0-9a-f]{16}"/);
    const authority = `localhost:${f.upstreamPort}`;
    const allowed = await until('the allowed inner SNI through the tunnel', async () => {
      const r = await throughTunnel(f.httpPort, authority, 'localhost');
      return r.ok ? r : undefined;
    });
    assert.match(allowed.body, /hello from upstream/);
    const fronted = await throughTunnel(f.httpPort, authority, 'fronted.example');
    assert.equal(fronted.ok, false, 'an inner SNI the allowlist does not hold is closed');
    const records = await until('the inner refusal in /v1/denials', async () => {
      const body = (await (await fetch(`http://127.0.0.1:${f.cp.admin.port}/v1/denials?node=envoy-inspect`)).json()) as {
        denials: { verdict: string; reason: string; listener: string; chain?: string; serverName?: string }[];
      };
      const mine = body.denials.filter((d) => d.serverName === 'fronted.example');
      return mine.length > 0 ? mine : undefined;
    }).catch((error: Error) => {
      throw new Error(`${error.message}\nEnvoy's log:\n${f.log().slice(-4000)}`);
    });
    assert.equal(records[0]!.verdict, 'denied');
    assert.equal(records[0]!.reason, 'no-policy');
    assert.equal(records[0]!.listener, 'forward_http');
  });
});
