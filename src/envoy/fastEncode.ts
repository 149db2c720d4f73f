// ProtoJSON → protobuf bytes without building protobufjs messages: a walk of the JSON
// driven by the reflected types of Envoy's protos, writing straight into one buffer.
// The bytes are those of codec.ts encodeProtoJson (protobufjs fromJson + encode: fields
// by number, proto3 defaults left out, repeated scalars packed, map entries in key
// order); test/envoy/fastEncode.test.ts holds it to that on random listeners.
//
// Why: a host's listener is megabytes, and protobufjs's generic path takes seconds of
// event loop for it. Two things make it fast: no intermediate message objects, and a
// memo of the bytes of subtrees marked immutable (markImmutable), so a recompile that
// reuses most of its fragments (compile/hardenedMatcher.ts memoises them per source)
// copies their bytes instead of walking them again.
//
// Strict like the generic path: a key the type does not have, or a value of the wrong
// shape, is an error naming where it is.
import protobuf from 'protobufjs';
import { envoyRoot } from './protos.js';
import { messageNameOf } from './typeUrls.js';
import { varintSize, writeVarintAt } from './varint.js';

type Kind = 'message' | 'enum' | 'string' | 'bytes' | 'bool' | 'double' | 'float' | 'varint' | 'sint' | 'fixed32' | 'fixed64' | 'sfixed32' | 'sfixed64';

interface FieldPlan {
  readonly name: string;
  readonly protoName: string;
  readonly id: number;
  readonly kind: Kind;
  /** int64 and friends: negative numbers are 10-byte varints; int32 too. */
  readonly signed: boolean;
  readonly repeated: boolean;
  readonly packed: boolean;
  /** Present in proto3 without presence: default values are left out. */
  readonly skipDefault: boolean;
  readonly map?: { readonly keyKind: Kind; readonly keySigned: boolean };
  readonly type?: TypePlan;
  readonly enumValues?: Readonly<Record<string, number>>;
}

interface TypePlan {
  readonly fullName: string;
  /** Set on first use (writeMessageBody). */
  special?: number;
  fields: readonly FieldPlan[];
  byKey: ReadonlyMap<string, FieldPlan>;
}

const SCALAR_KIND: Record<string, [Kind, boolean]> = {
  string: ['string', false],
  bytes: ['bytes', false],
  bool: ['bool', false],
  double: ['double', false],
  float: ['float', false],
  int32: ['varint', true],
  int64: ['varint', true],
  uint32: ['varint', false],
  uint64: ['varint', false],
  sint32: ['sint', true],
  sint64: ['sint', true],
  fixed32: ['fixed32', false],
  fixed64: ['fixed64', false],
  sfixed32: ['sfixed32', true],
  sfixed64: ['sfixed64', true],
};

const plans = new Map<string, TypePlan>();

function planOf(type: protobuf.Type): TypePlan {
  const cached = plans.get(type.fullName);
  if (cached) return cached;
  const plan: TypePlan = { fullName: type.fullName.slice(1), fields: [], byKey: new Map() };
  plans.set(type.fullName, plan);
  const fields: FieldPlan[] = [];
  for (const field of [...type.fieldsArray].sort((a, b) => a.id - b.id)) {
    field.resolve();
    const resolved = field.resolvedType;
    let kind: Kind;
    let signed = false;
    let sub: TypePlan | undefined;
    let enumValues: Record<string, number> | undefined;
    if (resolved instanceof protobuf.Type) {
      kind = 'message';
      sub = planOf(resolved);
    } else if (resolved instanceof protobuf.Enum) {
      kind = 'enum';
      signed = true;
      enumValues = resolved.values;
    } else {
      const scalar = SCALAR_KIND[field.type];
      if (!scalar) throw new Error(`fastEncode: unsupported field type ${field.type} in ${type.fullName}`);
      [kind, signed] = scalar;
    }
    const mapField = field instanceof protobuf.MapField ? field : undefined;
    const keyScalar = mapField ? SCALAR_KIND[mapField.keyType] : undefined;
    const packable = kind !== 'message' && kind !== 'string' && kind !== 'bytes';
    const plain: FieldPlan = {
      name: field.name,
      protoName: snakeCase(field.name),
      id: field.id,
      kind,
      signed,
      repeated: field.repeated,
      packed: field.repeated && packable && field.packed,
      skipDefault: !field.hasPresence && kind !== 'message' && !field.required,
      ...(keyScalar && { map: { keyKind: keyScalar[0], keySigned: keyScalar[1] } }),
      ...(sub && { type: sub }),
      ...(enumValues && { enumValues }),
    };
    fields.push(plain);
  }
  plan.fields = fields;
  const byKey = new Map<string, FieldPlan>();
  for (const f of fields) {
    byKey.set(f.name, f);
    byKey.set(f.protoName, f);
  }
  plan.byKey = byKey;
  return plan;
}

