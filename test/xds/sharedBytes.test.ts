// A host's listener is megabytes, and on this kind of machine every fresh copy of it costs
// ~12 ms of page faults on the event loop. These tests pin the path that makes none: the
// listener's bytes are encoded with room around them (src/snapshot/encodedResource.ts), a
// compile worker moves them to the main thread with their version already hashed, the
// shared SotW response is written around them in place (src/xds/wire.ts), and every stream
// of the group is handed that one buffer (src/xds/responseWriter.ts). What the clients
// decode is the listener, unchanged, in SotW and in Delta.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import { decodeStrictToJson } from '../../src/envoy/codec.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import {
  DeltaDiscoveryResponseSchema,
  DiscoveryResponseSchema,
  ResourceSchema,
} from '../../src/gen/envoy/service/discovery/v3/discovery_pb.js';
import { silentLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import type { Policy } from '../../src/policy/model.js';
import { SnapshotCache } from '../../src/snapshot/cache.js';
import { CompilePool } from '../../src/snapshot/compilePool.js';
import { egressGroupCompiler } from '../../src/snapshot/egressGroups.js';
import { encodeResource, LARGE_RESOURCE_BYTES, shortHash, type EncodedResource } from '../../src/snapshot/encodedResource.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { NodeRegistry } from '../../src/xds/nodeRegistry.js';
import { startXdsServer } from '../../src/xds/server.js';
import { encodeDeltaResponse, sharedSotwResponse } from '../../src/xds/wire.js';
import { FakeEnvoy } from '../support/fakeEnvoy.js';

/** 60 microVMs × 10 names: a listener of ~170 KB, above LARGE_RESOURCE_BYTES. */
const host = (extra?: string): Policy[] =>
  Array.from({ length: 60 }, (_, i) => ({
    name: `vm-${i}`,
    sources: [`10.0.${i}.0/30`],
    allow: { sni: [...Array.from({ length: 10 }, (_, j) => `n${j}.vm${i}.example`), ...(i === 7 && extra ? [extra] : [])] },
  }));

const listenerOf = (resources: readonly EncodedResource[]) => resources.find((r) => r.typeUrl === TypeUrl.Listener)!;

test('a compile worker hands over the listener with its version hashed from its bytes, the same bytes as here, room around them, not copied', async () => {
  const pool = new CompilePool({}, 1);
  try {
    const [fromWorker] = await pool.build([host()]);
    const compiled = egressGroupCompiler()(host());
    const here = compiled.resources.map((r) => encodeResource(r.typeUrl, r.name, r.json));
    assert.equal(fromWorker!.length, here.length);
    for (const [i, resource] of fromWorker!.entries()) {
      assert.equal(resource.version, shortHash(resource.bytes), `${resource.name}: the version is the hash of the bytes`);
      assert.deepEqual(resource.bytes, here[i]!.bytes, `${resource.name}: the same bytes as encoded on this thread`);
      assert.equal(resource.version, here[i]!.version);
    }
    const listener = listenerOf(fromWorker!);
    assert.ok(listener.bytes.length >= LARGE_RESOURCE_BYTES, `a listener of ${listener.bytes.length} B`);
    assert.equal(listener.roomAround, true);
    // Moved, not cloned: the view still sits inside its own buffer, with the room around it.
    assert.ok(listener.bytes.byteOffset > 0 && listener.bytes.buffer.byteLength > listener.bytes.byteOffset + listener.bytes.length);
  } finally {
    await pool.close();
  }
});

test('the shared response of a large listener is written around its bytes: no copy, the reflective encoding, and the room serves one response only', () => {
  const resources = egressGroupCompiler()(host()).resources.map((r) => encodeResource(r.typeUrl, r.name, r.json));
  const listener = listenerOf(resources);
  const original = Buffer.from(listener.bytes);
  const set = new Snapshot(resources, 0n).resourceSet(TypeUrl.Listener)!;
  const expected = (nonce: string) =>
    toBinary(DiscoveryResponseSchema, create(DiscoveryResponseSchema, { versionInfo: set.version, typeUrl: TypeUrl.Listener, nonce, resources: [create(AnySchema, { typeUrl: listener.typeUrl, value: original })] }));
  const shared = sharedSotwResponse(TypeUrl.Listener, set);
  assert.equal(shared.framed.buffer, listener.bytes.buffer, 'the response is the listener buffer itself');
  assert.deepEqual(new Uint8Array(shared.bytes), expected(shared.nonce));
  assert.equal(shared.framed[0], 0);
  assert.equal(shared.framed.readUInt32BE(1), shared.bytes.length);
  assert.deepEqual(Buffer.from(listener.bytes), original, 'the resource bytes are untouched');
  assert.equal(sharedSotwResponse(TypeUrl.Listener, set), shared, 'one response per set');
  // Another set holding the same resource cannot take the room again: it gets a copy, with the same bytes.
  const again = new Snapshot(resources, 0n).resourceSet(TypeUrl.Listener)!;
  const other = sharedSotwResponse(TypeUrl.Listener, again);
  assert.notEqual(other.framed.buffer, listener.bytes.buffer);
  assert.deepEqual(new Uint8Array(other.bytes), expected(other.nonce));
  assert.deepEqual(new Uint8Array(shared.bytes), expected(shared.nonce), 'the first response is unchanged by the second');
  assert.deepEqual(Buffer.from(fromBinary(DiscoveryResponseSchema, shared.bytes).resources[0]!.value), original);
});

test('the hand-written Delta response is the reflective encoding, framed in the same buffer', () => {
  const resources = egressGroupCompiler()(host()).resources.map((r) => encodeResource(r.typeUrl, r.name, r.json));
  for (const [picked, removed] of [
    [resources, []],
    [resources.slice(0, 1), ['gone', 'ünïcode-name']],
    [[], ['only-removed']],
  ] as const) {
    const response = encodeDeltaResponse({ typeUrl: TypeUrl.Listener, systemVersion: 'v-1', resources: picked, removed, nonce: 'n7' });
    const expected = toBinary(
      DeltaDiscoveryResponseSchema,
      create(DeltaDiscoveryResponseSchema, {
        systemVersionInfo: 'v-1',
        typeUrl: TypeUrl.Listener,
        nonce: 'n7',
        removedResources: [...removed],
        resources: picked.map((r) => create(ResourceSchema, { name: r.name, version: r.version, resource: create(AnySchema, { typeUrl: r.typeUrl, value: r.bytes }) })),
      }),
    );
    assert.deepEqual(new Uint8Array(response.bytes), expected);
    assert.equal(response.bytes.buffer, response.framed.buffer);
    assert.equal(response.framed.readUInt32BE(1), expected.length);
  }
});

test('every stream of a group is handed the one framed listener buffer, the compiled bytes themselves, and decodes the listener unchanged', async () => {
  // What reaches the HTTP/2 streams of the server (responseWriter's direct path writes there).
  const written: Buffer[] = [];
  // (Duplex holds its own reference to Writable's write: HTTP/2 streams find it there.)
  const write = Duplex.prototype.write;
  Duplex.prototype.write = function (this: Duplex, chunk: unknown, ...rest: unknown[]) {
    if (this.constructor.name === 'ServerHttp2Stream' && Buffer.isBuffer(chunk) && chunk.length >= LARGE_RESOURCE_BYTES) written.push(chunk);
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof Duplex.prototype.write;
  const pool = new CompilePool({}, 1);
  const cache = new SnapshotCache(egressGroupCompiler());
  cache.setPolicies(host());
  const server = await startXdsServer({ source: cache, registry: new NodeRegistry(cache), metrics: createMetrics(), logger: silentLogger }, '127.0.0.1:0');
  const envoys = ['a', 'b', 'c'].map((nodeId) => new FakeEnvoy(`127.0.0.1:${server.port}`, { nodeId, variant: 'sotw' }).connect());
  try {
    const check = async (what: string) => {
      const listener = listenerOf([...cache.currentSnapshot('a')!.resourceSet(TypeUrl.Listener)!.items.values()]);
      const expected = decodeStrictToJson(TypeUrl.Listener, listener.bytes);
      for (const e of envoys) await e.waitFor(`${what}: the listener`, () => e.acceptedVersions.get(TypeUrl.Listener) === cache.currentSnapshot('a')!.version(TypeUrl.Listener));
      for (const e of envoys) assert.deepEqual(e.state.get(TypeUrl.Listener)!.get(listener.name), expected, `${what}: decoded unchanged`);
      const pushed = written.splice(0);
      assert.equal(pushed.length, envoys.length, `${what}: one listener write per stream`);
      for (const chunk of pushed) assert.equal(chunk, pushed[0], `${what}: the same buffer object for every stream`);
      assert.equal(pushed[0]!.buffer, listener.bytes.buffer, `${what}: the compiled bytes themselves, never copied`);
    };
    await check('first response');
    // An edit applied through the compile worker, as the server's push scheduler does.
    await cache.applyChanges(new Map([['vm-7', host('added.example').find((p) => p.name === 'vm-7')]]), pool.build);
    await check('after an edit compiled in a worker');
    for (const e of envoys) assert.deepEqual(e.errors, []);
  } finally {
    Duplex.prototype.write = write;
    for (const e of envoys) e.close();
    await server.close();
    await pool.close();
  }
});
