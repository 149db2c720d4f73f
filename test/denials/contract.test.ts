// The contract of src/denials/record.ts, checked from both ends: every gRPC
// access logger the compiler puts in a listener (enforce, audit, "log": "all",
// per-source caps) carries what the Access Log Service needs, and an entry with
// its tags, as Envoy would send it, is accepted and decoded to the verdict the
// tags say. A tag the compiler starts emitting that the decoder does not know
// fails here, not in production.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeAccessLogsMessage } from '../../src/als/decode.js';
import { compileEgress } from '../../src/compile/index.js';
import { encodeProtoJson } from '../../src/envoy/codec.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { ALS_LOG_NAME, SNI_FILTER_STATE_KEY, TAG } from '../../src/denials/record.js';
import type { Policy } from '../../src/policy/model.js';

interface Logger {
  type: string;
  common: { logName: string; filterStateObjectsToLog?: string[]; customTags: { tag: string; literal?: { value: string } }[] };
}

function loggersIn(value: unknown, out: Logger[] = []): Logger[] {
  if (Array.isArray(value)) value.forEach((v) => loggersIn(v, out));
  else if (value && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const type = record['@type'];
    if (type === TypeUrl.TcpGrpcAccessLogConfig || type === TypeUrl.HttpGrpcAccessLogConfig) out.push({ type: type as string, common: record.commonConfig as Logger['common'] });
    for (const inner of Object.values(record)) loggersIn(inner, out);
  }
  return out;
}

const POLICIES: Policy[] = [
  { name: 'enforced', sources: ['172.31.0.0/24'], allow: { sni: ['github.com'], cidrs: [{ cidr: '10.9.0.0/16', ports: [443] }] } },
  { name: 'audited', sources: ['172.31.1.0/24'], mode: 'audit', allow: { sni: ['pypi.org'] } },
  { name: 'logged', sources: ['172.31.2.0/24'], log: 'all', allow: { sni: ['*.example.com'] } } as Policy,
];

test('every generated access logger is accepted by the ALS decoder, with the verdict its tags say', () => {
  const compiled = compileEgress(POLICIES);
  const loggers = loggersIn(compiled.listeners);
  assert.ok(loggers.length >= 3, `access loggers found: ${loggers.length}`);
  const verdicts = new Set<string>();
  for (const logger of loggers) {
    assert.equal(logger.common.logName, ALS_LOG_NAME);
    const tags: Record<string, string> = {};
    for (const tag of logger.common.customTags) {
      assert.ok(tag.literal, `${tag.tag} is a literal tag`);
      tags[tag.tag] = tag.literal.value;
    }
    const http = logger.type === TypeUrl.HttpGrpcAccessLogConfig;
    if (!http) assert.ok(logger.common.filterStateObjectsToLog?.includes(SNI_FILTER_STATE_KEY), 'the SNI filter state is logged');
    const common = {
      downstreamRemoteAddress: { socketAddress: { address: '172.31.1.9', portValue: 40000 } },
      downstreamLocalAddress: { socketAddress: { address: '93.184.216.34', portValue: http ? 80 : 443 } },
      startTime: '2026-12-01T10:00:00.123Z',
      customTags: tags,
    };
    const entries = http
      ? { httpLogs: { logEntry: [{ commonProperties: common, request: { authority: 'x.example.net', path: '/' }, response: { responseCode: 403 } }] } }
      : { tcpLogs: { logEntry: [{ commonProperties: common }] } };
    const bytes = encodeProtoJson(TypeUrl.StreamAccessLogsMessage, { identifier: { node: { id: 'n1' }, logName: ALS_LOG_NAME }, ...entries });
    const decoded = decodeAccessLogsMessage(bytes, { first: true });
    const [record] = decoded.records;
    assert.equal(record!.verdict, tags[TAG.verdict]);
    assert.equal(record!.reason, tags[TAG.reason]);
    assert.equal(record!.listener, tags[TAG.listener]);
    assert.equal(record!.time, '2026-12-01T10:00:00.123Z');
    verdicts.add(record!.verdict);
  }
  // Enforce refusals, audit would-deny and "log": "all" allowed entries are all generated.
  assert.deepEqual([...verdicts].sort(), ['allowed', 'denied', 'would-deny']);
});

