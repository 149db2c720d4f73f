// The contract of src/denials/record.ts, checked from both ends: every gRPC access logger
// the compiler puts in a listener (enforce, audit, "log": "all", per-source caps, forbidden
// addresses) is run on the connections that reach it, as Envoy would (its filter, then the
// entry Envoy builds: addresses, tls_properties.tls_sni_hostname, upstream host and cluster,
// response flags, the logger's tags), and the ALS decoder must turn what passes into the
// record users have always got from /v1/denials for that chain and outcome: verdict, reason,
// listener, chain, policy, source, destination, name. A tag the compiler starts emitting that
// the decoder does not know, or a tag it stops emitting that the decoder cannot derive, fails
// here, not in production.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeAccessLogsMessage } from '../../src/als/decode.js';
import { FORWARD_REFUSED_CEL } from '../../src/compile/accessLog.js';
import { compileEgress } from '../../src/compile/index.js';
import { NAME_UPSTREAM_CLUSTER, ORIGINAL_DST_CLUSTER } from '../../src/compile/names.js';
import { encodeProtoJson } from '../../src/envoy/codec.js';
import type { FilterChainJson } from '../../src/envoy/resources.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { ALS_LOG_NAME, SNI_FILTER_STATE_KEY, TAG } from '../../src/denials/record.js';
import type { Policy } from '../../src/policy/model.js';

interface Logger {
  type: string;
  filter?: { extensionFilter?: { typedConfig?: { expression?: string } } };
  common: { logName: string; filterStateObjectsToLog?: string[]; customTags?: { tag: string; literal?: { value: string } }[] };
}

function loggersIn(value: unknown, out: Logger[] = []): Logger[] {
  if (Array.isArray(value)) value.forEach((v) => loggersIn(v, out));
  else if (value && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const typed = record.typedConfig as Record<string, unknown> | undefined;
    const type = typed?.['@type'];
    if (type === TypeUrl.TcpGrpcAccessLogConfig || type === TypeUrl.HttpGrpcAccessLogConfig) {
      out.push({ type: type as string, filter: record.filter as Logger['filter'], common: typed!.commonConfig as Logger['common'] });
      return out;
    }
    for (const inner of Object.values(record)) loggersIn(inner, out);
  }
  return out;
}

const tagsOf = (logger: Logger): Record<string, string> => {
  const tags: Record<string, string> = {};
  for (const tag of logger.common.customTags ?? []) {
    assert.ok(tag.literal, `${tag.tag} is a literal tag`);
    tags[tag.tag] = tag.literal.value;
  }
  return tags;
};

const POLICIES: Policy[] = [
  { name: 'enforced', sources: ['172.31.0.0/24'], allow: { sni: ['github.com'], cidrs: [{ cidr: '10.9.0.0/16', ports: [443] }] } },
  { name: 'audited', sources: ['172.31.1.0/24'], mode: 'audit', allow: { sni: ['pypi.org'] } },
  { name: 'logged', sources: ['172.31.2.0/24'], log: 'all', allow: { sni: ['*.example.com'], cidrs: [{ cidr: '10.8.0.0/16', ports: [443] }] } } as Policy,
];

/** What happened to a TCP connection, as Envoy's entry says it. */
type Outcome = 'capped' | 'forbidden' | 'dns-failed' | 'refused-upstream' | 'forwarded';
const OUTCOMES: Outcome[] = ['capped', 'forbidden', 'dns-failed', 'refused-upstream', 'forwarded'];

/** The record users get (and got before loggers were trimmed) for a chain and an outcome; undefined: none. */
function expectedRecord(chain: string, outcome: Outcome, envoyCap = true): { verdict: string; reason?: string; policy?: string } | undefined {
  if (chain === 'reject') return { verdict: 'denied', reason: 'no-policy' };
  if (chain === 'reject_loop') return { verdict: 'denied', reason: 'loop' };
  if (chain.startsWith('would_deny|')) return { verdict: 'would-deny', reason: 'no-policy', policy: 'audited' };
  const [kind, source] = chain.split('|') as [string, string];
  assert.ok(kind === 'name' || kind === 'original_dst', chain);
  // Without connection_limit in the chain (cap 0), an entry without an upstream host and
  // without a flag is no refusal of Envoy's: the kernel's cap refused before Envoy saw it.
  if (outcome === 'capped' && envoyCap) return { verdict: 'denied', reason: 'per-source-limit' };
  // The host refuses only the name cluster's marked sockets to special addresses.
  if (outcome === 'forbidden' && kind === 'name') return { verdict: 'denied', reason: 'forbidden-address' };
  return source === '172.31.2.0/24' ? { verdict: 'allowed', policy: 'logged' } : undefined;
}

