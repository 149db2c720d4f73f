// The Access Log Service end to end: a grpc-js client sending what Envoy's
// gRPC access loggers send reaches /v1/denials, the live stream, the summary,
// the metrics and the CLI; broken input is refused with a reason and stores nothing.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/log.js';
import { startControlPlane, type ControlPlane } from '../../src/server/controlPlane.js';
import { denialsCommand } from '../../src/cli/denials.js';
import { policyCommand } from '../../src/cli/policy.js';
import { TAG } from '../../src/denials/record.js';
import { openAlsStream, type TcpEntry } from '../support/alsClient.js';

const denied = (over: Partial<TcpEntry> = {}): TcpEntry => ({
  source: '172.31.0.5:40000',
  destination: '93.184.216.34:443',
  sni: 'example.com',
  tags: { [TAG.verdict]: 'denied', [TAG.reason]: 'no-policy', [TAG.listener]: 'egress_tproxy', [TAG.chain]: 'reject' },
  ...over,
});

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function captureIo() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (t: string) => void out.push(t), err: (t: string) => void err.push(t), env: {}, stdin: async () => '' }, out, err };
}

describe('Access Log Service → denial log', () => {
  let dir: string;
  let cp: ControlPlane;
  let url: string;
  let target: string;
  const get = async (path: string) => {
    const response = await fetch(`${url}${path}`);
    return { status: response.status, body: (await response.json()) as any };
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'egress-xds-als-'));
    cp = await startControlPlane({
      xdsAddress: '127.0.0.1:0', adminHost: '127.0.0.1', adminPort: 0, dataDir: join(dir, 'data'), embeddedDefault: true, logger: silentLogger,
      denials: { file: { path: join(dir, 'denials.jsonl'), maxBytes: 1024 * 1024, files: 2 } },
    });
    url = `http://127.0.0.1:${cp.admin.port}`;
    target = `127.0.0.1:${cp.xdsPort}`;
  });
  after(async () => {
    await cp.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('TCP and HTTP entries show in /v1/denials with node, addresses, name, reason and revision', async () => {
    const stream = openAlsStream(target, 'host-a');
    stream.sendTcp([denied(), denied({ source: '172.31.0.5:40001', destination: '10.0.0.1:22', sni: undefined, tags: { ...denied().tags, [TAG.reason]: 'forbidden-address' } })]);
    stream.sendHttp([{ source: '172.31.0.5:40002', destination: '93.184.216.34:80', host: 'plain.example.org:80', path: '/x', tags: { [TAG.verdict]: 'denied', [TAG.reason]: 'http-host', [TAG.listener]: 'egress_http' } }]);
    assert.equal(await stream.finish(), null);
    const { body } = await get('/v1/denials?node=host-a');
    assert.equal(body.denials.length, 3);
    const [http, plain, tls] = body.denials;
    assert.equal(tls.serverName, 'example.com');
    assert.equal(tls.source, '172.31.0.5:40000');
    assert.equal(tls.destination, '93.184.216.34:443');
    assert.equal(tls.reason, 'no-policy');
    assert.equal(tls.verdict, 'denied');
    assert.equal(tls.listener, 'egress_tproxy');
    assert.equal(tls.revision, String(cp.store.revision));
    assert.equal(plain.serverName, undefined);
    assert.equal(plain.reason, 'forbidden-address');
    assert.equal(http.serverName, 'plain.example.org');
    assert.deepEqual(http.http, { method: 'GET', path: '/x', status: 403 });
    // Filters.
    assert.equal((await get('/v1/denials?destination=example.com')).body.denials.length, 1);
    assert.equal((await get('/v1/denials?source=172.31.0.0/16&limit=2')).body.denials.length, 2);
    assert.equal((await get('/v1/denials?node=other')).body.denials.length, 0);
    assert.equal((await get(`/v1/denials?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).body.denials.length, 0);
    // Summary.
    const summary = (await get('/v1/denials/summary?node=host-a')).body.sources;
    assert.equal(summary[0].source, '172.31.0.5');
    assert.equal(summary[0].count, 3);
    // Metrics.
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /egress_xds_denials_total\{node="host-a",reason="no-policy",verdict="denied"\} 1/);
    // The JSONL file (written in the background).
    const lines = await until('the denial log file', async () => {
      const text = await readFile(join(dir, 'denials.jsonl'), 'utf8').catch(() => '');
      const all = text.trim().split('\n').filter(Boolean);
      return all.length >= 3 ? all : undefined;
    });
    assert.equal(JSON.parse(lines[0]!).node, 'host-a');
  });

  test('the live stream (SSE) delivers a record sent after it opened, and the CLI prints it', async () => {
    const controller = new AbortController();
    const response = await fetch(`${url}/v1/denials?follow=1&node=host-sse`, { signal: controller.signal });
    assert.equal(response.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    const reader = response.body!.getReader();
    let text = '';
    const stream = openAlsStream(target, 'host-sse');
    stream.sendTcp([denied({ sni: 'live.example.net' })]);
    await until('the SSE event', async () => {
      const { value } = await reader.read();
      text += new TextDecoder().decode(value);
      return /event: denial\n/.test(text) ? true : undefined;
    });
    const data = JSON.parse(/data: (.*)\n/.exec(text)![1]!);
    assert.equal(data.serverName, 'live.example.net');
    assert.equal(data.node, 'host-sse');
    controller.abort();
    await stream.finish();

    // Last-Event-ID resumes: the records after that id, then live.
    const seq = Number(/id: (\d+)\n/.exec(text)![1]);
    const again = openAlsStream(target, 'host-sse');
    again.sendTcp([denied({ sni: 'missed.example.net' })]);
    await again.finish();
    const resumed = new AbortController();
    const response2 = await fetch(`${url}/v1/denials?follow=1&node=host-sse`, { signal: resumed.signal, headers: { 'last-event-id': String(seq) } });
    const reader2 = response2.body!.getReader();
    let text2 = '';
    await until('the missed record', async () => {
      const { value } = await reader2.read();
      text2 += new TextDecoder().decode(value);
      return /missed\.example\.net/.test(text2) ? true : undefined;
    });
    assert.doesNotMatch(text2, /live\.example\.net/);
    resumed.abort();

    const usage = captureIo();
    assert.equal(await denialsCommand(['--server', url, '--limit', 'lots'], usage.io), 2);
    assert.match(usage.err.join(''), /--limit lots: must be a whole number/);
    const refused = captureIo();
    assert.equal(await denialsCommand(['--server', url, '--source', 'nope'], refused.io), 1);
    assert.match(refused.err.join(''), /400 source: must be an IP address/);
    const cli = captureIo();
    assert.equal(await denialsCommand(['--server', url, '--node', 'host-sse', '--limit', '1'], cli.io), 0);
    assert.match(cli.out.join(''), /^\S+ {2}host-sse {2}172\.31\.0\.5:40000 → 93\.184\.216\.34:443 \(missed\.example\.net\) {2}denied no-policy rev=\d+\n$/);
    const json = captureIo();
    assert.equal(await denialsCommand(['--server', url, '--node', 'host-sse', '--json'], json.io), 0);
    assert.equal(JSON.parse(json.out[0]!).serverName, 'live.example.net');

    // --follow prints what arrives, until stopped.
    const follow = captureIo();
    const stop = new AbortController();
    const running = denialsCommand(['--server', url, '--node', 'host-follow', '--follow', '--json'], follow.io, stop.signal);
    await until('the follower', () => (cp.denials.followerCount() > 0 ? true : undefined));
    const later = openAlsStream(target, 'host-follow');
    later.sendTcp([denied({ sni: 'followed.example.net' })]);
    await until('the followed record', () => (follow.out.some((l) => l.includes('followed.example.net')) ? true : undefined));
    stop.abort();
    assert.equal(await running, 0);
    await later.finish();
  });

  test('policy suggest drafts a policy with a wildcard for many subdomains, and says what it adds', async () => {
    const stream = openAlsStream(target, 'host-learn');
    const names = ['a.pkg.dev', 'b.pkg.dev', 'c.pkg.dev', 'pypi.org', 'github.com'];
    stream.sendTcp(names.map((sni, i) => denied({ source: '172.31.9.9:5000' + i, sni })));
    stream.sendTcp([denied({ source: '172.31.9.9:6000', destination: '169.254.169.254:80', sni: undefined, tags: { ...denied().tags, [TAG.reason]: 'forbidden-address' } })]);
    await stream.finish();
    const { body } = await get('/v1/denials/suggest?node=host-learn&source=172.31.9.9');
    assert.deepEqual(body.policy.allow.sni, ['*.pkg.dev', 'github.com', 'pypi.org']);
    assert.deepEqual(body.policy.sources, ['172.31.9.9/32']);
    assert.deepEqual(body.leftOut, { 'forbidden-address': 1 });
    // github.com is in force already (the embedded default) for 172.31.0.0/16.
    assert.deepEqual(body.adds.sni, ['*.pkg.dev', 'pypi.org']);
    const github = body.effects.find((e: any) => e.connection.serverName === 'github.com');
    assert.equal(github.before.verdict, 'allow');
    const pypi = body.effects.find((e: any) => e.connection.serverName === 'pypi.org');
    assert.deepEqual([pypi.before.verdict, pypi.after.verdict], ['deny', 'allow']);
    // The draft is ready to apply as it is.
    const put = await fetch(`${url}/v1/policies/${body.name}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body.policy) });
    assert.equal(put.status, 200);
    // Commits reach the snapshot cache through the push scheduler's coalescing window.
    await cp.push.idle();
    const cli = captureIo();
    assert.equal(await policyCommand(['suggest', '--server', url, '--node', 'host-learn', '--source', '172.31.9.9'], cli.io), 0);
    const printed = cli.out.join('');
    assert.match(printed, /\*\.pkg\.dev/);
    assert.match(printed, /it adds: nothing new/);
  });

  test("today's listeners' entries (tags derived, SNI in tls_properties, forwarding chains classified here) give the same records", async () => {
    const stream = openAlsStream(target, 'host-derived');
    const upstream = (ip: string, cluster: string) => ({ upstream_remote_address: { socket_address: { address: ip, port_value: 443 } }, upstream_cluster: cluster });
    const tls = { sniVia: 'tls' as const, source: '172.31.7.5:40000', destination: '93.184.216.34:443' };
    stream.sendTcp([
      // reject: the reason, the chain; verdict and listener derived.
      { ...tls, sni: 'Blocked.Example.com', tags: { [TAG.reason]: 'no-policy', [TAG.chain]: 'reject' } },
      // A name chain's one logger: the per-source cap closed it (no upstream host, no flag).
      { ...tls, sni: 'github.com', tags: { [TAG.chain]: 'name|172.31.7.0/24' }, extra: { upstream_cluster: '', response_flags: {} } },
      // The host refused the name's address: UF of the name cluster to the metadata service.
      { ...tls, sni: 'evil.example.com', tags: { [TAG.chain]: 'name|172.31.7.0/24' }, extra: { ...upstream('169.254.169.254', 'dynamic_forward_proxy_cluster'), response_flags: { upstream_connection_failure: true } } },
      // Failures that are not refusals are not recorded: DNS failed; a public upstream refused; an address rule's own upstream.
      { ...tls, sni: 'nxdomain.example.com', tags: { [TAG.chain]: 'name|172.31.7.0/24' }, extra: { upstream_cluster: '', response_flags: { dns_resolution_failure: true } } },
      { ...tls, sni: 'down.example.com', tags: { [TAG.chain]: 'name|172.31.7.0/24' }, extra: { ...upstream('8.8.8.8', 'dynamic_forward_proxy_cluster'), response_flags: { upstream_connection_failure: true } } },
      { ...tls, sni: undefined, tags: { [TAG.chain]: 'original_dst|172.31.7.0/24' }, extra: { ...upstream('10.9.0.1', 'original_dst_cluster'), response_flags: { upstream_connection_failure: true } } },
      // "log": "all": allowed, with the policy, unless it was a refusal.
      { ...tls, sni: 'ok.example.com', tags: { [TAG.verdict]: 'allowed', [TAG.chain]: 'name|172.31.8.0/24', [TAG.policy]: 'logged' }, extra: { ...upstream('93.184.216.34', 'dynamic_forward_proxy_cluster'), response_flags: {} } },
      { ...tls, sni: 'capped.example.com', tags: { [TAG.verdict]: 'allowed', [TAG.chain]: 'name|172.31.8.0/24', [TAG.policy]: 'logged' }, extra: { upstream_cluster: '', response_flags: {} } },
    ]);
    stream.sendHttp([{ source: '172.31.7.5:40002', destination: '93.184.216.34:80', host: 'plain.example.org', path: '/x', tags: { [TAG.reason]: 'http-host', [TAG.chain]: 'http|172.31.7.0/24' } }]);
    assert.equal(await stream.finish(), null);
    const { body } = await get('/v1/denials?node=host-derived&limit=100&verdict=denied,would-deny,allowed');
    const records = (body.denials as any[]).map((d) => [d.serverName ?? null, d.verdict, d.reason ?? null, d.listener, d.chain, d.policy ?? null, d.revision === String(cp.store.revision)]).sort((a, b) => String(a[0]).localeCompare(String(b[0])));
    assert.deepEqual(records, [
      ['blocked.example.com', 'denied', 'no-policy', 'egress_tproxy', 'reject', null, true],
      ['capped.example.com', 'denied', 'per-source-limit', 'egress_tproxy', 'name|172.31.8.0/24', null, true],
      ['evil.example.com', 'denied', 'forbidden-address', 'egress_tproxy', 'name|172.31.7.0/24', null, true],
      ['github.com', 'denied', 'per-source-limit', 'egress_tproxy', 'name|172.31.7.0/24', null, true],
      ['ok.example.com', 'allowed', null, 'egress_tproxy', 'name|172.31.8.0/24', 'logged', true],
      ['plain.example.org', 'denied', 'http-host', 'egress_tproxy', 'http|172.31.7.0/24', null, true],
    ]);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /egress_xds_als_records_total\{type="not-a-denial"\} 3/);
  });

  test('bad input ends the stream with INVALID_ARGUMENT naming the problem, and stores nothing', async () => {
    const cases: { name: string; send: (s: ReturnType<typeof openAlsStream>) => void; error: RegExp }[] = [
      { name: 'garbage bytes', send: (s) => s.sendRaw(Buffer.from([0xff, 0xff, 0xff])), error: /not a valid StreamAccessLogsMessage/ },
      { name: 'an unknown field', send: (s) => s.sendRaw(Buffer.from([0xa8, 0x06, 0x01])), error: /unknown field/ },
      { name: 'no identifier first', send: (s) => s.sendRaw({ tcp_logs: { log_entry: [{ common_properties: {} }] } }), error: /first StreamAccessLogsMessage/ },
      { name: 'no entries (PGV min_items)', send: (s) => s.sendRaw({ identifier: { node: { id: 'bad-node' }, log_name: 'egress-xds' }, tcp_logs: { log_entry: [] } }), error: /log_entries|logEntry|min_items|oneof/ },
      { name: 'another log name', send: (s) => s.sendRaw({ identifier: { node: { id: 'bad-node' }, log_name: 'other' }, tcp_logs: { log_entry: [{}] } }), error: /log_name/ },
      { name: 'an unknown egress tag', send: (s) => s.sendTcp([denied({ tags: { ...denied().tags, 'egress.bogus': 'x' } })]), error: /unknown tag "egress\.bogus"/ },
      { name: 'a bad verdict', send: (s) => s.sendTcp([denied({ tags: { ...denied().tags, [TAG.verdict]: 'maybe' } })]), error: /egress\.verdict/ },
      { name: 'a bad reason', send: (s) => s.sendTcp([denied({ tags: { ...denied().tags, [TAG.reason]: 'because' } })]), error: /unknown reason "because"/ },
      { name: 'an HTTP entry with neither verdict nor reason', send: (s) => s.sendHttp([{ source: '172.31.0.5:40002', destination: '93.184.216.34:80', host: 'x.example.org', tags: { [TAG.chain]: 'http|*' } }]), error: /"egress\.verdict" or "egress\.reason" is required/ },
      { name: 'an empty listener tag', send: (s) => s.sendTcp([{ ...denied(), tags: { ...denied().tags, [TAG.listener]: '' } }]), error: /egress\.listener/ },
      { name: 'a good entry beside a bad one', send: (s) => s.sendTcp([denied(), denied({ tags: { ...denied().tags, [TAG.reason]: 'because' } })]), error: /log_entry\[1\]/ },
    ];
    const before = cp.denials.buffer.size();
    // A message past 256 KiB (Envoy flushes at 16 KiB) is refused before decoding.
    const huge = openAlsStream(target, 'bad-node');
    huge.sendTcp(Array.from({ length: 3000 }, (_, i) => denied({ sni: `n${i}.a-rather-long-name-to-fill-the-message.example.com` })));
    const tooLarge = await huge.done;
    huge.close();
    assert.equal(tooLarge?.code, 8, `RESOURCE_EXHAUSTED, got ${tooLarge?.code} ${tooLarge?.details}`);
    assert.match(tooLarge!.details, /larger than 262144/);
    for (const c of cases) {
      const stream = openAlsStream(target, 'bad-node');
      c.send(stream);
      const error = await stream.done;
      assert.ok(error, `${c.name}: the stream must fail`);
      assert.equal(error.code, 3, `${c.name}: INVALID_ARGUMENT, got ${error.code} ${error.details}`);
      assert.match(error.details, c.error, c.name);
      stream.close();
    }
    assert.equal(cp.denials.buffer.size(), before);
    assert.equal((await get('/v1/denials?node=bad-node')).body.denials.length, 0);
    // Bad queries name the parameter.
    for (const [query, field] of [['limit=0', 'limit'], ['since=yesterday', 'since'], ['source=nope', 'source'], ['color=red', 'color'], ['follow=2', 'follow']]) {
      const r = await get(`/v1/denials?${query}`);
      assert.equal(r.status, 400, query);
      assert.equal(r.body.error.field, field, query);
    }
    assert.equal((await get('/v1/denials/suggest?node=x')).body.error.field, 'source');
  });
});
