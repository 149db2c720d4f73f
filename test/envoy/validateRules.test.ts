// The PGV validator: real Envoy resources pass; each rule kind, met in Envoy's own
// protos, fails with the path of the field; a proto written here covers the rules
// Envoy's closure does not use yet; and every rule in the loaded closure is supported.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import protobuf from 'protobufjs';
import { compileEgress } from '../../src/compile/compileEgress.js';
import { dnsCacheConfig, nameUpstreamCluster } from '../../src/compile/nameUpstream.js';
import { envoyRoot } from '../../src/envoy/protos.js';
import { TYPE_PREFIX, TypeUrl } from '../../src/envoy/typeUrls.js';
import {
  assertValid, RuleViolationError, SUPPORTED_RULES, validateMessage, validateResource, type RuleViolation,
} from '../../src/envoy/validateRules.js';

type Json = Record<string, unknown>;
const url = (name: string): string => `${TYPE_PREFIX}${name}`;
const brief = (vs: RuleViolation[]): [string, string][] => vs.map((v) => [v.path, v.rule]);

const listener = (): Json => ({
  name: 'l',
  address: { socketAddress: { address: '0.0.0.0', portValue: 15001 } },
  filterChains: [{
    filterChainMatch: { destinationPort: 443 },
    filters: [{ name: 'envoy.filters.network.tcp_proxy', typedConfig: { '@type': TypeUrl.TcpProxy, statPrefix: 's', cluster: 'c' } }],
  }],
});

const routeConfig = (vhost: Json): Json => ({ name: 'r', virtualHosts: [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'c' } }], ...vhost }] });
const RouteConfiguration = url('envoy.config.route.v3.RouteConfiguration');

describe('validateRules: resources Envoy accepts pass', () => {
  it('passes the compiled seed listener and clusters, and the name-upstream cluster', () => {
    const { listeners, clusters } = compileEgress([{ name: 'github', sources: ['172.31.0.0/16'], allow: { sni: ['github.com', '*.github.com'], cidrs: [{ cidr: '10.0.0.0/8', ports: [22] }] } }]);
    for (const l of listeners) assert.deepEqual(validateResource(TypeUrl.Listener, l as unknown as Json), []);
    for (const c of clusters) assert.deepEqual(validateResource(TypeUrl.Cluster, c as unknown as Json), []);
    assert.deepEqual(validateResource(TypeUrl.Cluster, nameUpstreamCluster() as unknown as Json), []);
    for (const options of [{}, { resolvers: ['10.0.0.2', '[2001:db8::53]:5353'] }]) {
      assert.deepEqual(validateResource(TypeUrl.DynamicForwardProxyCluster, { dnsCacheConfig: dnsCacheConfig(options) }), []);
    }
  });

  it('passes a route configuration, and takes wire bytes as well as ProtoJSON', () => {
    assert.deepEqual(validateResource(RouteConfiguration, routeConfig({})), []);
    const Listener = envoyRoot().lookupType('envoy.config.listener.v3.Listener');
    const bytes = Listener.encode(Listener.fromObject({ name: 'x', address: { socketAddress: { address: '::', portValue: 1 } } })).finish();
    assert.deepEqual(validateResource(TypeUrl.Listener, bytes), []);
  });
});