/** Envoy's common properties for a connection on `chain` with that outcome. */
function envoyCommon(chain: string, outcome: Outcome, tags: Record<string, string>): Record<string, unknown> {
  const cluster = chain.startsWith('name|') ? NAME_UPSTREAM_CLUSTER : ORIGINAL_DST_CLUSTER;
  const upstream = (ip: string) => ({ upstreamRemoteAddress: { socketAddress: { address: ip, portValue: 443 } }, upstreamCluster: cluster });
  const byOutcome: Record<Outcome, Record<string, unknown>> = {
    capped: {},
    forbidden: { ...upstream('169.254.169.254'), responseFlags: { upstreamConnectionFailure: true } },
    'dns-failed': { responseFlags: { dnsResolutionFailure: true } },
    'refused-upstream': { ...upstream('93.184.216.34'), responseFlags: { upstreamConnectionFailure: true } },
    forwarded: upstream('93.184.216.34'),
  };
  const fixed = chain.startsWith('reject') || chain.startsWith('would_deny') ? {} : byOutcome[outcome];
  return {
    downstreamRemoteAddress: { socketAddress: { address: '172.31.1.9', portValue: 40000 } },
    downstreamLocalAddress: { socketAddress: { address: '93.184.216.34', portValue: 443 } },
    startTime: '2026-12-01T10:00:00.123Z',
    tlsProperties: { tlsSniHostname: 'Pypi.org' },
    ...fixed,
    customTags: tags,
  };
}

/** The filters the generated TCP loggers use, as Envoy evaluates them on that entry. */
function passes(logger: Logger, common: Record<string, unknown>): boolean {
  if (!logger.filter) return true;
  const expression = logger.filter.extensionFilter?.typedConfig?.expression;
  assert.equal(expression, FORWARD_REFUSED_CEL, 'a TCP logger filter outside the model');
  return common.upstreamRemoteAddress === undefined || common.responseFlags !== undefined;
}

const chainLoggers = (chain: FilterChainJson): Logger[] => loggersIn(chain.filters);

for (const cap of [512, 0]) test(`every logger of the transparent listener gives the records users got before, for every outcome of its connections (--max-connections-per-source ${cap})`, () => {
  const listener = compileEgress(POLICIES, { maxConnectionsPerSource: cap }).listeners[0]!;
  const seen = new Set<string>();
  const chains = new Set<string>();
  for (const chain of listener.filterChains) {
    chains.add(chain.name!);
    if (chain.name!.startsWith('http|')) continue; // the next test
    const loggers = chainLoggers(chain);
    assert.ok(loggers.length === 1, `${chain.name}: one logger (got ${loggers.length})`);
    const logger = loggers[0]!;
    assert.equal(logger.common.logName, ALS_LOG_NAME);
    assert.equal(logger.common.filterStateObjectsToLog, undefined);
    for (const outcome of OUTCOMES) {
      const common = envoyCommon(chain.name!, outcome, tagsOf(logger));
      const expected = expectedRecord(chain.name!, outcome, cap > 0);
      const sent = passes(logger, common);
      const decoded = sent
        ? decodeAccessLogsMessage(encodeProtoJson(TypeUrl.StreamAccessLogsMessage, { identifier: { node: { id: 'n1' }, logName: ALS_LOG_NAME }, tcpLogs: { logEntry: [{ commonProperties: common }] } }), { first: true }).records
        : [];
      const at = `${chain.name} ${outcome}`;
      if (!expected) {
        assert.equal(decoded.length, 0, `${at}: no record`);
        continue;
      }
      assert.equal(decoded.length, 1, `${at}: one record`);
      const record = decoded[0]!;
      assert.deepEqual(
        { verdict: record.verdict, reason: record.reason, policy: record.policy },
        { verdict: expected.verdict, reason: expected.reason, policy: expected.policy },
        at,
      );
      assert.equal(record.listener, 'egress_tproxy', at);
      assert.equal(record.chain, chain.name, at);
      assert.equal(record.serverName, 'pypi.org', at);
      assert.equal(record.source, '172.31.1.9:40000', at);
      assert.equal(record.destination, '93.184.216.34:443', at);
      assert.equal(record.time, '2026-12-01T10:00:00.123Z', at);
      seen.add(`${record.verdict}:${record.reason ?? ''}`);
    }
  }
  for (const expected of ['denied:no-policy', 'denied:loop', 'would-deny:no-policy', 'denied:per-source-limit', 'denied:forbidden-address', 'allowed:']) {
    assert.equal(seen.has(expected), expected !== 'denied:per-source-limit' || cap > 0, `${expected} in ${[...seen].join(' ')}`);
  }
  // Cap 0: the shared chains, and the "log": "all" and audited sources' own.
  if (cap === 0) for (const name of ['name|*', 'original_dst|*', 'name|172.31.2.0/24', 'would_deny|172.31.1.0/24']) assert.ok(chains.has(name), `${name} in ${[...chains].join(' ')}`);
});

