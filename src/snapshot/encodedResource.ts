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

/**
 * Recent encodings by content. The same small resources recur in every node
 * group (the clusters): a global change at 10,000 groups would encode them
 * 10,000 times. Bounded; cleared when full.
 */
const recent = new Map<string, EncodedResource>();
const RECENT_MAX = 1024;
const RECENT_MAX_JSON = 16 * 1024;

export function encodeResource(typeUrl: string, name: string, json: ProtoJson): EncodedResource {
  const text = JSON.stringify(json);
  const key = text.length <= RECENT_MAX_JSON ? `${typeUrl}\u0000${text}` : undefined;
  const known = key === undefined ? undefined : recent.get(key);
  if (known && known.name === name) return known;
  const bytes = encodeProtoJson(typeUrl, json);
  const resource = { typeUrl, name, version: shortHash(bytes), bytes };
  if (key !== undefined) {
    if (recent.size >= RECENT_MAX) recent.clear();
    recent.set(key, resource);
  }
  return resource;
}
