import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import { DiscoveryResponseSchema } from '../../src/gen/envoy/service/discovery/v3/discovery_pb.js';
import { egressGroupCompiler } from '../../src/snapshot/egressGroups.js';
import { encodeResource } from '../../src/snapshot/encodedResource.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { encodeSotwResponse, sharedSotwResponse } from '../../src/xds/wire.js';

test('the hand-written SotW response is byte for byte what the reflective encoder writes, and decodes strictly', () => {
  const compiled = egressGroupCompiler()([{ name: 'p', sources: ['10.0.0.0/8'], allow: { sni: ['a.example', 'b.example'] } }]);
  const snapshot = new Snapshot(compiled.resources.map((r) => encodeResource(r.typeUrl, r.name, r.json)), 0n);
  for (const typeUrl of [TypeUrl.Cluster, TypeUrl.Listener]) {
    const set = snapshot.resourceSet(typeUrl)!;
    const expected = (nonce: string) =>
      toBinary(
        DiscoveryResponseSchema,
        create(DiscoveryResponseSchema, {
          versionInfo: set.version,
          typeUrl,
          nonce,
          resources: [...set.items.values()].map((r) => create(AnySchema, { typeUrl: r.typeUrl, value: r.bytes })),
        }),
      );
    assert.deepEqual(new Uint8Array(encodeSotwResponse(typeUrl, set, '7')), expected('7'));
    const shared = sharedSotwResponse(typeUrl, set);
    assert.deepEqual(new Uint8Array(shared.bytes), expected(shared.nonce));
    const decoded = fromBinary(DiscoveryResponseSchema, shared.bytes);
    assert.equal(decoded.resources.length, set.items.size);
    assert.equal(decoded.versionInfo, set.version);
  }
});
