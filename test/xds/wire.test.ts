import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import { DiscoveryResponseSchema } from '../../src/gen/envoy/service/discovery/v3/discovery_pb.js';
import { egressGroupCompiler } from '../../src/snapshot/egressGroups.js';
import { encodeResource } from '../../src/snapshot/encodedResource.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { encodeSotwResponse, grpcFramed, sharedSotwResponse } from '../../src/xds/wire.js';

test('the hand-written SotW response is byte for byte what the reflective encoder writes, and decodes strictly', () => {
  // Two sources, so two route tables (and the "*" source's).
  const compiled = egressGroupCompiler()([
    { name: 'p', sources: ['10.0.0.0/8'], allow: { sni: ['a.example', 'b.example'] } },
    { name: 'q', sources: ['192.168.0.0/16'], allow: { sni: ['c.example'] } },
  ]);
  const snapshot = new Snapshot(compiled.resources.map((r) => encodeResource(r.typeUrl, r.name, r.json)), 0n);
  for (const typeUrl of [TypeUrl.Cluster, TypeUrl.Listener, TypeUrl.RouteConfiguration]) {
    const set = snapshot.resourceSet(typeUrl)!;
    const expected = (nonce: string, names?: ReadonlySet<string>) =>
      toBinary(
        DiscoveryResponseSchema,
        create(DiscoveryResponseSchema, {
          versionInfo: set.version,
          typeUrl,
          nonce,
          resources: [...set.items.values()].filter((r) => !names || names.has(r.name)).map((r) => create(AnySchema, { typeUrl: r.typeUrl, value: r.bytes })),
        }),
      );
    const prefix = (length: number) => {
      const header = Buffer.alloc(5);
      header.writeUInt32BE(length, 1);
      return header;
    };
    const whole = encodeSotwResponse(typeUrl, set, '7');
    assert.deepEqual(new Uint8Array(whole.bytes), expected('7'));
    // A stream's own response is framed where it is encoded: the message is a view into the framed buffer.
    assert.deepEqual(whole.framed, Buffer.concat([prefix(expected('7').length), expected('7')]));
    assert.equal(whole.bytes.buffer, whole.framed.buffer);
    assert.equal(whole.bytes.byteOffset, whole.framed.byteOffset + 5);
    // Only the names asked for (route tables are asked for by name), in the set's order.
    const some = new Set([[...set.items.keys()][0]!, 'not-in-the-set']);
    assert.deepEqual(new Uint8Array(encodeSotwResponse(typeUrl, set, '8', some).bytes), expected('8', some));
    const shared = sharedSotwResponse(typeUrl, set);
    assert.deepEqual(new Uint8Array(shared.bytes), expected(shared.nonce));
    // What goes on the HTTP/2 stream: gRPC's prefix (not compressed, the length, big-endian) and the same bytes.
    assert.equal(shared.framed[0], 0);
    assert.equal(shared.framed.readUInt32BE(1), shared.bytes.length);
    assert.deepEqual(new Uint8Array(shared.framed.subarray(5)), expected(shared.nonce));
    assert.equal(shared.bytes.buffer, shared.framed.buffer, 'the message is a view into the framed buffer, not a copy');
    assert.deepEqual(grpcFramed(expected('7')), Buffer.concat([prefix(expected('7').length), expected('7')]));
    const decoded = fromBinary(DiscoveryResponseSchema, shared.bytes);
    assert.equal(decoded.resources.length, set.items.size);
    assert.equal(decoded.versionInfo, set.version);
  }
});

test('the ACK fast path decodes every DiscoveryRequest exactly as the reflective decoder does (and fails where it fails)', async () => {
  const fc = (await import('fast-check')).default;
  const { BinaryWriter, WireType } = await import('@bufbuild/protobuf/wire');
  const { DiscoveryRequestSchema } = await import('../../src/gen/envoy/service/discovery/v3/discovery_pb.js');
  const { decodeDiscoveryRequest } = await import('../../src/xds/wire.js');
  const same = (bytes: Uint8Array) => {
    let expected: unknown;
    try {
      expected = fromBinary(DiscoveryRequestSchema, bytes);
    } catch {
      assert.throws(() => decodeDiscoveryRequest(bytes));
      return;
    }
    assert.deepStrictEqual(decodeDiscoveryRequest(bytes), expected);
  };
  // ACK-shaped: fields 1, 4, 5 in any order, repeated, any text.
  const ackField = fc.tuple(fc.constantFrom(1, 4, 5), fc.string({ unit: 'grapheme', maxLength: 40 }));
  fc.assert(
    fc.property(fc.array(ackField, { maxLength: 6 }), (fields) => {
      const w = new BinaryWriter();
      for (const [field, text] of fields) w.tag(field, WireType.LengthDelimited).string(text);
      same(w.finish());
    }),
    { numRuns: 500 },
  );
  // Whole requests (node, names, error detail): the reflective decoder's answer.
  fc.assert(
    fc.property(
      fc.record({ versionInfo: fc.string(), typeUrl: fc.string(), responseNonce: fc.string(), resourceNames: fc.array(fc.string(), { maxLength: 3 }), nodeId: fc.option(fc.string()), nack: fc.option(fc.string()) }),
      (r) => {
        const message = create(DiscoveryRequestSchema, {
          versionInfo: r.versionInfo,
          typeUrl: r.typeUrl,
          responseNonce: r.responseNonce,
          resourceNames: r.resourceNames,
          ...(r.nodeId !== null ? { node: { id: r.nodeId } } : {}),
          ...(r.nack !== null ? { errorDetail: { code: 3, message: r.nack } } : {}),
        });
        same(toBinary(DiscoveryRequestSchema, message));
      },
    ),
    { numRuns: 300 },
  );
  // Arbitrary bytes, truncations and invalid UTF-8 included.
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), same), { numRuns: 2000 });
  same(new Uint8Array([0x0a, 0x02, 0xff, 0xfe])); // invalid UTF-8 in version_info
  same(new Uint8Array([0x22, 0x05, 0x61])); // truncated type_url
});
