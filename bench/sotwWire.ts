// The two pieces of SotW wire format the benchmarks' Envoy stand-ins need, by hand so
// that the client costs as little as it can: a DiscoveryRequest's bytes (version,
// node id, type URL, nonce), and a DiscoveryResponse's top-level fields without
// decoding its resources. Used by bench/fanoutClient.ts (over HTTP/2) and
// bench/ackPath.ts (in process).
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';

export interface RequestFields {
  readonly nodeId?: string;
  readonly typeUrl: string;
  readonly version?: string;
  readonly nonce?: string;
}

/** A DiscoveryRequest's bytes (unframed). */
export function discoveryRequest(fields: RequestFields): Uint8Array {
  const w = new BinaryWriter();
  if (fields.version) w.tag(1, WireType.LengthDelimited).string(fields.version);
  if (fields.nodeId) w.tag(2, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(fields.nodeId).join();
  w.tag(4, WireType.LengthDelimited).string(fields.typeUrl);
  if (fields.nonce) w.tag(5, WireType.LengthDelimited).string(fields.nonce);
  return w.finish();
}

/** A DiscoveryResponse's version_info, type_url and nonce; its resources are skipped. */
export function responseHead(bytes: Uint8Array): { version: string; typeUrl: string; nonce: string } {
  const reader = new BinaryReader(bytes);
  let version = '';
  let typeUrl = '';
  let nonce = '';
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) version = reader.string();
    else if (field === 4 && wireType === WireType.LengthDelimited) typeUrl = reader.string();
    else if (field === 5 && wireType === WireType.LengthDelimited) nonce = reader.string();
    else reader.skip(wireType);
  }
  return { version, typeUrl, nonce };
}
