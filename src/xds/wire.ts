// Discovery messages on the wire. Requests are decoded with the buf-generated
// schemas; responses are assembled from bytes encoded once per version, each
// straight behind gRPC's frame prefix, so a response is allocated and copied
// once on its way to the HTTP/2 stream. A whole-set SotW response, nonce
// included, is one buffer shared by every stream; for a host's listener it is
// written around the listener's own bytes, with no copy at all.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
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
import { TypeUrl } from '../envoy/typeUrls.js';
import { varintSize, writeVarintAt } from '../envoy/varint.js';

/**
 * Every push is answered by one ACK per stream (10,000 per push at fleet
 * scale): version_info, type_url and response_nonce, nothing else. Those are
 * read here by hand; a request with any other field (node, resource names,
 * error detail, an unknown field) or another wire type goes through the
 * reflective decoder (so does a malformed one, for its error; UTF-8 is checked
 * as it checks it). The result is the message fromBinary makes
 * (test/xds/wire.test.ts compares them).
 */
export function decodeDiscoveryRequest(bytes: Uint8Array): DiscoveryRequest {
  return decodeAck(bytes) ?? decodeAckReader(bytes);
}

/**
 * An ACK's strings, without allocating for them: a push's ACKs all carry the
 * same version and the same (shared) nonce, and one of a few type URLs. Each
 * field's last value is kept (bytes and string) and returned again when the
 * bytes are the same; type URLs come back as the constants of typeUrls.ts.
 * Besides sparing 3 strings, 3 views, a reader and its DataView per ACK (the
 * largest items of the server's own garbage per push in the fan-out heap
 * profile, BENCHMARKS.md), the strings are then the ones the streams' maps and
 * comparisons already hold. ASCII only: anything else is left to the reader.
 */
class LastString {
  private bytes = Buffer.alloc(0);
  private text = '';

  /** The string of bytes[start, end) when all of it is ASCII; undefined otherwise. */
  read(bytes: Buffer, start: number, end: number): string | undefined {
    const length = end - start;
    const last = this.bytes;
    if (last.length === length) {
      let i = 0;
      while (i < length && last[i] === bytes[start + i]) i++;
      if (i === length) return this.text;
    }
    for (let i = start; i < end; i++) if (bytes[i]! >= 0x80) return undefined;
    const text = bytes.toString('latin1', start, end);
    // Only short values are kept (versions, nonces): a long one would be compared on every ACK.
    if (length <= 128) {
      this.bytes = Buffer.from(bytes.subarray(start, end));
      this.text = text;
    }
    return text;
  }
}

/** Known type URLs, as bytes and as the constants every map holds them by. */
const KNOWN_TYPE_URLS = Object.values(TypeUrl).map((text) => ({ text, bytes: Buffer.from(text, 'latin1') }));

function knownTypeUrl(bytes: Buffer, start: number, end: number): string | undefined {
  const length = end - start;
  for (const known of KNOWN_TYPE_URLS) {
    if (known.bytes.length !== length) continue;
    // From the end: the URLs share their "type.googleapis.com/envoy." beginning.
    let i = length - 1;
    while (i >= 0 && known.bytes[i] === bytes[start + i]) i--;
    if (i < 0) return known.text;
  }
  return undefined;
}

const lastVersion = new LastString();
const lastTypeUrl = new LastString();
const lastNonce = new LastString();
/** Shared by every fast-path request: nothing reads them but to iterate (frozen, so nothing can write them). */
const NO_NAMES: string[] = Object.freeze([]) as unknown as string[];
const NO_LOCATORS: DiscoveryRequest['resourceLocators'] = Object.freeze([]) as unknown as DiscoveryRequest['resourceLocators'];

