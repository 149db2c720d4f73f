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

// Resources whose ProtoJSON is marked immutable (the clusters every group shares): encoded
// and hashed once per object.
const encodedOnce = new WeakMap<object, Map<string, EncodedResource>>();

export function encodeResource(typeUrl: string, name: string, json: ProtoJson): EncodedResource {
  if (!isImmutable(json)) return encodeNow(typeUrl, name, json);
  let byKey = encodedOnce.get(json);
  const key = `${typeUrl}\u0000${name}`;
  let encoded = byKey?.get(key);
  if (!encoded) {
    encoded = encodeNow(typeUrl, name, json);
    // Kept only when small: a compile worker transfers (detaches) the buffers of large
    // resources it sends, which a memo must never hold.
    if (encoded.bytes.byteLength >= 16 * 1024) return encoded;
    if (!byKey) encodedOnce.set(json, (byKey = new Map()));
    byKey.set(key, encoded);
  }
  return encoded;
}

function encodeNow(typeUrl: string, name: string, json: ProtoJson): EncodedResource {
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