const snakeCase = (camel: string): string => camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

// ---- the writer: one contiguous buffer, kept between encodes (it grows to the largest
// resource and stays). A nested message's length goes in front of its body when it closes:
// one byte is reserved, and the rare body of 128 bytes or more is moved up by the extra
// bytes its length needs (a memmove, cheap beside the walk). Memoised bodies are copied in
// with one TypedArray.set. Earlier versions kept a rope of segments and small length
// arrays joined at the end: at a megabyte listener, those allocations and the join were
// most of an edit's encode.
/** Where a nested message's body starts (its one-byte length placeholder just before). */
type Fork = number;

class Writer {
  buf = new Uint8Array(1 << 16);
  pos = 0;

  reset(): void {
    this.pos = 0;
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  varint(value: number): void {
    if (value > 0xffffffff || value < 0) {
      this.bigVarint(BigInt(value));
      return;
    }
    this.ensure(5);
    const buf = this.buf;
    let v = value >>> 0;
    while (v > 127) {
      buf[this.pos++] = (v & 127) | 128;
      v >>>= 7;
    }
    buf[this.pos++] = v;
  }

  bigVarint(value: bigint): void {
    this.ensure(10);
    let v = BigInt.asUintN(64, value);
    while (v > 127n) {
      this.buf[this.pos++] = Number(v & 127n) | 128;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }

  tag(id: number, wire: number): void {
    this.varint(id * 8 + wire);
  }

  bytes(data: Uint8Array): void {
    this.varint(data.length);
    this.raw(data);
  }

  string(text: string): void {
    if (this.template !== undefined) this.templateString(text);
    else this.plainString(text);
  }

  plainString(text: string): void {
    const n = text.length;
    let ascii = n < 128;
    if (ascii) for (let i = 0; i < n; i++) if (text.charCodeAt(i) > 127) { ascii = false; break; }
    if (!ascii) {
      this.bytes(Buffer.from(text, 'utf8'));
      return;
    }
    this.ensure(n + 1);
    const buf = this.buf;
    let pos = this.pos;
    buf[pos++] = n;
    for (let i = 0; i < n; i++) buf[pos++] = text.charCodeAt(i);
    this.pos = pos;
  }

  raw(data: Uint8Array): void {
    const n = data.length;
    this.ensure(n);
    if (n <= 32) {
      const buf = this.buf;
      let pos = this.pos;
      for (let i = 0; i < n; i++) buf[pos++] = data[i]!;
      this.pos = pos;
      return;
    }
    this.buf.set(data, this.pos);
    this.pos += n;
  }

  // ---- template mode (encodingTemplate): strings equal to a slot value are recorded as
  // holes, and every nested message as its length prefix and body, so the bytes can later
  // be split into literal runs, holes and length-prefixed nests that hold a hole.
  template: { slots: readonly string[]; holes: { start: number; end: number; slot: number }[]; nests: { prefix: number; start: number; end: number }[] } | undefined;

  templateString(text: string): void {
    const t = this.template!;
    const slot = t.slots.indexOf(text);
    const start = this.pos;
    this.plainString(text);
    if (slot >= 0) t.holes.push({ start, end: this.pos, slot });
  }

  /** Template mode: what lies at or after `from` moved up by `by` bytes. */
  private shiftTemplate(from: number, by: number): void {
    const t = this.template!;
    for (const h of t.holes) if (h.start >= from) { h.start += by; h.end += by; }
    for (const n of t.nests) if (n.prefix >= from) { n.prefix += by; n.start += by; n.end += by; }
  }

  /** Starts a nested message's body (its tag already written); its length goes in at ldelim. */
  fork(): Fork {
    this.ensure(1);
    this.pos += 1;
    return this.pos;
  }

  /** Ends the body begun at `fork`; returns its length. `dropEmpty`: an empty body loses its one-byte tag too. */
  ldelim(fork: Fork, dropEmpty = false): number {
    const start = fork;
    const length = this.pos - start;
    if (length === 0 && dropEmpty) {
      this.pos = start - 2;
      return 0;
    }
    if (length < 128) {
      this.buf[start - 1] = length;
      if (this.template !== undefined) this.template.nests.push({ prefix: start - 1, start, end: this.pos });
      return length;
    }
    let size = 1;
    for (let v = length; v > 127; v >>>= 7) size++;
    this.ensure(size - 1);
    const buf = this.buf;
    buf.copyWithin(start + size - 1, start, this.pos);
    this.pos += size - 1;
    if (this.template !== undefined) {
      this.shiftTemplate(start, size - 1);
      this.template.nests.push({ prefix: start - 1, start: start + size - 1, end: this.pos });
    }
    let v = length;
    let p = start - 1;
    while (v > 127) {
      buf[p++] = (v & 127) | 128;
      v >>>= 7;
    }
    buf[p] = v;
    return length;
  }

  /** A copy of the bytes from `start` to here; with `room`, a view with that much free space before and after it in a buffer of its own. */
  copyFrom(start: number, room?: Room): Uint8Array {
    const [before, after] = room?.(this.pos - start) ?? [0, 0];
    if (before === 0 && after === 0) return this.buf.slice(start, this.pos);
    const length = this.pos - start;
    const out = new Uint8Array(before + length + after);
    out.set(this.buf.subarray(start, this.pos), before);
    return out.subarray(before, before + length);
  }
}

// One writer per nesting of top-level encodes (fastEncodeProtoJson is not re-entered
// today, but a throw must never leave a half-written buffer to the next call).
const writers: Writer[] = [];
let depth = 0;
function withWriter(run: (w: Writer) => void, room?: Room): Uint8Array {
  const w = (writers[depth] ??= new Writer());
  w.reset();
  depth++;
  try {
    run(w);
    return w.copyFrom(0, room);
  } finally {
    depth--;
    // A writer grown for one huge resource is not kept forever at that size.
    if (w.buf.length > 1 << 26) writers[depth] = new Writer();
  }
}

// ---- where memoised bodies live: views into shared slabs rather than one ArrayBuffer each.
// A cold compile memoises some ten thousand bodies; a slice per body was a backing store,
// its malloc and its sweeping by the GC each time (a third of a cold encode). A slab lives
// while any body in it does; slabs are small so one long-lived body pins little.
const SLAB_SIZE = 64 * 1024;
let slab = new Uint8Array(0);
let slabUsed = 0;

/** A kept copy of `source[start, end)`. */
function keep(source: Uint8Array, start: number, end: number): Uint8Array {
  const body = keepRoom(end - start);
  body.set(source.subarray(start, end));
  return body;
}

/** Room for `n` bytes to be kept, filled by the caller. */
function keepRoom(n: number): Uint8Array {
  if (n > SLAB_SIZE / 8) return new Uint8Array(n);
  if (slabUsed + n > slab.length) {
    slab = new Uint8Array(SLAB_SIZE);
    slabUsed = 0;
  }
  const room = slab.subarray(slabUsed, slabUsed + n);
  slabUsed += n;
  return room;
}

// ---- memo of immutable subtrees: object → its body bytes per message type. Present
// (null until first encoded) means immutable. An object is almost always encoded as one
// type, so the bytes hang in a short chain of entries rather than a Map per object (a cold
// compile memoises some ten thousand).
interface MemoEntry {
  readonly plan: TypePlan;
  readonly body: Uint8Array;
  readonly next: MemoEntry | null;
}
type Memo = MemoEntry | null;
const memo = new WeakMap<object, Memo>();
function memoBody(entry: Memo | undefined, plan: TypePlan): Uint8Array | undefined {
  for (let e = entry; e; e = e.next) if (e.plan === plan) return e.body;
  return undefined;
}
function memoAdd(value: object, entry: Memo | undefined, plan: TypePlan, body: Uint8Array): void {
  memo.set(value, { plan, body, next: entry ?? null });
}

/**
 * Promises that `value` (and everything it holds) is never changed again, so its bytes may
 * be memoised. Returns it. Callers mark only values they build once and share (memoised
 * fragments); marking is cheap, a wrongly marked value would give stale bytes.
 */
export function markImmutable<T extends object>(value: T): T {
  if (!memo.has(value)) memo.set(value, null);
  return value;
}

/** Whether `value` was marked immutable (its encoding may then be kept by whoever encodes it whole). */
export const isImmutable = (value: unknown): boolean => typeof value === 'object' && value !== null && memo.has(value);

/** Per object: 0 not marked immutable, 1 immutable without bytes as a message of `typeUrl`, 2 with them. */
export function memoState(value: object, typeUrl: string): 0 | 1 | 2 {
  const entry = memo.get(value);
  if (entry === undefined) return 0;
  return memoBody(entry, typeByUrl(typeUrl)) === undefined ? 1 : 2;
}

/** Whether the encoder holds `value`'s bytes as a message of `typeUrl`. */
export const hasBytes = (value: object, typeUrl: string): boolean => memoState(value, typeUrl) === 2;

// Paths are for errors only: the walk does not build them (a string per field was a good
// part of the encode); a failure collects them on its way out, innermost first.
class EncodeError extends Error {
  readonly where: string[] = [];
  constructor(readonly detail: string) {
    super(detail);
  }
}
const fail = (message: string): never => {
  throw new EncodeError(message);
};
/** Adds `segment` to the path of an encode error passing through. */
function at(error: unknown, segment: string): unknown {
  if (error instanceof EncodeError) error.where.push(segment);
  return error;
}
/** An encode error as the error callers see, its path from `root`; any other error as it is. */
function located(root: string, error: unknown): unknown {
  return error instanceof EncodeError ? new Error(`${root}${error.where.reverse().join('')}: ${error.detail}`) : error;
}

const ANY = 'google.protobuf.Any';
const WRAPPERS = new Set(['google.protobuf.StringValue', 'google.protobuf.BytesValue', 'google.protobuf.BoolValue', 'google.protobuf.DoubleValue', 'google.protobuf.FloatValue', 'google.protobuf.Int32Value', 'google.protobuf.Int64Value', 'google.protobuf.UInt32Value', 'google.protobuf.UInt64Value']);

// Type URLs → plans: every Any looks its type up, and the protobufjs lookup walks namespaces.
const plansByUrl = new Map<string, TypePlan>();
function typeByUrl(url: string): TypePlan {
  const known = plansByUrl.get(url);
  if (known) return known;
  const plan = lookupTypeByUrl(url);
  plansByUrl.set(url, plan);
  return plan;
}
function lookupTypeByUrl(url: string): TypePlan {
  const type = envoyRoot().lookup(messageNameOf(url));
  if (!(type instanceof protobuf.Type)) return fail(`unknown message type "${url}"`);
  return planOf(type);
}

/** Seconds and nanos of a ProtoJSON Duration ("1.5s", "-0.000000001s"). */
function durationParts(text: unknown): [bigint, number] {
  const m = typeof text === 'string' ? /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(text) : null;
  if (!m) return fail(`not a Duration: ${JSON.stringify(text)}`);
  const sign = m[1] ? -1 : 1;
  const seconds = BigInt(m[2]!) * BigInt(sign);
  const nanos = m[3] ? Number(m[3].padEnd(9, '0')) * sign : 0;
  return [seconds, nanos];
}

/** Well-known types whose ProtoJSON is not their fields: left to the generic encoder. */
const UNSUPPORTED = new Set(['google.protobuf.Struct', 'google.protobuf.Value', 'google.protobuf.ListValue', 'google.protobuf.Timestamp', 'google.protobuf.FieldMask', 'google.protobuf.NullValue']);

// What kind of message a plan is, decided once per plan rather than by name per message.
const enum Special {
  None = 1,
  Any,
  Unsupported,
  Duration,
  Wrapper,
}
/** Computed once per plan: writeMessageBody keeps it in plan.special. */
function specialOf(plan: TypePlan): Special {
  const name = plan.fullName;
  return name === ANY ? Special.Any : UNSUPPORTED.has(name) ? Special.Unsupported : name === 'google.protobuf.Duration' ? Special.Duration : WRAPPERS.has(name) ? Special.Wrapper : Special.None;
}

function writeMessageBody(w: Writer, plan: TypePlan, value: unknown, inAny = false): void {
  const special = plan.special ?? (plan.special = specialOf(plan));
  if (special !== Special.None) writeSpecialBody(w, plan, value, special);
  else writeFieldsOf(w, plan, value, inAny);
}

function writeSpecialBody(w: Writer, plan: TypePlan, value: unknown, special: Special): void {
  if (special === Special.Any) return writeAny(w, value);
  if (special === Special.Unsupported) return fail(`${plan.fullName} is not supported by the fast encoder`);
  if (special === Special.Duration) {
    const [seconds, nanos] = durationParts(value);
    if (seconds !== 0n) {
      w.tag(1, 0);
      w.bigVarint(seconds);
    }
    if (nanos !== 0) {
      w.tag(2, 0);
      w.varint(nanos);
    }
    return;
  }
  if (typeof value !== 'object' || value === null) {
    writeField(w, plan.fields[0]!, value);
    return;
  }
  writeFieldsOf(w, plan, value, false);
}

function writeFieldsOf(w: Writer, plan: TypePlan, value: unknown, inAny: boolean): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail(`expected an object for ${plan.fullName}`);
  const record = value as Record<string, unknown>;
  // Driven by the object's keys, not the type's fields: a message type has up to dozens of
  // fields (HttpConnectionManager more than 40) and the compiler sets a few, so looking
  // every field up by name was most of a cold walk. Fields go out by number, as protobufjs
  // writes them; objects are small, so an insertion sort of the few present is enough.
  // Scratch lists per nesting depth, reused: two fresh arrays per message were a fifth of
  // what a cold encode allocated.
  // (Their lengths are never set back to 0: V8 would give up their backing stores.)
  const depth = scratchDepth++;
  const present = (scratchFields[depth] ??= []);
  const values = (scratchValues[depth] ??= []);
  let count = 0;
  try {
    count = collectAndWrite(w, plan, record, inAny, present, values);
  } finally {
    scratchDepth--;
    // No references kept to the caller's values.
    for (let i = 0; i < count; i++) values[i] = undefined;
  }
}

const scratchFields: FieldPlan[][] = [];
const scratchValues: unknown[][] = [];
let scratchDepth = 0;

/** Collects the record's fields in number order into the scratch lists, writes them; returns how many. */
function collectAndWrite(w: Writer, plan: TypePlan, record: Record<string, unknown>, inAny: boolean, present: FieldPlan[], values: unknown[]): number {
  const byKey = plan.byKey;
  let count = 0;
  for (const key in record) {
    const v = record[key];
    if (v === undefined) continue;
    const field = byKey.get(key);
    if (field === undefined) {
      if (inAny && key === '@type') continue;
      unknownFields(plan, record, inAny);
    }
    let i = count++;
    while (i > 0 && present[i - 1]!.id > field!.id) {
      present[i] = present[i - 1]!;
      values[i] = values[i - 1];
      i--;
    }
    // Both spellings of one field (camelCase and snake_case) are ambiguous: refused.
    if (i > 0 && present[i - 1] === field) fail(`field "${field!.name}" given twice for ${plan.fullName}`);
    present[i] = field!;
    values[i] = v;
  }
  for (let i = 0; i < count; i++) {
    const v = values[i];
    if (v === null) continue;
    const field = present[i]!;
    try {
      writeField(w, field, v);
    } catch (error) {
      throw at(error, `.${field.name}`);
    }
  }
  return count;
}

function unknownFields(plan: TypePlan, record: Record<string, unknown>, inAny: boolean): never {
  const unknown = Object.keys(record).filter((k) => record[k] !== undefined && !plan.byKey.has(k) && !(inAny && k === '@type'));
  return fail(`unknown field(s) ${unknown.map((k) => JSON.stringify(k)).join(', ')} for ${plan.fullName}`);
}

function writeAny(w: Writer, value: unknown): void {
  if (typeof value !== 'object' || value === null) return fail('expected an object for google.protobuf.Any');
  const record = value as Record<string, unknown>;
  const url = record['@type'];
  if (typeof url !== 'string' || url === '') return fail('google.protobuf.Any without "@type"');
  const inner = typeByUrl(url);
  w.tag(1, 2);
  w.string(url);
  // Well-known types carry their JSON form in "value".
  const special = inner.fullName === 'google.protobuf.Duration' || WRAPPERS.has(inner.fullName);
  if (special && Object.keys(record).some((k) => k !== 'value' && k !== '@type')) fail(`unexpected fields beside "value" in ${inner.fullName}`);
  w.tag(2, 2);
  const fork = w.fork();
  try {
    if (special) writeMessageBody(w, inner, record['value']);
    else writeMessageBody(w, inner, record, true);
  } catch (error) {
    throw at(error, `<${inner.fullName}>`);
  }
  // Any.value is a proto3 bytes field: an empty message leaves it out.
  w.ldelim(fork, true);
}

/** Writes the tag of a length-delimited field and starts its body. */
function beginNested(w: Writer, id: number): Fork {
  w.tag(id, 2);
  return w.fork();
}

function writeNestedMessage(w: Writer, id: number, plan: TypePlan, value: unknown): void {
  if (typeof value === 'object' && value !== null && w.template === undefined) {
    const entry = memo.get(value);
    if (entry !== undefined) {
      const cached = memoBody(entry, plan);
      w.tag(id, 2);
      if (cached) {
        w.bytes(cached);
        return;
      }
      // Encoded in place; its body is kept for the next time.
      const start = w.fork();
      writeMessageBody(w, plan, value);
      const body = keep(w.buf, start, w.pos);
      w.ldelim(start);
      memoAdd(value, entry, plan, body);
      return;
    }
  }
  const start = beginNested(w, id);
  writeMessageBody(w, plan, value);
  w.ldelim(start);
}

const WIRE: Record<Kind, number> = { message: 2, string: 2, bytes: 2, enum: 0, bool: 0, varint: 0, sint: 0, double: 1, fixed64: 1, sfixed64: 1, float: 5, fixed32: 5, sfixed32: 5 };

function isDefault(field: FieldPlan, value: unknown): boolean {
  switch (field.kind) {
    case 'string':
    case 'bytes':
      return value === '';
    case 'bool':
      return value === false;
    case 'enum':
      return value === 0 || (typeof value === 'string' && field.enumValues![value] === 0);
    default:
      return value === 0 || value === '0';
  }
}

function writeField(w: Writer, field: FieldPlan, value: unknown): void {
  if (field.map) {
    if (typeof value !== 'object' || value === null) return fail('expected an object (map)');
    const valueField: FieldPlan = { ...field, id: 2, repeated: false, packed: false, skipDefault: false };
    for (const key of Object.keys(value)) {
      try {
        const start = beginNested(w, field.id);
        writeScalar(w, { kind: field.map.keyKind, signed: field.map.keySigned, id: 1 }, key);
        writeSingle(w, valueField, (value as Record<string, unknown>)[key]);
        w.ldelim(start);
      } catch (error) {
        throw at(error, `[${key}]`);
      }
    }
    return;
  }
  if (field.repeated) {
    if (!Array.isArray(value)) return fail('expected an array');
    if (value.length === 0) return;
    let i = 0;
    try {
      if (field.packed) {
        const start = beginNested(w, field.id);
        for (; i < value.length; i++) writeScalarValue(w, field, value[i]);
        w.ldelim(start);
        return;
      }
      for (; i < value.length; i++) writeSingle(w, field, value[i]);
    } catch (error) {
      throw at(error, `[${i}]`);
    }
    return;
  }
  if (field.skipDefault && isDefault(field, value)) return;
  writeSingle(w, field, value);
}

function writeSingle(w: Writer, field: FieldPlan, value: unknown): void {
  if (field.kind === 'message') return writeNestedMessage(w, field.id, field.type!, value);
  writeScalar(w, field, value);
}

function writeScalar(w: Writer, field: Pick<FieldPlan, 'kind' | 'signed' | 'id'> & { enumValues?: Readonly<Record<string, number>> }, value: unknown): void {
  w.tag(field.id, WIRE[field.kind]);
  writeScalarValue(w, field, value);
}

const intOf = (value: unknown): bigint => {
  if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value);
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return BigInt(value);
  return fail(`not an integer: ${JSON.stringify(value)}`);
};