/** The fast path: fields 1, 4, 5 with one-byte tags and ASCII values; undefined for anything else. */
function decodeAck(input: Uint8Array): DiscoveryRequest | undefined {
  const bytes = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  let versionInfo = '';
  let typeUrl = '';
  let responseNonce = '';
  const length = bytes.length;
  let at = 0;
  while (at < length) {
    const tag = bytes[at++]!;
    // 0x0a, 0x22, 0x2a: fields 1, 4, 5, length-delimited.
    if (tag !== 0x0a && tag !== 0x22 && tag !== 0x2a) return undefined;
    let size = 0;
    let shift = 0;
    for (;;) {
      if (at >= length || shift > 21) return undefined;
      const b = bytes[at++]!;
      size += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
      shift += 7;
    }
    const end = at + size;
    if (end > length) return undefined;
    let text: string | undefined;
    if (tag === 0x22) text = knownTypeUrl(bytes, at, end) ?? lastTypeUrl.read(bytes, at, end);
    else text = (tag === 0x0a ? lastVersion : lastNonce).read(bytes, at, end);
    if (text === undefined) return undefined;
    if (tag === 0x0a) versionInfo = text;
    else if (tag === 0x22) typeUrl = text;
    else responseNonce = text;
    at = end;
  }
  return { $typeName: 'envoy.service.discovery.v3.DiscoveryRequest', versionInfo, resourceNames: NO_NAMES, resourceLocators: NO_LOCATORS, typeUrl, responseNonce };
}