test('the HTTP chains: refusals, would-deny and "log": "all" decode to their records', () => {
  const listener = compileEgress(POLICIES).listeners[0]!;
  const verdicts = new Set<string>();
  for (const chain of listener.filterChains.filter((c) => c.name!.startsWith('http|'))) {
    for (const logger of chainLoggers(chain)) {
      assert.equal(logger.type, TypeUrl.HttpGrpcAccessLogConfig);
      const tags = tagsOf(logger);
      const common = {
        downstreamRemoteAddress: { socketAddress: { address: '172.31.1.9', portValue: 40000 } },
        downstreamLocalAddress: { socketAddress: { address: '93.184.216.34', portValue: 80 } },
        startTime: '2026-12-01T10:00:00.123Z',
        customTags: tags,
      };
      const bytes = encodeProtoJson(TypeUrl.StreamAccessLogsMessage, {
        identifier: { node: { id: 'n1' }, logName: ALS_LOG_NAME },
        httpLogs: { logEntry: [{ commonProperties: common, request: { authority: 'x.example.net', path: '/' }, response: { responseCode: 403 } }] },
      });
      const [record] = decodeAccessLogsMessage(bytes, { first: true }).records;
      const expected = tags[TAG.verdict] ?? 'denied';
      assert.equal(record!.verdict, expected, chain.name);
      assert.equal(record!.reason, expected === 'allowed' ? undefined : 'http-host', chain.name);
      assert.equal(record!.listener, 'egress_tproxy');
      assert.equal(record!.chain, chain.name);
      assert.equal(record!.serverName, 'x.example.net');
      verdicts.add(record!.verdict);
    }
  }
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
      const tags = tagsOf(logger);
      assert.equal(tags[TAG.listener], listener.name);
      // A forwarding chain's one logger (no verdict, no reason): its entries are classified; here the per-source cap.
      const classified = tags[TAG.verdict] === undefined && tags[TAG.reason] === undefined;
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
                      // Listeners of earlier versions logged the SNI in filter state: still read.
                      filterStateObjects: { [SNI_FILTER_STATE_KEY]: { '@type': TypeUrl.StringValue, value: 'pypi.org' } },
                      // Connected (a "log": "all" entry stays allowed), unless the logger is the classified one: then capped.
                      ...(classified ? {} : { upstreamRemoteAddress: { socketAddress: { address: '93.184.216.34', portValue: 443 } }, upstreamCluster: NAME_UPSTREAM_CLUSTER }),
                    },
                  },
                ],
              },
            };
        const bytes = encodeProtoJson(TypeUrl.StreamAccessLogsMessage, { identifier: { node: { id: 'n1' }, logName: ALS_LOG_NAME }, ...entries });
        const [record] = decodeAccessLogsMessage(bytes, { first: true }).records;
        assert.equal(record!.verdict, classified ? 'denied' : tags[TAG.verdict]);
        assert.equal(record!.reason, classified ? 'per-source-limit' : tags[TAG.reason]);
        assert.equal(record!.listener, listener.name);
        assert.equal(record!.serverName, c.serverName, JSON.stringify(c));
        assert.equal(record!.destination, c.destination, JSON.stringify(c));
        seen.add(`${listener.name}:${record!.verdict}:${record!.reason ?? ''}`);
      }
    }
  }
  // Refusals (no policy; loops on the HTTP side), audit would-deny and "log": "all" are all logged on both listeners.
  for (const expected of ['forward_http:denied:no-policy', 'forward_http:denied:loop', 'forward_http:would-deny:no-policy', 'forward_http:allowed:', 'forward_tls:denied:no-policy', 'forward_tls:would-deny:no-policy', 'forward_tls:allowed:', 'forward_tls:denied:per-source-limit']) {
    assert.ok(seen.has(expected), `${expected} in ${[...seen].join(' ')}`);
  }
});
