import { test } from 'node:test';
import assert from 'node:assert/strict';
import protobuf from 'protobufjs';
import { decodeStrict, decodeStrictLeavingAny, decodeStrictToJson, encodeProtoJson } from '../../src/envoy/codec.js';
import { envoyType } from '../../src/envoy/protos.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';

const listener = {
  name: 'l',
  address: { socketAddress: { address: '0.0.0.0', portValue: 15001 } },
  filterChains: [{ filters: [{ name: 'envoy.filters.network.tcp_proxy', typedConfig: { '@type': TypeUrl.TcpProxy, statPrefix: 's', cluster: 'c' } }] }],
};

/** Appends a field (number 999, varint) that no Envoy message defines. */
const withUnknownField = (bytes: Uint8Array): Uint8Array => {
  const extra = protobuf.Writer.create().uint32((999 << 3) | 0).uint32(7).finish();
  return Uint8Array.from([...bytes, ...extra]);
};

test('encode then strict decode round-trips, Any expanded', () => {
  const json = decodeStrictToJson(TypeUrl.Listener, encodeProtoJson(TypeUrl.Listener, listener));
  assert.deepEqual(json, listener);
});

test('encoding refuses a field Envoy does not have, also inside an Any', () => {
  assert.throws(() => encodeProtoJson(TypeUrl.Listener, { ...listener, colour: 'red' }), /unknown field: "colour"/);
  const badInner = structuredClone(listener);
  (badInner.filterChains[0]!.filters[0]!.typedConfig as Record<string, unknown>).colour = 'red';
  assert.throws(() => encodeProtoJson(TypeUrl.Listener, badInner), /TcpProxy: unknown field/);
});

test('strict decoding fails on an unknown field at the top, nested, and inside an Any', () => {
  const good = encodeProtoJson(TypeUrl.Listener, listener);
  assert.throws(() => decodeStrict(TypeUrl.Listener, withUnknownField(good)), /unknown field/);

  const Listener = envoyType('envoy.config.listener.v3.Listener');
  const message = Listener.decode(good) as unknown as { filterChains: { filters: { typedConfig: { type_url: string; value: Uint8Array } }[] }[] };
  const any = message.filterChains[0]!.filters[0]!.typedConfig;
  any.value = withUnknownField(any.value);
  assert.throws(() => decodeStrict(TypeUrl.Listener, Listener.encode(message as unknown as protobuf.Message).finish()), /<envoy\.extensions\.filters\.network\.tcp_proxy\.v3\.TcpProxy>: 1 unknown field/);
});

test('decodeStrictLeavingAny checks every field but the values of Anys (their callers decode those strictly)', () => {
  const good = encodeProtoJson(TypeUrl.Listener, listener);
  decodeStrictLeavingAny(TypeUrl.Listener, good);
  assert.throws(() => decodeStrictLeavingAny(TypeUrl.Listener, withUnknownField(good)), /unknown field/);
  const Listener = envoyType('envoy.config.listener.v3.Listener');
  const message = Listener.decode(good) as unknown as { filterChains: { filters: { typedConfig: { type_url: string; value: Uint8Array } }[] }[] };
  const any = message.filterChains[0]!.filters[0]!.typedConfig;
  any.value = withUnknownField(any.value);
  const badInside = Listener.encode(message as unknown as protobuf.Message).finish();
  assert.doesNotThrow(() => decodeStrictLeavingAny(TypeUrl.Listener, badInside));
  assert.throws(() => decodeStrict(TypeUrl.Listener, badInside), /unknown field/);
  // Without its type URL an Any is refused all the same.
  any.type_url = '';
  assert.throws(() => decodeStrictLeavingAny(TypeUrl.Listener, Listener.encode(message as unknown as protobuf.Message).finish()), /Any without a type URL/);
});
