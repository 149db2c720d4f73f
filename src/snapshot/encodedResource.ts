// A resource encoded once per version. Every stream that receives it is sent
// these same bytes; nothing downstream re-encodes a resource.
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

export const shortHash = (data: string | Uint8Array): string =>
  createHash('sha256').update(data).digest('hex').slice(0, 16);

// Resources the compiler marked immutable and hands out again unchanged (the port-80 route
// tables of the sources an edit did not reach: a thousand per host) keep their encoding: no
// re-encode, no re-hash.
const encodedOnce = new WeakMap<object, EncodedResource>();

export function encodeResource(typeUrl: string, name: string, json: ProtoJson): EncodedResource {
  const known = encodedOnce.get(json);
  if (known && known.typeUrl === typeUrl && known.name === name) return known;
  const encoded = encodeFresh(typeUrl, name, json);
  if (isImmutable(json)) encodedOnce.set(json, encoded);
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