describe('validateRules: each rule kind, in Envoy\'s protos, fails naming the field', () => {
  const L = 'envoy.config.listener.v3.Listener';
  const expect = (typeUrl: string, json: Json, expected: [string, string][]): void => {
    assert.deepEqual(brief(validateResource(typeUrl, json)), expected);
  };

  it('string.min_len (SocketAddress.address) and oneof.required (SocketAddress.port_specifier)', () => {
    const l = listener();
    l.address = { socketAddress: { address: '' } };
    expect(TypeUrl.Listener, l, [
      [`${L}.address.socketAddress.portSpecifier`, 'oneof.required'],
      [`${L}.address.socketAddress.address`, 'string.min_len'],
    ]);
  });

  it('uint32.gte / uint32.lte inside a wrapper (FilterChainMatch.destination_port)', () => {
    for (const [port, rule] of [[0, 'uint32.gte'], [65536, 'uint32.lte']] as const) {
      const l = listener();
      ((l.filterChains as Json[])[0]!.filterChainMatch as Json).destinationPort = port;
      expect(TypeUrl.Listener, l, [[`${L}.filterChains[0].filterChainMatch.destinationPort`, rule]]);
    }
  });

  it('walks into Any: string.min_len of TcpProxy.stat_prefix inside a filter\'s typed_config', () => {
    const l = listener();
    (((l.filterChains as Json[])[0]!.filters as Json[])[0]!.typedConfig as Json).statPrefix = '';
    const violations = validateResource(TypeUrl.Listener, l);
    assert.deepEqual(brief(violations), [[`${L}.filterChains[0].filters[0].typedConfig<envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy>.statPrefix`, 'string.min_len']]);
    assert.throws(() => assertValid(TypeUrl.Listener, l), (e: unknown) =>
      e instanceof RuleViolationError && e.violations.length === 1 && /typedConfig<.*TcpProxy>\.statPrefix: must be at least 1 character/.test(e.message));
  });

  it('duration.gt, and Envoy\'s own check that no duration is negative (Cluster.connect_timeout)', () => {
    const cluster = (connectTimeout: string): Json => ({ name: 'c', type: 'STATIC', connectTimeout });
    const C = 'envoy.config.cluster.v3.Cluster';
    expect(TypeUrl.Cluster, cluster('0s'), [[`${C}.connectTimeout`, 'duration.gt']]);
    expect(TypeUrl.Cluster, cluster('-1s'), [[`${C}.connectTimeout`, 'duration.gt'], [`${C}.connectTimeout`, 'envoy.duration']]);
    expect(TypeUrl.Cluster, cluster('0.000000001s'), []);
  });

  it('enum.defined_only (SocketAddress.protocol)', () => {
    const l = listener();
    l.address = { socketAddress: { address: '0.0.0.0', portValue: 1, protocol: 7 } };
    expect(TypeUrl.Listener, l, [[`${L}.address.socketAddress.protocol`, 'enum.defined_only']]);
  });

  const R = 'envoy.config.route.v3.RouteConfiguration.virtualHosts[0]';
  it('message.required (Route.match) and oneof.required (Route.action)', () => {
    expect(RouteConfiguration, routeConfig({ routes: [{ route: { cluster: 'c' } }, { match: { prefix: '/' } }] }), [
      [`${R}.routes[0].match`, 'message.required'],
      [`${R}.routes[1].action`, 'oneof.required'],
    ]);
  });

  it('repeated.min_items and the items\' well_known_regex (VirtualHost.domains)', () => {
    expect(RouteConfiguration, routeConfig({ domains: [] }), [[`${R}.domains`, 'repeated.min_items']]);
    expect(RouteConfiguration, routeConfig({ domains: ['ok.example', 'bad\nexample'] }), [[`${R}.domains[1]`, 'string.well_known_regex']]);
  });

  it('string.pattern (RouteMatch.path_separated_prefix) and string.in (SchemeHeaderTransformation)', () => {
    expect(RouteConfiguration, routeConfig({ routes: [{ match: { pathSeparatedPrefix: '/api/' }, route: { cluster: 'c' } }] }), [[`${R}.routes[0].match.pathSeparatedPrefix`, 'string.pattern']]);
    expect(RouteConfiguration, routeConfig({ routes: [{ match: { pathSeparatedPrefix: '/api' }, route: { cluster: 'c' } }] }), []);
    const S = url('envoy.config.core.v3.SchemeHeaderTransformation');
    expect(S, { schemeToOverwrite: 'ftp' }, [['envoy.config.core.v3.SchemeHeaderTransformation.schemeToOverwrite', 'string.in']]);
    expect(S, { schemeToOverwrite: 'https' }, []);
  });

  it('any.required (TypedExtensionConfig.typed_config)', () => {
    expect(url('envoy.config.core.v3.TypedExtensionConfig'), { name: 'x' }, [['envoy.config.core.v3.TypedExtensionConfig.typedConfig', 'any.required']]);
  });

  it('repeated.unique and the items\' double.gt (HistogramBucketSettings.buckets)', () => {
    const H = url('envoy.config.metrics.v3.HistogramBucketSettings');
    const match = { prefix: 'x' };
    expect(H, { match, buckets: [1, 2, 1] }, [['envoy.config.metrics.v3.HistogramBucketSettings.buckets[2]', 'repeated.unique']]);
    expect(H, { match, buckets: [0.5, 0] }, [['envoy.config.metrics.v3.HistogramBucketSettings.buckets[1]', 'double.gt']]);
  });

  it('bool.const (ListenerFilterChainMatchPredicate.any_match)', () => {
    expect(url('envoy.config.listener.v3.ListenerFilterChainMatchPredicate'), { anyMatch: false }, [['envoy.config.listener.v3.ListenerFilterChainMatchPredicate.anyMatch', 'bool.const']]);
  });

  it('map.min_pairs (xds MatchMap.map) and map keys (Metadata.filter_metadata)', () => {
    const M = url('xds.type.matcher.v3.Matcher');
    const input = { name: 'i', typedConfig: { '@type': url('envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector') } };
    expect(M, { matcherTree: { input, exactMatchMap: { map: {} } } }, [['xds.type.matcher.v3.Matcher.matcherTree.exactMatchMap.map', 'map.min_pairs']]);
    expect(url('envoy.config.core.v3.Metadata'), { filterMetadata: { '': {} } }, [['envoy.config.core.v3.Metadata.filterMetadata[]<key>', 'string.min_len']]);
  });

  it('ignore_empty: an empty value skips the rules, a bad one does not (UpstreamHttpProtocolOptions.override_auto_sni_header)', () => {
    const U = url('envoy.config.core.v3.UpstreamHttpProtocolOptions');
    expect(U, { overrideAutoSniHeader: '' }, []);
    expect(U, { overrideAutoSniHeader: 'x-sni' }, []);
    expect(U, { overrideAutoSniHeader: 'bad header' }, [['envoy.config.core.v3.UpstreamHttpProtocolOptions.overrideAutoSniHeader', 'string.well_known_regex']]);
  });
});