function writeScalarValue(w: Writer, field: Pick<FieldPlan, 'kind' | 'signed'> & { enumValues?: Readonly<Record<string, number>> }, value: unknown): void {
  switch (field.kind) {
    case 'string':
      if (typeof value !== 'string') return fail('expected a string');
      w.string(value);
      return;
    case 'bytes':
      if (typeof value !== 'string') return fail('expected base64 bytes');
      w.bytes(Buffer.from(value, 'base64'));
      return;
    case 'bool':
      if (typeof value !== 'boolean') return fail('expected a boolean');
      w.varint(value ? 1 : 0);
      return;
    case 'enum': {
      const number = typeof value === 'number' ? value : typeof value === 'string' ? field.enumValues![value] : undefined;
      if (number === undefined) return fail(`unknown enum value ${JSON.stringify(value)}`);
      w.varint(number);
      return;
    }
    case 'varint': {
      if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0xffffffff) {
        w.varint(value);
        return;
      }
      w.bigVarint(intOf(value));
      return;
    }
    case 'sint': {
      const v = intOf(value);
      w.bigVarint(v >= 0n ? v << 1n : (-v << 1n) - 1n);
      return;
    }
    case 'double':
    case 'float':
    case 'fixed32':
    case 'sfixed32':
    case 'fixed64':
    case 'sfixed64': {
      const size = field.kind === 'double' || field.kind.endsWith('64') ? 8 : 4;
      w.ensure(size);
      const view = new DataView(w.buf.buffer, w.buf.byteOffset + w.pos, size);
      if (field.kind === 'double') view.setFloat64(0, Number(value), true);
      else if (field.kind === 'float') view.setFloat32(0, Number(value), true);
      else if (size === 8) view.setBigUint64(0, BigInt.asUintN(64, intOf(value)), true);
      else view.setUint32(0, Number(BigInt.asUintN(32, intOf(value))), true);
      w.pos += size;
      return;
    }
    default:
      fail(`cannot encode ${field.kind}`);
  }
}

