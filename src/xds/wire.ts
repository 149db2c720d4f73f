// Discovery messages on the wire. Requests are decoded with the buf-generated
// schemas; responses are assembled from bytes encoded once per version: the
// body, then the nonce appended (protobuf allows fields in any order, and
// concatenated encodings merge). A whole-set SotW response, nonce included,
// is one buffer shared by every stream.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import {
  type DeltaDiscoveryRequest,
  DeltaDiscoveryRequestSchema,
  type DiscoveryRequest,
  DiscoveryRequestSchema,
  ResourceSchema,
} from '../gen/envoy/service/discovery/v3/discovery_pb.js';
import type { EncodedResource } from '../snapshot/encodedResource.js';
import type { ResourceSet } from '../snapshot/snapshot.js';

/**
 * Every push is answered by one ACK per stream (10,000 per push at fleet
 * scale): version_info, type_url and response_nonce, nothing else. Those are
 * read here by hand (0.5 µs, half what the reflective decoder takes);
 * a request with any other field (node, resource names, error detail, an
 * unknown field) or another wire type goes through the reflective decoder (so
 * does a malformed one, for its error; UTF-8 is checked as it checks it). The
 * result is the message fromBinary makes (test/xds/wire.test.ts compares them).
 */
export function decodeDiscoveryRequest(bytes: Uint8Array): DiscoveryRequest {
  let versionInfo = '';
  let typeUrl = '';
  let responseNonce = '';
  try {
    const reader = new BinaryReader(bytes);
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag();
      if (wireType !== WireType.LengthDelimited) return fromBinary(DiscoveryRequestSchema, bytes);
      if (field === 1) versionInfo = reader.string(true);
      else if (field === 4) typeUrl = reader.string(true);
      else if (field === 5) responseNonce = reader.string(true);
      else return fromBinary(DiscoveryRequestSchema, bytes);
    }
  } catch {
    // Malformed: the reflective decoder's error, as before.
    return fromBinary(DiscoveryRequestSchema, bytes);
  }
  const request: DiscoveryRequest = { $typeName: 'envoy.service.discovery.v3.DiscoveryRequest', versionInfo, resourceNames: [], resourceLocators: [], typeUrl, responseNonce };
  return request;
}
export const decodeDeltaDiscoveryRequest = (bytes: Uint8Array): DeltaDiscoveryRequest =>
  fromBinary(DeltaDiscoveryRequestSchema, bytes);

const toAny = (resource: EncodedResource) => create(AnySchema, { typeUrl: resource.typeUrl, value: resource.bytes });

const sotwBodies = new WeakMap<ResourceSet, Uint8Array>();

const varintSize = (n: number): number => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5);

function writeVarint(out: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[at++] = n;
  return at;
}

/** A length-delimited field of `length` bytes: its tag and length prefix; returns the position after them. */
function writeHead(out: Buffer, at: number, field: number, length: number): number {
  out[at++] = (field << 3) | WireType.LengthDelimited;
  return writeVarint(out, at, length);
}

const fieldSize = (length: number): number => 1 + varintSize(length) + length;

/**
 * DiscoveryResponse fields 1 (version_info), 2 (resources, each an Any), 4
 * (type_url), then 5 (nonce) when given, into one buffer of exactly the right
 * size. Written by hand, not through the reflective encoder: a global change
 * builds one per node group, thousands at once, on the event loop (the
 * reflective path cost ~100 µs per group; this is a few µs and one copy of
 * each resource). test/xds/wire.test.ts holds it byte for byte to the
 * reflective encoder.
 */
function encodeSotw(typeUrl: string, version: string, resources: Iterable<EncodedResource>, nonce?: string, headroom = 0): Buffer {
  const versionBytes = Buffer.byteLength(version);
  const typeUrlBytes = Buffer.byteLength(typeUrl);
  const nonceBytes = nonce === undefined ? 0 : Buffer.byteLength(nonce);
  const items: { typeUrlBytes: number; anySize: number; resource: EncodedResource }[] = [];
  let size = fieldSize(versionBytes) + fieldSize(typeUrlBytes) + (nonce === undefined ? 0 : fieldSize(nonceBytes));
  for (const resource of resources) {
    const itemTypeUrlBytes = Buffer.byteLength(resource.typeUrl);
    const anySize = fieldSize(itemTypeUrlBytes) + fieldSize(resource.bytes.length);
    items.push({ typeUrlBytes: itemTypeUrlBytes, anySize, resource });
    size += fieldSize(anySize);
  }
  const out = Buffer.allocUnsafe(headroom + size);
  let at = writeHead(out, headroom, 1, versionBytes);
  at += out.write(version, at, 'utf8');
  for (const { typeUrlBytes: itemTypeUrlBytes, anySize, resource } of items) {
    at = writeHead(out, at, 2, anySize);
    at = writeHead(out, at, 1, itemTypeUrlBytes);
    at += out.write(resource.typeUrl, at, 'utf8');
    at = writeHead(out, at, 2, resource.bytes.length);
    out.set(resource.bytes, at);
    at += resource.bytes.length;
  }
  at = writeHead(out, at, 4, typeUrlBytes);
  at += out.write(typeUrl, at, 'utf8');
  if (nonce !== undefined) {
    at = writeHead(out, at, 5, nonceBytes);
    at += out.write(nonce, at, 'utf8');
  }
  if (at !== headroom + size) throw new Error(`DiscoveryResponse encoding wrote ${at - headroom} of ${size} bytes`);
  return out;
}