// A proto of this test's own (no third-party text), for the rules Envoy's closure does not use yet.
const testRoot = protobuf.parse(`
syntax = "proto3";
package t;
import "google/protobuf/duration.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
message Inner { string s = 1 [(validate.rules).string.min_len = 1]; }
message Off { option (validate.disabled) = true; string s = 1 [(validate.rules).string.min_len = 1]; }
message M {
  string prefix = 1 [(validate.rules).string = {prefix: "a", suffix: "z", contains: "m", not_contains: "q"}];
  string lens = 2 [(validate.rules).string = {min_len: 2, max_len: 3, max_bytes: 4}];
  string host = 3 [(validate.rules).string = {hostname: true, ignore_empty: true}];
  string ip = 4 [(validate.rules).string = {ip: true, ignore_empty: true}];
  string email = 5 [(validate.rules).string = {email: true, ignore_empty: true}];
  string uri = 6 [(validate.rules).string = {uri: true, ignore_empty: true}];
  string uuid = 7 [(validate.rules).string = {uuid: true, ignore_empty: true}];
  int64 big = 8 [(validate.rules).int64 = {gt: -2, lt: 9007199254740990}];
  int32 outside = 9 [(validate.rules).int32 = {gt: 10, lt: 5}];
  uint32 in = 10 [(validate.rules).uint32 = {in: [1, 2, 3], ignore_empty: true}];
  bytes b = 11 [(validate.rules).bytes = {ipv4: true, ignore_empty: true}];
  google.protobuf.Duration d = 12 [(validate.rules).duration = {in: [{seconds: 1}, {nanos: 500000000}]}];
  google.protobuf.Timestamp ts = 13 [(validate.rules).timestamp = {lt_now: true}];
  map<string, Inner> m = 14 [(validate.rules).map = {max_pairs: 1, keys: {string: {prefix: "k"}}}];
  Inner skipped = 15 [(validate.rules).message.skip = true];
  Inner walked = 16;
  Off off = 17;
  repeated int32 items = 18 [(validate.rules).repeated = {max_items: 2, items: {int32: {gte: 0}}}];
  google.protobuf.StringValue wrapped = 19 [(validate.rules).string.max_len = 1];
  optional string opt = 20 [(validate.rules).string.min_len = 5];
  sint32 pat = 21 [(validate.rules).sint32.gt = 0];
}
`, { keepCase: false }).root;
testRoot.resolvePath = (_o, target) => target;
// The imported well-known types come from protobufjs's bundled definitions.
for (const file of ['duration', 'timestamp', 'wrappers']) testRoot.addJSON(protobuf.common.get(`google/protobuf/${file}.proto`)!.nested!);
testRoot.resolveAll();
const M = testRoot.lookupType('t.M');
/** Encoded then decoded, so fields are present exactly as on the wire. */
const check = (object: Json): [string, string][] => brief(validateMessage(M, M.decode(M.encode(M.fromObject(object)).finish())));
const ok = { prefix: 'amz', lens: 'ab', d: { seconds: 1 }, pat: 1 };