/**
 * Free bytes wanted before and after an encoding of `length` bytes (or none). The encoding
 * is copied out of the writer once in any case; copied into a larger buffer, a caller can
 * later write what surrounds it (a response's envelope) in place instead of copying it again.
 */
export type Room = (length: number) => readonly [before: number, after: number] | undefined;

/** The bytes of `json` as the message of `typeUrl`; with `room`, a view into a buffer with that room around it. */
export function fastEncodeProtoJson(typeUrl: string, json: unknown, room?: Room): Uint8Array {
  const root = messageNameOf(typeUrl);
  try {
    const plan = typeByUrl(typeUrl);
    return withWriter((w) => writeMessageBody(w, plan, json), room);
  } catch (error) {
    throw located(root, error);
  }
}

// ---- templates: one message encoded once, many times over with other strings in it.
// The hardened listener has a chain per source and kind that differ only in strings derived
// from the source (chain name, stat prefix, route table name). A template is the bytes of
// one such chain split into literal runs, holes (a slot's string, with its length) and
// nested messages holding a hole (their length prefix depends on the strings); filling it
// costs a few copies instead of a walk of the ProtoJSON. Callers check a template against
// the walk before trusting it (compile/chainTemplates.ts).

type TemplateNode = Uint8Array | number | TemplateNode[];