/** DiscoveryResponse without nonce for a whole resource set: encoded once, shared by all streams. */
function sotwBody(typeUrl: string, set: ResourceSet): Uint8Array {
  let body = sotwBodies.get(set);
  if (!body) {
    body = encodeSotw(typeUrl, set.version, set.items.values());
    sotwBodies.set(set, body);
  }
  return body;
}

const nonceField = (nonce: string): Uint8Array => new BinaryWriter().tag(5, WireType.LengthDelimited).string(nonce).finish();

/** gRPC's length-prefixed message framing: a compressed flag (0) and the length, 5 bytes. */
export const GRPC_FRAME_HEADER_BYTES = 5;

/** The message as gRPC frames it on an HTTP/2 stream: a copy behind a 5-byte prefix (for responses encoded per stream). */
export function grpcFramed(message: Uint8Array): Buffer {
  const framed = Buffer.allocUnsafe(GRPC_FRAME_HEADER_BYTES + message.length);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  framed.set(message, GRPC_FRAME_HEADER_BYTES);
  return framed;
}

/** A whole-set response, with its nonce, shared by every stream it goes to. */
export interface SharedResponse {
  readonly nonce: string;
  /** The DiscoveryResponse: a view into `framed`, no copy. */
  readonly bytes: Buffer;
  /**
   * The same bytes behind gRPC's 5-byte message prefix, encoded in place: what
   * goes on each HTTP/2 stream, so 10,000 streams are sent one buffer rather
   * than each a framed copy (src/xds/responseWriter.ts).
   */
  readonly framed: Buffer;
}

const sharedResponses = new WeakMap<ResourceSet, SharedResponse>();
let lastSharedNonce = 0;

/**
 * The state-of-the-world response carrying a whole resource set, encoded once,
 * framed for gRPC once, and written as is to every stream (a per-stream nonce
 * would cost a copy of the whole body per stream).
 * Its nonce is unique in this process ("s" + counter, never a per-stream
 * nonce): a nonce names one response's content, and a stream that is sent
 * the same set twice is sent the same content, so an answer to either is an
 * answer to both.
 */
export function sharedSotwResponse(typeUrl: string, set: ResourceSet): SharedResponse {
  let shared = sharedResponses.get(set);
  if (!shared) {
    lastSharedNonce += 1;
    const nonce = `s${lastSharedNonce}`;
    const framed = encodeSotw(typeUrl, set.version, set.items.values(), nonce, GRPC_FRAME_HEADER_BYTES);
    framed[0] = 0;
    framed.writeUInt32BE(framed.length - GRPC_FRAME_HEADER_BYTES, 1);
    shared = { nonce, bytes: framed.subarray(GRPC_FRAME_HEADER_BYTES), framed };
    sharedResponses.set(set, shared);
  }
  return shared;
}

/** A state-of-the-world response: all of the set, or only the named resources when the stream asked for names. */
export function encodeSotwResponse(typeUrl: string, set: ResourceSet, nonce: string, names?: ReadonlySet<string>): Buffer {
  if (names === undefined) return Buffer.concat([sotwBody(typeUrl, set), nonceField(nonce)]);
  // The hand-written encoder: a host's route tables are megabytes (test/xds/wire.test.ts holds it to the reflective one).
  return encodeSotw(typeUrl, set.version, [...set.items.values()].filter((r) => names.has(r.name)), nonce);
}

/** True when the names include every resource of the set: the whole-set response is then the right one. */
export function coversSet(names: ReadonlySet<string>, set: ResourceSet): boolean {
  if (names.size < set.items.size) return false;
  for (const name of set.items.keys()) if (!names.has(name)) return false;
  return true;
}

const deltaEntries = new WeakMap<EncodedResource, Uint8Array>();

/** envoy.service.discovery.v3.Resource for one resource: encoded once per version. */
function deltaEntry(resource: EncodedResource): Uint8Array {
  let entry = deltaEntries.get(resource);
  if (!entry) {
    entry = toBinary(
      ResourceSchema,
      create(ResourceSchema, { name: resource.name, version: resource.version, resource: toAny(resource) }),
    );
    deltaEntries.set(resource, entry);
  }
  return entry;
}

export function encodeDeltaResponse(options: {
  typeUrl: string;
  systemVersion: string;
  resources: readonly EncodedResource[];
  removed: readonly string[];
  nonce: string;
}): Buffer {
  const writer = new BinaryWriter();
  writer.tag(1, WireType.LengthDelimited).string(options.systemVersion);
  for (const resource of options.resources) writer.tag(2, WireType.LengthDelimited).bytes(deltaEntry(resource));
  writer.tag(4, WireType.LengthDelimited).string(options.typeUrl);
  writer.tag(5, WireType.LengthDelimited).string(options.nonce);
  for (const name of options.removed) writer.tag(6, WireType.LengthDelimited).string(name);
  return Buffer.from(writer.finish());
}