describe('validateRules: the remaining rule kinds, on a proto of this test', () => {
  it('a message that keeps every rule passes (unset oneof members, empty values with ignore_empty)', () => {
    assert.deepEqual(check(ok), []);
  });

  it('string prefix/suffix/contains/not_contains, code points vs bytes', () => {
    assert.deepEqual(check({ ...ok, prefix: 'bqy' }), [['t.M.prefix', 'string.prefix'], ['t.M.prefix', 'string.suffix'], ['t.M.prefix', 'string.contains'], ['t.M.prefix', 'string.not_contains']]);
    assert.deepEqual(check({ ...ok, lens: 'ééé' }), [['t.M.lens', 'string.max_bytes']]); // 3 code points, 6 bytes
    assert.deepEqual(check({ ...ok, lens: 'abcd' }), [['t.M.lens', 'string.max_len']]);
  });

  it('well-known formats: hostname, ip, email, uri, uuid', () => {
    assert.deepEqual(check({ ...ok, host: 'a.example.com', ip: '2001:db8::1', email: 'me@example.com', uri: 'https://x/y', uuid: '123e4567-e89b-12d3-a456-426614174000' }), []);
    assert.deepEqual(check({ ...ok, host: '-a.example', ip: '1.2.3', email: 'nobody', uri: '/relative', uuid: 'nope' }),
      [['t.M.host', 'string.hostname'], ['t.M.ip', 'string.ip'], ['t.M.email', 'string.email'], ['t.M.uri', 'string.uri'], ['t.M.uuid', 'string.uuid']]);
  });

  it('64-bit integers are read whole, with their sign; a lower bound above the upper one means outside the range', () => {
    assert.deepEqual(check({ ...ok, big: '9007199254740989' }), []);
    assert.deepEqual(check({ ...ok, big: '-1' }), []);
    assert.deepEqual(check({ ...ok, big: '9223372036854775807' }), [['t.M.big', 'int64.lt']]);
    assert.deepEqual(check({ ...ok, big: '-9223372036854775808' }), [['t.M.big', 'int64.gt']]);
    assert.deepEqual(check({ ...ok, outside: 11 }), []);
    assert.deepEqual(check({ ...ok, outside: 4 }), []);
    assert.deepEqual(check({ ...ok, outside: 7 }), [['t.M.outside', 'int32.gt']]);
  });

  it('in (unless empty), bytes ipv4, sint32.gt, duration in, timestamp lt_now', () => {
    assert.deepEqual(check({ ...ok, in: 4, b: Buffer.from([1, 2, 3]), pat: 0, d: { seconds: 2 }, ts: { seconds: Math.floor(Date.now() / 1000) + 3600 } }),
      [['t.M.in', 'uint32.in'], ['t.M.b', 'bytes.ipv4'], ['t.M.d', 'duration.in'], ['t.M.ts', 'timestamp.lt_now'], ['t.M.pat', 'sint32.gt']]);
    assert.deepEqual(check({ ...ok, in: 2, b: Buffer.from([10, 0, 0, 1]), d: { nanos: 500000000 }, ts: { seconds: 1 } }), []);
  });

  it('maps: pairs, key rules, values walked; messages walked unless skip or disabled; repeated items; wrappers; proto3 optional', () => {
    assert.deepEqual(check({ ...ok, m: { kA: { s: 'x' }, b: { s: '' } } }), [['t.M.m', 'map.max_pairs'], ['t.M.m[b]<key>', 'string.prefix'], ['t.M.m[b].s', 'string.min_len']]);
    assert.deepEqual(check({ ...ok, skipped: { s: '' }, off: { s: '' } }), []);
    assert.deepEqual(check({ ...ok, walked: { s: '' } }), [['t.M.walked.s', 'string.min_len']]);
    assert.deepEqual(check({ ...ok, items: [0, -1, 2] }), [['t.M.items', 'repeated.max_items'], ['t.M.items[1]', 'int32.gte']]);
    assert.deepEqual(check({ ...ok, wrapped: { value: 'ab' } }), [['t.M.wrapped', 'string.max_len']]);
    assert.deepEqual(check({ ...ok, opt: 'abc' }), [['t.M.opt', 'string.min_len']]);
  });
});