export interface EncodingTemplate {
  readonly typeUrl: string;
  readonly slots: number;
  readonly nodes: readonly TemplateNode[];
}

/**
 * The template of `json` (a message of `typeUrl`) in which every string field equal to
 * `slots[k]` is slot k. Filled with `slots` it gives the bytes of `json`.
 */
export function encodingTemplate(typeUrl: string, json: unknown, slots: readonly string[]): EncodingTemplate {
  if (slots.includes('')) throw new Error('encodingTemplate: an empty string cannot be a slot (proto3 leaves it out)');
  const plan = typeByUrl(typeUrl);
  const w = new Writer();
  const state = { slots, holes: [] as { start: number; end: number; slot: number }[], nests: [] as { prefix: number; start: number; end: number }[] };
  w.template = state;
  try {
    writeMessageBody(w, plan, json);
  } catch (error) {
    throw located(plan.fullName, error);
  }
  const holes = state.holes.sort((a, b) => a.start - b.start);
  // Only nests around a hole vary; the others are literal bytes.
  const nests = state.nests.filter((n) => holes.some((h) => h.start >= n.start && h.end <= n.end)).sort((a, b) => a.prefix - b.prefix);
  const split = (from: number, to: number): TemplateNode[] => {
    const out: TemplateNode[] = [];
    let pos = from;
    for (;;) {
      const hole = holes.find((h) => h.start >= pos && h.end <= to);
      const nest = nests.find((n) => n.prefix >= pos && n.end <= to);
      const next = hole && (!nest || hole.start < nest.prefix) ? hole.start : nest ? nest.prefix : to;
      if (next > pos) out.push(w.buf.slice(pos, next));
      if (next === to) return out;
      if (hole && next === hole.start) {
        out.push(hole.slot);
        pos = hole.end;
      } else {
        out.push(split(nest!.start, nest!.end));
        pos = nest!.end;
      }
    }
  };
  return { typeUrl, slots: slots.length, nodes: split(0, w.pos) };
}

