// A resource encoded once per version. Every stream that receives it is sent
// these same bytes; nothing downstream re-encodes a resource.
import * as crypto from 'node:crypto';
import { createHash } from 'node:crypto';
import { encodeProtoJson, type ProtoJson } from '../envoy/codec.js';
import { fastEncodeProtoJson, isImmutable } from '../envoy/fastEncode.js';

export interface EncodedResource {
  readonly typeUrl: string;
  readonly name: string;
  /** Content hash of the bytes: equal bytes, equal version, across restarts too. */
  readonly version: string;
  /** The resource message (the value of its google.protobuf.Any). */
  readonly bytes: Uint8Array;
  /**
   * Set when `bytes` is the only data of its ArrayBuffer, with free room before and after
   * it (ROOM_BEFORE, ROOM_AFTER): a response that carries this resource alone can be written
   * around it in place (src/xds/wire.ts) instead of copied whole. At a thousand microVMs a
   * host's listener is megabytes, and each fresh copy of it costs ~12 ms of page faults on
   * the event loop. Whoever writes into the room first owns it (wire.ts claims the buffer).
   */
  readonly roomAround?: true;
}

/** Resources from this size on are encoded with room around them, and moved (not copied) from a compile worker. */
export const LARGE_RESOURCE_BYTES = 64 * 1024;
/**
 * Room for a DiscoveryResponse's envelope (gRPC's prefix, version, the Any's head and type
 * URL before; type URL and nonce after): ~100 and ~90 bytes today. wire.ts checks the fit
 * and copies when it does not.
 */
export const ROOM_BEFORE = 256;
export const ROOM_AFTER = 160;

const roomFor = (length: number): readonly [number, number] | undefined => (length >= LARGE_RESOURCE_BYTES ? [ROOM_BEFORE, ROOM_AFTER] : undefined);

// crypto.hash (Node 20.12+): one call, no Hash object; half the cost of createHash on a
// 15 KB listener, and a global change hashes one per group.
const oneShot = (crypto as { hash?: (algorithm: string, data: string | Uint8Array, encoding: 'hex') => string }).hash;

export const shortHash = (data: string | Uint8Array): string =>
  (oneShot ? oneShot('sha256', data, 'hex') : createHash('sha256').update(data).digest('hex')).slice(0, 16);

// Resources the compiler marked immutable and hands out again unchanged (the port-80 route
// tables of the sources an edit did not reach: a thousand per host) keep their encoding: no
// re-encode, no re-hash.
const encodedOnce = new WeakMap<object, EncodedResource>();

export function encodeResource(typeUrl: string, name: string, json: ProtoJson): EncodedResource {
  const known = encodedOnce.get(json);
  if (known && known.typeUrl === typeUrl && known.name === name) return known;
  const encoded = encodeFresh(typeUrl, name, json);
  // Not a large one: a compile worker transfers (detaches) the buffers of large resources
  // it sends (compileWorker.ts transferList), which a memo must never hold.
  if (isImmutable(json) && encoded.bytes.byteLength < LARGE_RESOURCE_BYTES) encodedOnce.set(json, encoded);
  return encoded;
}

function encodeFresh(typeUrl: string, name: string, json: ProtoJson): EncodedResource {
  // The fast encoder gives the generic encoder's bytes (test/envoy/fastEncode.test.ts) in a
  // fraction of the time; what it does not support (or refuses), the generic path encodes
  // or explains.
  let bytes: Uint8Array;
  let roomAround = false;
  try {
    bytes = fastEncodeProtoJson(typeUrl, json, roomFor);
    roomAround = bytes.byteLength >= LARGE_RESOURCE_BYTES;
  } catch {
    bytes = encodeProtoJson(typeUrl, json);
  }
  // The version is hashed here, where the bytes are made (in a compile worker, off the event loop).
  const version = shortHash(bytes);
  return roomAround ? { typeUrl, name, version, bytes, roomAround: true } : { typeUrl, name, version, bytes };
}