describe('validateRules: coverage of Envoy\'s protos', () => {
  it('supports every (validate.rules) that the loaded Envoy protos use', () => {
    const unsupported = new Set<string>();
    const visit = (kind: string, rules: Json, where: string): void => {
      const kindName = ['float', 'double', 'int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'fixed32', 'fixed64', 'sfixed32', 'sfixed64'].includes(kind) ? 'numeric' : kind;
      const known = SUPPORTED_RULES[kindName];
      if (!known) { unsupported.add(`${where}: ${kind}`); return; }
      for (const [name, value] of Object.entries(rules)) {
        if (!known.includes(name)) unsupported.add(`${where}: ${kind}.${name}`);
        if ((name === 'items' || name === 'keys' || name === 'values') && value && typeof value === 'object') {
          for (const [k, r] of Object.entries(value as Json)) visit(k, r as Json, where);
        }
      }
    };
    let fields = 0;
    const walk = (ns: protobuf.NamespaceBase): void => {
      for (const n of ns.nestedArray) {
        if (n instanceof protobuf.Type) {
          for (const f of n.fieldsArray) {
            for (const entry of (f.parsedOptions ?? []) as Json[]) {
              const rules = entry['(validate.rules)'] as Json | undefined;
              if (!rules) continue;
              fields += 1;
              for (const [kind, r] of Object.entries(rules)) visit(kind, r as Json, `${n.fullName}.${f.name}`);
            }
          }
        }
        if (n instanceof protobuf.Namespace || n instanceof protobuf.Type) walk(n);
      }
    };
    walk(envoyRoot());
    assert.ok(fields > 300, `only ${fields} fields with rules: is the closure loaded?`);
    assert.deepEqual([...unsupported], []);
  });
});
