// ProtoJSON <-> Envoy protobuf bytes. Encoding parses ProtoJSON strictly, so a
// builder that writes a field Envoy's protos do not have fails at once; strict
// decoding fails on any field the protos do not know, at any depth, inside Any too.
import protobuf from 'protobufjs';
import protojson from 'protobufjs/ext/protojson.js';
import { envoyRoot } from './protos.js';
import { messageNameOf } from './typeUrls.js';

export type ProtoJson = Record<string, unknown>;

function typeForUrl(typeUrl: string): protobuf.Type {
  const name = messageNameOf(typeUrl);
  const type = envoyRoot().lookup(name);
  if (!(type instanceof protobuf.Type)) throw new Error(`unknown message type "${typeUrl}"`);
  return type;
}

/** Encodes a message given in ProtoJSON (as Envoy's YAML/JSON configs are written). */
export function encodeProtoJson(typeUrl: string, json: ProtoJson): Uint8Array {
  const type = typeForUrl(typeUrl);
  return type.encode(protojson.fromJson(type, json)).finish();
}

/** Decodes bytes and checks that every field, at every depth, is known to Envoy's protos. */
export function decodeStrict(typeUrl: string, bytes: Uint8Array): protobuf.Message {
  const type = typeForUrl(typeUrl);
  const message = type.decode(keepingUnknownFields(bytes));
  assertNoUnknownFields(type, message, messageNameOf(typeUrl));
  return message;
}

/**
 * As decodeStrict, except that the values of Any fields are not decoded (each must still name
 * its type): for a caller that decodes every Any value strictly itself, as the fake Envoy
 * (test/support/fakeEnvoy.ts) decodes each resource of a response to ProtoJSON. The same
 * check, without decoding every resource twice.
 */
export function decodeStrictLeavingAny(typeUrl: string, bytes: Uint8Array): protobuf.Message {
  const type = typeForUrl(typeUrl);
  const message = type.decode(keepingUnknownFields(bytes));
  assertNoUnknownFields(type, message, messageNameOf(typeUrl), false);
  return message;
}

/** ProtoJSON of a strictly decoded message, with Any values expanded: what tests assert on. */
export function decodeStrictToJson(typeUrl: string, bytes: Uint8Array): ProtoJson {
  const type = typeForUrl(typeUrl);
  return protojson.toJson(type, decodeStrict(typeUrl, bytes)) as ProtoJson;
}

/** Parses ProtoJSON strictly (unknown fields are errors) into a message of the given type. */
export function parseProtoJsonStrict(typeUrl: string, json: unknown): protobuf.Message {
  return protojson.fromJson(typeForUrl(typeUrl), json);
}

/** protobufjs drops unknown fields unless the reader is told to keep them (in $unknowns). */
function keepingUnknownFields(bytes: Uint8Array): protobuf.Reader {
  const reader = protobuf.Reader.create(bytes);
  reader.discardUnknown = false;
  return reader;
}

function assertNoUnknownFields(type: protobuf.Type, message: protobuf.Message, path: string, expandAny = true): void {
  const record = message as unknown as Record<string, unknown> & { $unknowns?: unknown[] };
  if (Object.prototype.hasOwnProperty.call(record, '$unknowns') && record.$unknowns && record.$unknowns.length > 0) {
    throw new Error(`${path}: ${record.$unknowns.length} unknown field(s) for ${type.fullName.slice(1)}`);
  }
  if (type.fullName === '.google.protobuf.Any') {
    // protobufjs's bundled Any keeps the proto field name (type_url) whatever keepCase says.
    const any = record as { typeUrl?: string; type_url?: string; value?: Uint8Array };
    const innerUrl = any.typeUrl ?? any.type_url;
    if (!innerUrl) throw new Error(`${path}: google.protobuf.Any without a type URL`);
    if (!expandAny) return;
    const inner = typeForUrl(innerUrl);
    assertNoUnknownFields(inner, inner.decode(keepingUnknownFields(any.value ?? new Uint8Array())), `${path}<${messageNameOf(innerUrl)}>`);
    return;
  }
  for (const field of type.fieldsArray) {
    field.resolve();
    if (!(field.resolvedType instanceof protobuf.Type)) continue;
    const value = record[field.name];
    if (value === undefined || value === null) continue;
    const children = field.map ? Object.entries(value as object) : field.repeated ? (value as unknown[]).map((v, i) => [i, v] as const) : [[undefined, value] as const];
    for (const [key, child] of children) {
      const childPath = key === undefined ? `${path}.${field.name}` : `${path}.${field.name}[${String(key)}]`;
      assertNoUnknownFields(field.resolvedType, child as protobuf.Message, childPath, expandAny);
    }
  }
}