test('the forward listeners: every logger decodes to its tags, listener forward_http / forward_tls, the CONNECT target as destination or name', () => {
  const compiled = compileEgress(POLICIES, { forwardProxy: {}, transparent: false });
  const seen = new Set<string>();
  for (const listener of compiled.listeners) {
    const loggers = loggersIn(listener);
    assert.ok(loggers.length >= 3, `${listener.name}: access loggers found: ${loggers.length}`);
    for (const logger of loggers) {
      assert.equal(logger.common.logName, ALS_LOG_NAME);
      const tags = Object.fromEntries(logger.common.customTags.map((t) => [t.tag, t.literal!.value]));
      assert.equal(tags[TAG.listener], listener.name);
      const http = logger.type === TypeUrl.HttpGrpcAccessLogConfig;
      assert.equal(http, listener.name === 'forward_http', 'HTTP loggers exactly on forward_http');
      const common = {
        downstreamRemoteAddress: { socketAddress: { address: '172.31.1.9', portValue: 40000 } },
        downstreamLocalAddress: { socketAddress: { address: '10.0.0.1', portValue: http ? 10000 : 10001 } },
        startTime: '2026-12-01T10:00:00.123Z',
        customTags: tags,
      };
      const cases = http
        ? [
            { authority: 'pypi.org:8443', method: 6, serverName: 'pypi.org', destination: '10.0.0.1:10000' },
            { authority: '10.9.1.2:22', method: 6, serverName: undefined, destination: '10.9.1.2:22' },
            { authority: '[2001:db8::1]', method: 1, serverName: undefined, destination: '[2001:db8::1]:80' },
          ]
        : [{ authority: undefined, method: 0, serverName: 'pypi.org', destination: '10.0.0.1:10001' }];
      for (const c of cases) {
        const entries = http
          ? { httpLogs: { logEntry: [{ commonProperties: common, request: { authority: c.authority, requestMethod: c.method }, response: { responseCode: 403 } }] } }
          : {
              tcpLogs: {
                logEntry: [
                  {
                    commonProperties: {
                      ...common,
                      filterStateObjects: { [SNI_FILTER_STATE_KEY]: { '@type': TypeUrl.StringValue, value: 'pypi.org' } },
                    },
                  },
                ],
              },
            };
        const bytes = encodeProtoJson(TypeUrl.StreamAccessLogsMessage, { identifier: { node: { id: 'n1' }, logName: ALS_LOG_NAME }, ...entries });
        const [record] = decodeAccessLogsMessage(bytes, { first: true }).records;
        assert.equal(record!.verdict, tags[TAG.verdict]);
        assert.equal(record!.reason, tags[TAG.reason]);
        assert.equal(record!.listener, listener.name);
        assert.equal(record!.serverName, c.serverName, JSON.stringify(c));
        assert.equal(record!.destination, c.destination, JSON.stringify(c));
        seen.add(`${listener.name}:${record!.verdict}:${record!.reason ?? ''}`);
      }
    }
  }
  // Refusals (no policy; loops on the HTTP side), audit would-deny and "log": "all" are all logged on both listeners.
  for (const expected of ['forward_http:denied:no-policy', 'forward_http:denied:loop', 'forward_http:would-deny:no-policy', 'forward_http:allowed:', 'forward_tls:denied:no-policy', 'forward_tls:would-deny:no-policy', 'forward_tls:allowed:']) {
    assert.ok(seen.has(expected), `${expected} in ${[...seen].join(' ')}`);
  }
});