/** The general hand-read path: any UTF-8 in fields 1, 4, 5; anything else to the reflective decoder. */
function decodeAckReader(bytes: Uint8Array): DiscoveryRequest {
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


/** A length-delimited field of `length` bytes: its tag and length prefix; returns the position after them. */
function writeHead(out: Buffer, at: number, field: number, length: number): number {
  out[at++] = (field << 3) | WireType.LengthDelimited;
  return writeVarintAt(out, at, length);
}

/** A string field, head and UTF-8 bytes (`bytes` its UTF-8 length); returns the position after it. */
function writeString(out: Buffer, at: number, field: number, text: string, bytes: number): number {
  at = writeHead(out, at, field, bytes);
  return at + out.write(text, at, 'utf8');
}

const fieldSize = (length: number): number => 1 + varintSize(length) + length;

/** gRPC's length-prefixed message framing: a compressed flag (0) and the length, 5 bytes. */
export const GRPC_FRAME_HEADER_BYTES = 5;

/** Writes gRPC's prefix into the first 5 bytes of `framed` (the message follows them). */
function writeFrameHeader(framed: Buffer): void {
  framed[0] = 0;
  framed.writeUInt32BE(framed.length - GRPC_FRAME_HEADER_BYTES, 1);
}

/**
 * A response as its stream sends it: the DiscoveryResponse, and the same bytes behind
 * gRPC's 5-byte prefix in one buffer (`bytes` is a view into `framed`, no copy). The
 * writer puts `framed` on the HTTP/2 stream as is (src/xds/responseWriter.ts), so a
 * response is allocated and copied once, not once more to frame it.
 */
export interface FramedResponse {
  readonly bytes: Buffer;
  readonly framed: Buffer;
}

/** A framed buffer, its prefix written, as the response it holds. */
const framedResponse = (framed: Buffer): FramedResponse => ({ bytes: framed.subarray(GRPC_FRAME_HEADER_BYTES), framed });

/**
 * DiscoveryResponse fields 1 (version_info), 2 (resources, each an Any), 4
 * (type_url), then 5 (nonce), into one buffer of exactly the right size behind
 * gRPC's prefix. Written by hand, not through the reflective encoder: a global
 * change builds one per node group, thousands at once, on the event loop (the
 * reflective path cost ~100 µs per group; this is a few µs and one copy of
 * each resource). test/xds/wire.test.ts holds it byte for byte to the
 * reflective encoder.
 */
function encodeSotw(typeUrl: string, version: string, resources: Iterable<EncodedResource>, nonce: string): FramedResponse {
  const versionBytes = Buffer.byteLength(version);
  const typeUrlBytes = Buffer.byteLength(typeUrl);
  const nonceBytes = Buffer.byteLength(nonce);
  const items: { typeUrlBytes: number; anySize: number; resource: EncodedResource }[] = [];
  let size = fieldSize(versionBytes) + fieldSize(typeUrlBytes) + fieldSize(nonceBytes);
  for (const resource of resources) {
    const itemTypeUrlBytes = Buffer.byteLength(resource.typeUrl);
    const anySize = fieldSize(itemTypeUrlBytes) + fieldSize(resource.bytes.length);
    items.push({ typeUrlBytes: itemTypeUrlBytes, anySize, resource });
    size += fieldSize(anySize);
  }
  const framed = Buffer.allocUnsafe(GRPC_FRAME_HEADER_BYTES + size);
  writeFrameHeader(framed);
  let at = writeString(framed, GRPC_FRAME_HEADER_BYTES, 1, version, versionBytes);
  for (const { typeUrlBytes: itemTypeUrlBytes, anySize, resource } of items) {
    at = writeHead(framed, at, 2, anySize);
    at = writeString(framed, at, 1, resource.typeUrl, itemTypeUrlBytes);
    at = writeHead(framed, at, 2, resource.bytes.length);
    framed.set(resource.bytes, at);
    at += resource.bytes.length;
  }
  at = writeString(framed, at, 4, typeUrl, typeUrlBytes);
  at = writeString(framed, at, 5, nonce, nonceBytes);
  if (at !== framed.length) throw new Error(`DiscoveryResponse encoding wrote ${at - GRPC_FRAME_HEADER_BYTES} of ${size} bytes`);
  return framedResponse(framed);
}

/** Buffers whose room a response was written into: each resource's room serves one response. */
const roomTaken = new WeakSet<ArrayBufferLike>();

/**
 * The same bytes as encodeSotw for a set of one resource, written around the resource's
 * bytes in the room its encoder left (src/snapshot/encodedResource.ts): no allocation and
 * no copy of the resource. That is a host's listener, megabytes that a compile worker moved
 * here, where a fresh copy costs ~12 ms of page faults on the event loop, at every edit.
 * Undefined when the resource has no room (small, encoded elsewhere), the envelope does
 * not fit, or another response took the room already.
 */
function encodeSotwInPlace(typeUrl: string, version: string, resource: EncodedResource, nonce: string): FramedResponse | undefined {
  if (resource.roomAround !== true) return undefined;
  const { bytes } = resource;
  const buffer = bytes.buffer;
  if (roomTaken.has(buffer)) return undefined;
  const versionBytes = Buffer.byteLength(version);
  const typeUrlBytes = Buffer.byteLength(typeUrl);
  const nonceBytes = Buffer.byteLength(nonce);
  const itemTypeUrlBytes = Buffer.byteLength(resource.typeUrl);
  const anySize = fieldSize(itemTypeUrlBytes) + fieldSize(bytes.length);
  const before =
    GRPC_FRAME_HEADER_BYTES + fieldSize(versionBytes) + 1 + varintSize(anySize) + fieldSize(itemTypeUrlBytes) + 1 + varintSize(bytes.length);
  const after = fieldSize(typeUrlBytes) + fieldSize(nonceBytes);
  const start = bytes.byteOffset - before;
  const end = bytes.byteOffset + bytes.length + after;
  if (start < 0 || end > buffer.byteLength) return undefined;
  roomTaken.add(buffer);
  const framed = Buffer.from(buffer as ArrayBuffer, start, end - start);
  writeFrameHeader(framed);
  let at = writeString(framed, GRPC_FRAME_HEADER_BYTES, 1, version, versionBytes);
  at = writeHead(framed, at, 2, anySize);
  at = writeString(framed, at, 1, resource.typeUrl, itemTypeUrlBytes);
  at = writeHead(framed, at, 2, bytes.length);
  if (at !== before) throw new Error(`DiscoveryResponse envelope wrote ${at} of ${before} bytes before the resource`);
  at += bytes.length;
  at = writeString(framed, at, 4, typeUrl, typeUrlBytes);
  at = writeString(framed, at, 5, nonce, nonceBytes);
  if (at !== framed.length) throw new Error(`DiscoveryResponse envelope wrote ${at} of ${framed.length} bytes`);
  return framedResponse(framed);
}

/** The message as gRPC frames it on an HTTP/2 stream: a copy behind a 5-byte prefix (for a message not encoded here). */
export function grpcFramed(message: Uint8Array): Buffer {
  const framed = Buffer.allocUnsafe(GRPC_FRAME_HEADER_BYTES + message.length);
  framed.set(message, GRPC_FRAME_HEADER_BYTES);
  writeFrameHeader(framed);
  return framed;
}

/** A whole-set response, with its nonce, shared by every stream it goes to. */
export interface SharedResponse extends FramedResponse {
  readonly nonce: string;
}

const sharedResponses = new WeakMap<ResourceSet, SharedResponse>();
let lastSharedNonce = 0;
/** The set asked for last and its response (strong references to one set: the one being pushed). */
let lastSharedSet: ResourceSet | undefined;
let lastShared: SharedResponse | undefined;

/**
 * The state-of-the-world response carrying a whole resource set, encoded once,
 * framed for gRPC once, and written as is to every stream (a per-stream nonce
 * would cost a copy of the whole body per stream). A set of one resource with
 * room around its bytes (a host's listener) is not even copied once.
 * Its nonce is unique in this process ("s" + counter, never a per-stream
 * nonce): a nonce names one response's content, and a stream that is sent
 * the same set twice is sent the same content, so an answer to either is an
 * answer to both.
 */
export function sharedSotwResponse(typeUrl: string, set: ResourceSet): SharedResponse {
  // A push asks for one set's response once per stream, one stream after another: the last
  // answer is checked before the WeakMap (a lookup per stream showed in the push profile).
  if (set === lastSharedSet) return lastShared!;
  let shared = sharedResponses.get(set);
  if (!shared) {
    lastSharedNonce += 1;
    const nonce = `s${lastSharedNonce}`;
    const only = set.items.size === 1 ? set.items.values().next().value : undefined;
    const response = (only && encodeSotwInPlace(typeUrl, set.version, only, nonce)) ?? encodeSotw(typeUrl, set.version, set.items.values(), nonce);
    shared = { nonce, ...response };
    sharedResponses.set(set, shared);
  }
  lastSharedSet = set;
  lastShared = shared;
  return shared;
}

/** A state-of-the-world response for one stream: all of the set, or only the named resources when the stream asked for names. */
export function encodeSotwResponse(typeUrl: string, set: ResourceSet, nonce: string, names?: { has(name: string): boolean }): FramedResponse {
  // The hand-written encoder: a host's route tables are megabytes (test/xds/wire.test.ts holds it to the reflective one).
  return encodeSotw(typeUrl, set.version, names === undefined ? set.items.values() : [...set.items.values()].filter((r) => names.has(r.name)), nonce);
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

/**
 * DeltaDiscoveryResponse fields 1 (system_version_info), 2 (resources), 4 (type_url),
 * 5 (nonce), 6 (removed_resources), behind gRPC's prefix in one buffer: one copy of each
 * resource per stream (the reflective writer's join and a Buffer.from, then the framing,
 * were three copies of a megabyte listener). test/xds/wire.test.ts holds it to the
 * reflective encoder.
 */
export function encodeDeltaResponse(options: {
  typeUrl: string;
  systemVersion: string;
  resources: readonly EncodedResource[];
  removed: readonly string[];
  nonce: string;
}): FramedResponse {
  const entries = options.resources.map(deltaEntry);
  const versionBytes = Buffer.byteLength(options.systemVersion);
  const typeUrlBytes = Buffer.byteLength(options.typeUrl);
  const nonceBytes = Buffer.byteLength(options.nonce);
  const removedBytes = options.removed.map((name) => Buffer.byteLength(name));
  let size = fieldSize(versionBytes) + fieldSize(typeUrlBytes) + fieldSize(nonceBytes);
  for (const entry of entries) size += fieldSize(entry.length);
  for (const n of removedBytes) size += fieldSize(n);
  const framed = Buffer.allocUnsafe(GRPC_FRAME_HEADER_BYTES + size);
  writeFrameHeader(framed);
  let at = writeString(framed, GRPC_FRAME_HEADER_BYTES, 1, options.systemVersion, versionBytes);
  for (const entry of entries) {
    at = writeHead(framed, at, 2, entry.length);
    framed.set(entry, at);
    at += entry.length;
  }
  at = writeString(framed, at, 4, options.typeUrl, typeUrlBytes);
  at = writeString(framed, at, 5, options.nonce, nonceBytes);
  options.removed.forEach((name, i) => (at = writeString(framed, at, 6, name, removedBytes[i]!)));
  if (at !== framed.length) throw new Error(`DeltaDiscoveryResponse encoding wrote ${at - GRPC_FRAME_HEADER_BYTES} of ${size} bytes`);
  return framedResponse(framed);
}