function utf8Length(text: string): number {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 127) return Buffer.byteLength(text, 'utf8');
  return text.length;
}

/** The body's size; each nest's body size pushed to `sizes` in the order the nests are written. */
function templateSize(nodes: readonly TemplateNode[], lengths: readonly number[], sizes: number[]): number {
  let size = 0;
  for (const node of nodes) {
    if (typeof node === 'number') size += varintSize(lengths[node]!) + lengths[node]!;
    else if (node instanceof Uint8Array) size += node.length;
    else {
      const at = sizes.length;
      sizes.push(0);
      const inner = templateSize(node, lengths, sizes);
      sizes[at] = inner;
      size += varintSize(inner) + inner;
    }
  }
  return size;
}

function templateWrite(nodes: readonly TemplateNode[], values: readonly string[], lengths: readonly number[], sizes: readonly number[], cursor: { nest: number }, out: Uint8Array, pos: number): number {
  for (const node of nodes) {
    if (typeof node === 'number') {
      const text = values[node]!;
      pos = writeVarintAt(out, pos, lengths[node]!);
      if (lengths[node] === text.length) for (let i = 0; i < text.length; i++) out[pos++] = text.charCodeAt(i);
      else pos += Buffer.from(out.buffer, out.byteOffset + pos, lengths[node]).write(text, 'utf8');
    } else if (node instanceof Uint8Array) {
      if (node.length <= 32) for (let i = 0; i < node.length; i++) out[pos++] = node[i]!;
      else {
        out.set(node, pos);
        pos += node.length;
      }
    } else {
      pos = writeVarintAt(out, pos, sizes[cursor.nest++]!);
      pos = templateWrite(node, values, lengths, sizes, cursor, out, pos);
    }
  }
  return pos;
}

