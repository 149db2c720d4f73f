// Discovery messages on the wire. Requests are decoded with the buf-generated
// schemas; responses are assembled from bytes encoded once per version: the
// body, then the nonce appended (protobuf allows fields in any order, and
// concatenated encodings merge). A whole-set SotW response, nonce included,
// is one buffer shared by every stream.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import {
  type DeltaDiscoveryRequest,
  DeltaDiscoveryRequestSchema,
  type DiscoveryRequest,
  DiscoveryRequestSchema,
  DiscoveryResponseSchema,
  ResourceSchema,
} from '../gen/envoy/service/discovery/v3/discovery_pb.js';
import type { EncodedResource } from '../snapshot/encodedResource.js';
import type { ResourceSet } from '../snapshot/snapshot.js';

export const decodeDiscoveryRequest = (bytes: Uint8Array): DiscoveryRequest => fromBinary(DiscoveryRequestSchema, bytes);
export const decodeDeltaDiscoveryRequest = (bytes: Uint8Array): DeltaDiscoveryRequest =>
  fromBinary(DeltaDiscoveryRequestSchema, bytes);

const toAny = (resource: EncodedResource) => create(AnySchema, { typeUrl: resource.typeUrl, value: resource.bytes });

const sotwBodies = new WeakMap<ResourceSet, Uint8Array>();

/** DiscoveryResponse without nonce for a whole resource set: encoded once, shared by all streams. */
function sotwBody(typeUrl: string, set: ResourceSet): Uint8Array {
  let body = sotwBodies.get(set);
  if (!body) {
    body = toBinary(
      DiscoveryResponseSchema,
      create(DiscoveryResponseSchema, { versionInfo: set.version, typeUrl, resources: [...set.items.values()].map(toAny) }),
    );
    sotwBodies.set(set, body);
  }
  return body;
}

const nonceField = (nonce: string): Uint8Array => new BinaryWriter().tag(5, WireType.LengthDelimited).string(nonce).finish();

/** A whole-set response, with its nonce, shared by every stream it goes to. */
export interface SharedResponse {
  readonly nonce: string;
  readonly bytes: Buffer;
}

const sharedResponses = new WeakMap<ResourceSet, SharedResponse>();
let lastSharedNonce = 0;

/**
 * The state-of-the-world response carrying a whole resource set, encoded once
 * and written as is to every stream (grpc-js copies it into its frame; a
 * per-stream nonce would cost one more copy of the whole body per stream).
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
    shared = { nonce, bytes: Buffer.concat([sotwBody(typeUrl, set), nonceField(nonce)]) };
    sharedResponses.set(set, shared);
  }
  return shared;
}

/** A state-of-the-world response: all of the set, or only the named resources when the stream asked for names. */
export function encodeSotwResponse(typeUrl: string, set: ResourceSet, nonce: string, names?: ReadonlySet<string>): Buffer {
  if (names === undefined) return Buffer.concat([sotwBody(typeUrl, set), nonceField(nonce)]);
  const resources = [...set.items.values()].filter((r) => names.has(r.name)).map(toAny);
  return Buffer.from(
    toBinary(DiscoveryResponseSchema, create(DiscoveryResponseSchema, { versionInfo: set.version, typeUrl, resources, nonce })),
  );
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
