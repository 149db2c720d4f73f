// A resource encoded once per version. Every stream that receives it is sent
// these same bytes; nothing downstream re-encodes a resource.
import { createHash } from 'node:crypto';
import { encodeProtoJson, type ProtoJson } from '../envoy/codec.js';

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

export function encodeResource(typeUrl: string, name: string, json: ProtoJson): EncodedResource {
  const bytes = encodeProtoJson(typeUrl, json);
  return { typeUrl, name, version: shortHash(bytes), bytes };
}
