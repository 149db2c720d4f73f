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
}

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
  if (isImmutable(json) && encoded.bytes.byteLength < 64 * 1024) encodedOnce.set(json, encoded);
  return encoded;
}

function encodeFresh(typeUrl: string, name: string, json: ProtoJson): EncodedResource {
  // The fast encoder gives the generic encoder's bytes (test/envoy/fastEncode.test.ts) in a
  // fraction of the time; what it does not support (or refuses), the generic path encodes
  // or explains.
  let bytes: Uint8Array;
  try {
    bytes = fastEncodeProtoJson(typeUrl, json);
  } catch {
    bytes = encodeProtoJson(typeUrl, json);
  }
  return { typeUrl, name, version: shortHash(bytes), bytes };
}