/** The template's bytes with `values` in its slots (kept like a memoised body). */
export function fillTemplate(template: EncodingTemplate, values: readonly string[]): Uint8Array {
  if (values.length !== template.slots) throw new Error(`fillTemplate: ${values.length} values for ${template.slots} slots`);
  // proto3 leaves an empty string out, tag and all: a hole cannot stand for it.
  if (values.includes('')) throw new Error('fillTemplate: an empty string cannot fill a slot');
  const lengths = values.map(utf8Length);
  const sizes: number[] = [];
  const size = templateSize(template.nodes, lengths, sizes);
  const out = keepRoom(size);
  const end = templateWrite(template.nodes, values, lengths, sizes, { nest: 0 }, out, 0);
  if (end !== size) throw new Error(`fillTemplate: wrote ${end} bytes of ${size}`);
  return out;
}

/**
 * Marks `value` immutable with `body` as its bytes as a message of `typeUrl` (from a filled
 * template that the caller checked), so the encoder copies them instead of walking it.
 */
export function primeImmutable<T extends object>(value: T, typeUrl: string, body: Uint8Array): T {
  memoAdd(value, memo.get(value), typeByUrl(typeUrl), body);
  return value;
}

/** The bytes `value` would be encoded to as a message of `typeUrl` (no memo read or written). */
export function walkEncode(typeUrl: string, json: unknown): Uint8Array {
  const plan = typeByUrl(typeUrl);
  const w = new Writer();
  w.template = { slots: [], holes: [], nests: [] };
  try {
    writeMessageBody(w, plan, json);
  } catch (error) {
    throw located(plan.fullName, error);
  }
  return w.buf.slice(0, w.pos);
}
