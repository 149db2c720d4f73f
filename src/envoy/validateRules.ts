// Envoy's protoc-gen-validate (PGV) rules, checked on a message of Envoy's protos.
//
// Envoy runs the PGV-generated Validate() on every resource it accepts and on
// every typed config when an extension's factory unpacks it
// (MessageUtil::validate / anyConvertAndValidate in source/common/protobuf/utility.h),
// and NACKs the whole update when one fails. The rules live in the protos as
// `(validate.rules)` field options, `(validate.required)` oneof options and
// `(validate.disabled)`/`(validate.ignored)` message options; protobufjs keeps
// them in `parsedOptions`, so they are read from the same reflection that
// encodes our resources (src/envoy/protos.ts) and nothing is generated.
//
// Semantics follow PGV's C++/Go templates (envoyproxy/protoc-gen-validate,
// templates/cc and templates/goshared): proto3 scalars are checked with their
// value (the zero value when unset); a member of a oneof, a proto3 `optional`
// and a message field are checked only when set, except for `required`;
// messages are validated recursively unless `message.skip`; `ignore_empty`
// skips the rules of a zero/empty value. Unlike PGV (which cannot see inside an
// Any), the walk continues into Any values, as Envoy does when it unpacks them.
// Envoy's own duration check (MessageUtil::validateDurationFields: no negative
// duration, at most 315,576,000,000 s) is applied to every Duration as well.
import { isIPv4, isIPv6 } from 'node:net';
import protobuf from 'protobufjs';
import { encodeProtoJson, type ProtoJson } from './codec.js';
import { envoyRoot } from './protos.js';
import { messageNameOf } from './typeUrls.js';

/** One broken rule: where (a ProtoJSON field path), which rule, and what is wrong. */
export interface RuleViolation {
  /** e.g. `envoy.config.listener.v3.Listener.filterChains[0].filters[0].typedConfig<envoy...TcpProxy>.statPrefix` */
  path: string;
  /** e.g. `string.min_len`, `oneof.required`, `envoy.duration` */
  rule: string;
  message: string;
}

/** Thrown by assertValid: all violations of one resource, each line naming its field. */
export class RuleViolationError extends Error {
  constructor(readonly violations: RuleViolation[]) {
    super(violations.map(formatViolation).join('\n'));
    this.name = 'RuleViolationError';
  }
}

export const formatViolation = (v: RuleViolation): string => `${v.path}: ${v.message} (${v.rule})`;

/**
 * The rules this validator knows, by kind. Any other rule met in a proto is reported
 * as a violation `unsupported` (never silently passed); test/envoy/validateRules.test.ts
 * checks that the loaded closure of Envoy's protos uses none.
 */
export const SUPPORTED_RULES: Readonly<Record<string, readonly string[]>> = {
  numeric: ['const', 'lt', 'lte', 'gt', 'gte', 'in', 'not_in', 'ignore_empty'],
  bool: ['const'],
  string: [
    'const', 'len', 'min_len', 'max_len', 'len_bytes', 'min_bytes', 'max_bytes', 'pattern', 'prefix', 'suffix',
    'contains', 'not_contains', 'in', 'not_in', 'email', 'hostname', 'ip', 'ipv4', 'ipv6', 'uri', 'uri_ref',
    'address', 'uuid', 'well_known_regex', 'strict', 'ignore_empty',
  ],
  bytes: ['const', 'len', 'min_len', 'max_len', 'pattern', 'prefix', 'suffix', 'contains', 'in', 'not_in', 'ip', 'ipv4', 'ipv6', 'ignore_empty'],
  enum: ['const', 'defined_only', 'in', 'not_in'],
  message: ['skip', 'required'],
  repeated: ['min_items', 'max_items', 'unique', 'items', 'ignore_empty'],
  map: ['min_pairs', 'max_pairs', 'no_sparse', 'keys', 'values', 'ignore_empty'],
  any: ['required', 'in', 'not_in'],
  duration: ['required', 'const', 'lt', 'lte', 'gt', 'gte', 'in', 'not_in'],
  timestamp: ['required', 'const', 'lt', 'lte', 'gt', 'gte', 'lt_now', 'gt_now', 'within'],
};

const NUMERIC_KINDS = ['float', 'double', 'int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'fixed32', 'fixed64', 'sfixed32', 'sfixed64'];
const INTEGER_KINDS = new Set(NUMERIC_KINDS.filter((k) => k !== 'float' && k !== 'double'));
const kindRules = (kind: string): readonly string[] | undefined =>
  NUMERIC_KINDS.includes(kind) ? SUPPORTED_RULES.numeric : SUPPORTED_RULES[kind];

/** The rule kinds that apply to the value inside a google.protobuf wrapper message. */
const WRAPPER_KIND: Readonly<Record<string, string>> = {
  '.google.protobuf.DoubleValue': 'double', '.google.protobuf.FloatValue': 'float',
  '.google.protobuf.Int64Value': 'int64', '.google.protobuf.UInt64Value': 'uint64',
  '.google.protobuf.Int32Value': 'int32', '.google.protobuf.UInt32Value': 'uint32',
  '.google.protobuf.BoolValue': 'bool', '.google.protobuf.StringValue': 'string', '.google.protobuf.BytesValue': 'bytes',
};

type Rules = Record<string, unknown>;

/** Validates a resource given as ProtoJSON (encoded strictly first) or as Envoy's wire bytes. */
export function validateResource(typeUrl: string, resource: ProtoJson | Uint8Array): RuleViolation[] {
  const bytes = resource instanceof Uint8Array ? resource : encodeProtoJson(typeUrl, resource);
  const type = typeOf(typeUrl);
  return validateMessage(type, type.decode(bytes), messageNameOf(typeUrl));
}

/** Throws a RuleViolationError naming every broken rule of the resource. */
export function assertValid(typeUrl: string, resource: ProtoJson | Uint8Array): void {
  const violations = validateResource(typeUrl, resource);
  if (violations.length > 0) throw new RuleViolationError(violations);
}

/** Validates a decoded protobufjs message of `type`; `path` prefixes every violation's path. */
export function validateMessage(type: protobuf.Type, message: protobuf.Message, path: string = type.fullName.slice(1)): RuleViolation[] {
  const out: RuleViolation[] = [];
  walkMessage(type, message as unknown as Record<string, unknown>, path, out);
  return out;
}

function typeOf(typeUrl: string): protobuf.Type {
  const type = envoyRoot().lookup(messageNameOf(typeUrl));
  if (!(type instanceof protobuf.Type)) throw new Error(`unknown message type "${typeUrl}"`);
  return type;
}

// ---------------------------------------------------------------------------
// Reading the options

/** `parsedOptions` is a list of one-key objects; one option may be written in several parts. */
function optionValue(parsed: Record<string, unknown>[] | null | undefined, name: string): unknown {
  let merged: unknown;
  for (const entry of parsed ?? []) {
    if (!Object.prototype.hasOwnProperty.call(entry, name)) continue;
    merged = merged === undefined ? entry[name] : deepMerge(merged, entry[name]);
  }
  return merged;
}

function deepMerge(a: unknown, b: unknown): unknown {
  if (!isPlainObject(a) || !isPlainObject(b)) return b;
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = k in out ? deepMerge(out[k], v) : v;
  return out;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const fieldRulesCache = new WeakMap<protobuf.Field, Rules | null>();
function fieldRules(field: protobuf.Field): Rules | null {
  let rules = fieldRulesCache.get(field);
  if (rules === undefined) {
    const value = optionValue(field.parsedOptions as Record<string, unknown>[] | null, '(validate.rules)');
    rules = isPlainObject(value) ? value : null;
    fieldRulesCache.set(field, rules);
  }
  return rules;
}

const messageSkipsRules = (type: protobuf.Type): boolean => {
  const parsed = type.parsedOptions as Record<string, unknown>[] | null | undefined;
  return optionValue(parsed, '(validate.disabled)') === true || optionValue(parsed, '(validate.ignored)') === true;
};

const oneofRequired = (oneof: protobuf.OneOf): boolean =>
  optionValue(oneof.parsedOptions as Record<string, unknown>[] | null | undefined, '(validate.required)') === true;

// ---------------------------------------------------------------------------
// The walk

const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

function walkMessage(type: protobuf.Type, message: Record<string, unknown>, path: string, out: RuleViolation[]): void {
  if (messageSkipsRules(type)) return;
  for (const oneof of type.oneofsArray) {
    if (!oneofRequired(oneof)) continue;
    const set = oneof.fieldsArray.some((f) => hasOwn(message, f.name) && message[f.name] != null);
    if (!set) {
      out.push({ path: `${path}.${oneof.name}`, rule: 'oneof.required', message: `one of ${oneof.fieldsArray.map((f) => f.name).join(', ')} must be set` });
    }
  }
  for (const field of type.fieldsArray) {
    field.resolve();
    const fieldPath = `${path}.${field.name}`;
    const rules = fieldRules(field);
    const value = message[field.name];
    if (field.map) {
      checkMap(field, rules, (value ?? {}) as Record<string, unknown>, fieldPath, out);
    } else if (field.repeated) {
      checkRepeated(field, rules, (value ?? []) as unknown[], fieldPath, out);
    } else {
      // A oneof member (real or proto3 `optional`) has rules only when it is the one set.
      const present = hasOwn(message, field.name) && value != null;
      if (field.partOf && !present) continue;
      checkSingle(field, field.resolvedType, rules, present ? value : field.resolvedType instanceof protobuf.Type ? undefined : value, present, fieldPath, out);
    }
  }
}

/** A single value (a field, a repeated item, a map key or value) against one FieldRules. */
function checkSingle(
  field: protobuf.Field,
  resolved: protobuf.Type | protobuf.Enum | null,
  rules: Rules | null,
  value: unknown,
  present: boolean,
  path: string,
  out: RuleViolation[],
): void {
  if (resolved instanceof protobuf.Type) {
    checkMessageValue(resolved, rules, value, present, path, out);
    return;
  }
  if (!rules) return;
  const kinds = Object.keys(rules).filter((k) => k !== 'message');
  for (const kind of kinds) {
    const r = rules[kind] as Rules;
    if (!checkSupported(kind, r, path, out)) continue;
    if (resolved instanceof protobuf.Enum) {
      if (kind === 'enum') checkEnum(resolved, r, Number(value ?? 0), path, out);
      else mismatch(kind, `enum ${resolved.name}`, path, out);
    } else if (kind !== scalarKind(field.type)) {
      mismatch(kind, field.type, path, out);
    } else {
      checkScalar(kind, r, value, path, out);
    }
  }
}

function checkMessageValue(type: protobuf.Type, rules: Rules | null, value: unknown, present: boolean, path: string, out: RuleViolation[]): void {
  const messageRules = (rules?.message ?? {}) as Rules;
  if (rules?.message) checkSupported('message', messageRules, path, out);
  const wkt = type.fullName;
  const required = messageRules.required === true
    || (wkt === '.google.protobuf.Duration' && (rules?.duration as Rules | undefined)?.required === true)
    || (wkt === '.google.protobuf.Timestamp' && (rules?.timestamp as Rules | undefined)?.required === true)
    || (wkt === '.google.protobuf.Any' && (rules?.any as Rules | undefined)?.required === true);
  if (!present) {
    if (required) out.push({ path, rule: ruleNameForRequired(wkt, messageRules), message: 'is required' });
    return;
  }
  const record = value as Record<string, unknown>;
  for (const kind of Object.keys(rules ?? {})) {
    if (kind === 'message') continue;
    const r = (rules as Rules)[kind] as Rules;
    if (!checkSupported(kind, r, path, out)) continue;
    const wrapped = WRAPPER_KIND[wkt];
    if (wrapped !== undefined && kind === wrapped) {
      checkScalar(kind, r, record.value ?? zeroOf(kind), path, out);
    } else if (kind === 'duration' && wkt === '.google.protobuf.Duration') {
      checkDuration(r, record, path, out);
    } else if (kind === 'timestamp' && wkt === '.google.protobuf.Timestamp') {
      checkTimestamp(r, record, path, out);
    } else if (kind === 'any' && wkt === '.google.protobuf.Any') {
      checkAnyRules(r, anyTypeUrl(record), path, out);
    } else {
      mismatch(kind, wkt.slice(1), path, out);
    }
  }
  if (wkt === '.google.protobuf.Duration') checkEnvoyDuration(record, path, out);
  if (messageRules.skip === true) return;
  if (wkt === '.google.protobuf.Any') {
    walkAny(record, path, out);
    return;
  }
  walkMessage(type, record, path, out);
}

const ruleNameForRequired = (wkt: string, messageRules: Rules): string =>
  messageRules.required === true ? 'message.required'
    : wkt === '.google.protobuf.Duration' ? 'duration.required'
      : wkt === '.google.protobuf.Timestamp' ? 'timestamp.required' : 'any.required';

function anyTypeUrl(any: Record<string, unknown>): string {
  // protobufjs's bundled Any keeps the proto field name (type_url) whatever keepCase says.
  return String(any.typeUrl ?? any.type_url ?? '');
}

/** Envoy unpacks an Any with its factory's type and validates what it finds (anyConvertAndValidate). */
function walkAny(any: Record<string, unknown>, path: string, out: RuleViolation[]): void {
  const url = anyTypeUrl(any);
  const name = messageNameOf(url);
  const inner = url === '' ? null : envoyRoot().lookup(name);
  if (!(inner instanceof protobuf.Type)) {
    out.push({ path, rule: 'any.type', message: url === '' ? 'Any without a type URL' : `unknown type "${url}"` });
    return;
  }
  const bytes = (any.value ?? new Uint8Array()) as Uint8Array;
  walkMessage(inner, inner.decode(bytes) as unknown as Record<string, unknown>, `${path}<${name}>`, out);
}

function checkRepeated(field: protobuf.Field, rules: Rules | null, items: unknown[], path: string, out: RuleViolation[]): void {
  const r = (rules?.repeated ?? null) as Rules | null;
  let itemRules: Rules | null = null;
  if (rules) {
    for (const kind of Object.keys(rules)) {
      if (kind !== 'repeated') mismatch(kind, 'repeated field', path, out);
    }
  }
  if (r && checkSupported('repeated', r, path, out) && !(r.ignore_empty === true && items.length === 0)) {
    const min = toBig(r.min_items);
    const max = toBig(r.max_items);
    if (min !== undefined && BigInt(items.length) < min) out.push({ path, rule: 'repeated.min_items', message: `must have at least ${min} item(s), has ${items.length}` });
    if (max !== undefined && BigInt(items.length) > max) out.push({ path, rule: 'repeated.max_items', message: `must have at most ${max} item(s), has ${items.length}` });
    if (r.unique === true) {
      const seen = new Map<string, number>();
      items.forEach((item, i) => {
        const key = canonical(item);
        const first = seen.get(key);
        if (first !== undefined) out.push({ path: `${path}[${i}]`, rule: 'repeated.unique', message: `repeats item ${first}` });
        else seen.set(key, i);
      });
    }
    itemRules = isPlainObject(r.items) ? r.items : null;
  }
  items.forEach((item, i) => checkSingle(field, field.resolvedType, itemRules, item, item != null, `${path}[${i}]`, out));
}

function checkMap(field: protobuf.Field, rules: Rules | null, entries: Record<string, unknown>, path: string, out: RuleViolation[]): void {
  const r = (rules?.map ?? null) as Rules | null;
  const keys = Object.keys(entries);
  let keyRules: Rules | null = null;
  let valueRules: Rules | null = null;
  if (rules) {
    for (const kind of Object.keys(rules)) {
      if (kind !== 'map') mismatch(kind, 'map field', path, out);
    }
  }
  if (r && checkSupported('map', r, path, out) && !(r.ignore_empty === true && keys.length === 0)) {
    const min = toBig(r.min_pairs);
    const max = toBig(r.max_pairs);
    if (min !== undefined && BigInt(keys.length) < min) out.push({ path, rule: 'map.min_pairs', message: `must have at least ${min} entr(ies), has ${keys.length}` });
    if (max !== undefined && BigInt(keys.length) > max) out.push({ path, rule: 'map.max_pairs', message: `must have at most ${max} entr(ies), has ${keys.length}` });
    if (r.no_sparse === true) {
      for (const k of keys) if (entries[k] == null) out.push({ path: `${path}[${k}]`, rule: 'map.no_sparse', message: 'must not be unset' });
    }
    keyRules = isPlainObject(r.keys) ? r.keys : null;
    valueRules = isPlainObject(r.values) ? r.values : null;
  }
  const keyType = (field as unknown as protobuf.MapField).keyType;
  const keyField = new protobuf.Field(`${field.name}_key`, 1, keyType);
  for (const k of keys) {
    const keyValue = keyType === 'bool' ? k === 'true' : INTEGER_KINDS.has(keyType) ? BigInt(k) : k;
    checkSingle(keyField, null, keyRules, keyValue, true, `${path}[${k}]<key>`, out);
    checkSingle(field, field.resolvedType, valueRules, entries[k], entries[k] != null, `${path}[${k}]`, out);
  }
}

// ---------------------------------------------------------------------------
// Rule kinds

function checkSupported(kind: string, rules: Rules, path: string, out: RuleViolation[]): boolean {
  const known = kindRules(kind);
  if (!known) {
    out.push({ path, rule: `${kind}`, message: `rule kind "${kind}" is not supported by this validator` });
    return false;
  }
  let ok = true;
  for (const name of Object.keys(rules)) {
    if (!known.includes(name)) {
      out.push({ path, rule: `${kind}.${name}`, message: `rule "${kind}.${name}" is not supported by this validator` });
      ok = false;
    }
  }
  return ok;
}

const mismatch = (kind: string, what: string, path: string, out: RuleViolation[]): void => {
  out.push({ path, rule: kind, message: `"${kind}" rules on a ${what} (the proto's rules do not fit its type)` });
};

/** The PGV rule kind of a protobufjs scalar type name (they are spelled the same). */
const scalarKind = (type: string): string => type;

const zeroOf = (kind: string): unknown => (kind === 'string' ? '' : kind === 'bytes' ? new Uint8Array() : kind === 'bool' ? false : 0);

function checkScalar(kind: string, r: Rules, value: unknown, path: string, out: RuleViolation[]): void {
  if (kind === 'bool') {
    if (r.const !== undefined && Boolean(value) !== r.const) out.push({ path, rule: 'bool.const', message: `must be ${String(r.const)}` });
  } else if (kind === 'string') {
    checkString(r, typeof value === 'string' ? value : '', path, out);
  } else if (kind === 'bytes') {
    checkBytes(r, value instanceof Uint8Array ? value : new Uint8Array(), path, out);
  } else {
    checkNumber(kind, r, value, path, out);
  }
}

// Numbers: integers compared as bigint (64-bit values stay exact), floats as numbers.
type Num = bigint | number;

function toBig(v: unknown): bigint | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return BigInt(Math.trunc(v));
  if (typeof v === 'string') return BigInt(v);
  if (isPlainObject(v) && typeof v.low === 'number' && typeof v.high === 'number') {
    const raw = (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
    return v.unsigned === true ? BigInt.asUintN(64, raw) : BigInt.asIntN(64, raw);
  }
  return BigInt(String(v));
}

const toNum = (kind: string, v: unknown): Num => (INTEGER_KINDS.has(kind) ? (toBig(v) ?? 0n) : Number(v ?? 0));
const cmp = (a: Num, b: Num): number => (a < b ? -1 : a > b ? 1 : 0);

function checkNumber(kind: string, r: Rules, raw: unknown, path: string, out: RuleViolation[]): void {
  const value = toNum(kind, raw);
  if (r.ignore_empty === true && cmp(value, toNum(kind, 0)) === 0) return;
  checkOrdered(kind, r, value, (v) => toNum(kind, v), String, path, out);
}

/**
 * const/in/not_in and the range rules shared by numbers, durations and timestamps. As in
 * PGV, a lower bound above the upper one means "outside the range" (gt: 10, lt: 5 → <5 or >10).
 */
function checkOrdered<T extends Num>(
  kind: string, r: Rules, value: T, conv: (v: unknown) => T, show: (v: T) => string, path: string, out: RuleViolation[],
): void {
  if (r.const !== undefined && cmp(value, conv(r.const)) !== 0) out.push({ path, rule: `${kind}.const`, message: `must be ${show(conv(r.const))}` });
  const lower = r.gt !== undefined ? { v: conv(r.gt), incl: false, name: 'gt' } : r.gte !== undefined ? { v: conv(r.gte), incl: true, name: 'gte' } : undefined;
  const upper = r.lt !== undefined ? { v: conv(r.lt), incl: false, name: 'lt' } : r.lte !== undefined ? { v: conv(r.lte), incl: true, name: 'lte' } : undefined;
  const aboveLower = lower && (lower.incl ? cmp(value, lower.v) >= 0 : cmp(value, lower.v) > 0);
  const belowUpper = upper && (upper.incl ? cmp(value, upper.v) <= 0 : cmp(value, upper.v) < 0);
  const lowerText = lower && `${lower.incl ? '≥' : '>'} ${show(lower.v)}`;
  const upperText = upper && `${upper.incl ? '≤' : '<'} ${show(upper.v)}`;
  if (lower && upper && cmp(lower.v, upper.v) > 0) {
    if (!aboveLower && !belowUpper) out.push({ path, rule: `${kind}.${lower.name}`, message: `must be ${upperText} or ${lowerText}, is ${show(value)}` });
  } else if (lower && upper) {
    if (!aboveLower || !belowUpper) out.push({ path, rule: `${kind}.${aboveLower ? upper.name : lower.name}`, message: `must be ${lowerText} and ${upperText}, is ${show(value)}` });
  } else if (lower && !aboveLower) {
    out.push({ path, rule: `${kind}.${lower.name}`, message: `must be ${lowerText}, is ${show(value)}` });
  } else if (upper && !belowUpper) {
    out.push({ path, rule: `${kind}.${upper.name}`, message: `must be ${upperText}, is ${show(value)}` });
  }
  if (Array.isArray(r.in) && !r.in.some((v) => cmp(value, conv(v)) === 0)) out.push({ path, rule: `${kind}.in`, message: `must be one of ${r.in.map((v) => show(conv(v))).join(', ')}, is ${show(value)}` });
  if (Array.isArray(r.not_in) && r.not_in.some((v) => cmp(value, conv(v)) === 0)) out.push({ path, rule: `${kind}.not_in`, message: `must not be ${show(value)}` });
}

// Strings. Lengths in characters count Unicode code points, in bytes UTF-8 bytes (PGV).
// PGV's pattern has the class "+-." (the range '+' to '.', which takes ',' too); kept as PGV has it.
const HEADER_NAME_PGV = /^:?[0-9a-zA-Z!#$%&'*+-.^_|~`]+$/;
const HEADER_VALUE_STRICT = /^[^\u0000-\u0008\u000A-\u001F\u007F]*$/;
const HEADER_LOOSE = /^[^\u0000\u000A\u000D]*$/;

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const patternCache = new Map<string, RegExp>();

function checkString(r: Rules, value: string, path: string, out: RuleViolation[]): void {
  if (r.ignore_empty === true && value === '') return;
  const chars = [...value].length;
  const bytes = Buffer.byteLength(value, 'utf8');
  const fail = (rule: string, message: string): void => { out.push({ path, rule: `string.${rule}`, message }); };
  const show = JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (r.const !== undefined && value !== r.const) fail('const', `must be ${JSON.stringify(r.const)}, is ${show}`);
  const n = (k: string): bigint | undefined => toBig(r[k]);
  if (n('len') !== undefined && BigInt(chars) !== n('len')) fail('len', `must be ${n('len')} character(s) long, is ${chars}`);
  if (n('min_len') !== undefined && BigInt(chars) < n('min_len')!) fail('min_len', `must be at least ${n('min_len')} character(s) long, is ${chars}${chars === 0 ? ' (empty)' : ''}`);
  if (n('max_len') !== undefined && BigInt(chars) > n('max_len')!) fail('max_len', `must be at most ${n('max_len')} character(s) long, is ${chars}`);
  if (n('len_bytes') !== undefined && BigInt(bytes) !== n('len_bytes')) fail('len_bytes', `must be ${n('len_bytes')} byte(s) long, is ${bytes}`);
  if (n('min_bytes') !== undefined && BigInt(bytes) < n('min_bytes')!) fail('min_bytes', `must be at least ${n('min_bytes')} byte(s) long, is ${bytes}`);
  if (n('max_bytes') !== undefined && BigInt(bytes) > n('max_bytes')!) fail('max_bytes', `must be at most ${n('max_bytes')} byte(s) long, is ${bytes}`);
  if (typeof r.pattern === 'string' && !compilePattern(r.pattern).test(value)) fail('pattern', `must match /${r.pattern}/, is ${show}`);
  if (typeof r.prefix === 'string' && !value.startsWith(r.prefix)) fail('prefix', `must start with ${JSON.stringify(r.prefix)}, is ${show}`);
  if (typeof r.suffix === 'string' && !value.endsWith(r.suffix)) fail('suffix', `must end with ${JSON.stringify(r.suffix)}, is ${show}`);
  if (typeof r.contains === 'string' && !value.includes(r.contains)) fail('contains', `must contain ${JSON.stringify(r.contains)}, is ${show}`);
  if (typeof r.not_contains === 'string' && value.includes(r.not_contains)) fail('not_contains', `must not contain ${JSON.stringify(r.not_contains)}, is ${show}`);
  if (Array.isArray(r.in) && !r.in.includes(value)) fail('in', `must be one of ${r.in.map((v) => JSON.stringify(v)).join(', ')}, is ${show}`);
  if (Array.isArray(r.not_in) && r.not_in.includes(value)) fail('not_in', `must not be ${show}`);
  if (r.email === true && !isEmail(value)) fail('email', `must be an email address, is ${show}`);
  if (r.hostname === true && !isHostname(value)) fail('hostname', `must be a hostname, is ${show}`);
  if (r.ip === true && !(isIPv4(value) || isIPv6(value))) fail('ip', `must be an IP address, is ${show}`);
  if (r.ipv4 === true && !isIPv4(value)) fail('ipv4', `must be an IPv4 address, is ${show}`);
  if (r.ipv6 === true && !isIPv6(value)) fail('ipv6', `must be an IPv6 address, is ${show}`);
  if (r.address === true && !(isHostname(value) || isIPv4(value) || isIPv6(value))) fail('address', `must be a hostname or an IP address, is ${show}`);
  if (r.uri === true && !isUri(value)) fail('uri', `must be an absolute URI, is ${show}`);
  if (r.uri_ref === true && !isUriRef(value)) fail('uri_ref', `must be a URI reference, is ${show}`);
  if (r.uuid === true && !UUID.test(value)) fail('uuid', `must be a UUID, is ${show}`);
  if (r.well_known_regex !== undefined) {
    const which = r.well_known_regex === 1 || r.well_known_regex === 'HTTP_HEADER_NAME' ? 'HTTP_HEADER_NAME'
      : r.well_known_regex === 2 || r.well_known_regex === 'HTTP_HEADER_VALUE' ? 'HTTP_HEADER_VALUE' : undefined;
    const strict = r.strict !== false; // PGV: strict defaults to true
    const re = which === 'HTTP_HEADER_NAME' ? (strict ? HEADER_NAME_PGV : HEADER_LOOSE)
      : which === 'HTTP_HEADER_VALUE' ? (strict ? HEADER_VALUE_STRICT : HEADER_LOOSE) : undefined;
    if (re && !re.test(value)) fail('well_known_regex', `must be a valid ${which === 'HTTP_HEADER_NAME' ? 'HTTP header name' : 'HTTP header value'}${strict ? '' : ' (no NUL, CR or LF)'}, is ${show}`);
  }
}

/** PGV patterns are RE2; the ones Envoy uses are also valid JavaScript (u flag: code points). */
function compilePattern(pattern: string): RegExp {
  let re = patternCache.get(pattern);
  if (!re) {
    re = new RegExp(pattern, 'u');
    patternCache.set(pattern, re);
  }
  return re;
}

function isHostname(value: string): boolean {
  const host = value.endsWith('.') ? value.slice(0, -1) : value;
  if (host.length === 0 || host.length > 253) return false;
  return host.split('.').every((label) => /^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/.test(label));
}

function isEmail(value: string): boolean {
  const bare = /<(.*)>$/.exec(value)?.[1] ?? value;
  const at = bare.lastIndexOf('@');
  if (at <= 0 || bare.length > 254 || at > 64) return false;
  return isHostname(bare.slice(at + 1));
}

function isUri(value: string): boolean {
  if (!/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(value)) return false;
  try { new URL(value); return true; } catch { return false; }
}

function isUriRef(value: string): boolean {
  try { new URL(value, 'http://base.invalid/'); return true; } catch { return false; }
}

function checkBytes(r: Rules, value: Uint8Array, path: string, out: RuleViolation[]): void {
  if (r.ignore_empty === true && value.length === 0) return;
  const fail = (rule: string, message: string): void => { out.push({ path, rule: `bytes.${rule}`, message }); };
  const buf = Buffer.from(value);
  const asBuf = (v: unknown): Buffer => (typeof v === 'string' ? Buffer.from(v, 'latin1') : Buffer.from(v as Uint8Array));
  const n = (k: string): bigint | undefined => toBig(r[k]);
  if (r.const !== undefined && !buf.equals(asBuf(r.const))) fail('const', 'must equal the constant');
  if (n('len') !== undefined && BigInt(buf.length) !== n('len')) fail('len', `must be ${n('len')} byte(s) long, is ${buf.length}`);
  if (n('min_len') !== undefined && BigInt(buf.length) < n('min_len')!) fail('min_len', `must be at least ${n('min_len')} byte(s) long, is ${buf.length}`);
  if (n('max_len') !== undefined && BigInt(buf.length) > n('max_len')!) fail('max_len', `must be at most ${n('max_len')} byte(s) long, is ${buf.length}`);
  if (typeof r.pattern === 'string' && !compilePattern(r.pattern).test(buf.toString('latin1'))) fail('pattern', `must match /${r.pattern}/`);
  if (r.prefix !== undefined && !buf.subarray(0, asBuf(r.prefix).length).equals(asBuf(r.prefix))) fail('prefix', 'must start with the prefix');
  if (r.suffix !== undefined && !(buf.length >= asBuf(r.suffix).length && buf.subarray(buf.length - asBuf(r.suffix).length).equals(asBuf(r.suffix)))) fail('suffix', 'must end with the suffix');
  if (r.contains !== undefined && !buf.includes(asBuf(r.contains))) fail('contains', 'must contain the given bytes');
  if (Array.isArray(r.in) && !r.in.some((v) => buf.equals(asBuf(v)))) fail('in', 'must be one of the listed values');
  if (Array.isArray(r.not_in) && r.not_in.some((v) => buf.equals(asBuf(v)))) fail('not_in', 'must not be one of the listed values');
  if (r.ip === true && buf.length !== 4 && buf.length !== 16) fail('ip', `must be 4 or 16 bytes (an IP address), is ${buf.length}`);
  if (r.ipv4 === true && buf.length !== 4) fail('ipv4', `must be 4 bytes (an IPv4 address), is ${buf.length}`);
  if (r.ipv6 === true && buf.length !== 16) fail('ipv6', `must be 16 bytes (an IPv6 address), is ${buf.length}`);
}

function checkEnum(type: protobuf.Enum, r: Rules, value: number, path: string, out: RuleViolation[]): void {
  const nameOf = (v: number): string => type.valuesById[v] ?? String(v);
  const number = (v: unknown): number => (typeof v === 'string' && v in type.values ? type.values[v]! : Number(v));
  if (r.const !== undefined && value !== number(r.const)) out.push({ path, rule: 'enum.const', message: `must be ${nameOf(number(r.const))}, is ${nameOf(value)}` });
  if (r.defined_only === true && type.valuesById[value] === undefined) out.push({ path, rule: 'enum.defined_only', message: `${value} is not a value of ${type.fullName.slice(1)}` });
  if (Array.isArray(r.in) && !r.in.map(number).includes(value)) out.push({ path, rule: 'enum.in', message: `must be one of ${r.in.map((v) => nameOf(number(v))).join(', ')}, is ${nameOf(value)}` });
  if (Array.isArray(r.not_in) && r.not_in.map(number).includes(value)) out.push({ path, rule: 'enum.not_in', message: `must not be ${nameOf(value)}` });
}

function checkAnyRules(r: Rules, typeUrl: string, path: string, out: RuleViolation[]): void {
  if (Array.isArray(r.in) && !r.in.includes(typeUrl)) out.push({ path, rule: 'any.in', message: `type must be one of ${r.in.join(', ')}, is ${typeUrl}` });
  if (Array.isArray(r.not_in) && r.not_in.includes(typeUrl)) out.push({ path, rule: 'any.not_in', message: `type must not be ${typeUrl}` });
}

// Durations and timestamps, compared as whole nanoseconds.
const NANOS = 1_000_000_000n;
const nanosOf = (d: unknown): bigint => {
  const o = (isPlainObject(d) ? d : {}) as Record<string, unknown>;
  return (toBig(o.seconds) ?? 0n) * NANOS + (toBig(o.nanos) ?? 0n);
};
const showDuration = (n: bigint): string => {
  const s = n / NANOS;
  const frac = (n < 0n ? -n : n) % NANOS;
  return frac === 0n ? `${s}s` : `${n < 0n && s === 0n ? '-' : ''}${s}.${frac.toString().padStart(9, '0').replace(/0+$/, '')}s`;
};

function checkDuration(r: Rules, value: Record<string, unknown>, path: string, out: RuleViolation[]): void {
  const { required: _required, ...ordered } = r;
  checkOrdered('duration', ordered, nanosOf(value), nanosOf, showDuration, path, out);
}

function checkTimestamp(r: Rules, value: Record<string, unknown>, path: string, out: RuleViolation[]): void {
  const { required: _required, lt_now, gt_now, within, ...ordered } = r;
  const at = nanosOf(value);
  const show = (n: bigint): string => new Date(Number(n / 1_000_000n)).toISOString();
  checkOrdered('timestamp', ordered, at, nanosOf, show, path, out);
  const now = BigInt(Date.now()) * 1_000_000n;
  const w = within !== undefined ? nanosOf(within) : undefined;
  if (lt_now === true && !(at < now && (w === undefined || now - at <= w))) out.push({ path, rule: 'timestamp.lt_now', message: `must be before now${w !== undefined ? ` and within ${showDuration(w)}` : ''}` });
  if (gt_now === true && !(at > now && (w === undefined || at - now <= w))) out.push({ path, rule: 'timestamp.gt_now', message: `must be after now${w !== undefined ? ` and within ${showDuration(w)}` : ''}` });
  if (w !== undefined && lt_now !== true && gt_now !== true && (at > now ? at - now : now - at) > w) out.push({ path, rule: 'timestamp.within', message: `must be within ${showDuration(w)} of now` });
}

/** Envoy's MessageUtil::validateDurationFields (source/common/protobuf/utility.cc). */
const MAX_DURATION_SECONDS = 315_576_000_000n;
function checkEnvoyDuration(value: Record<string, unknown>, path: string, out: RuleViolation[]): void {
  const seconds = toBig(value.seconds) ?? 0n;
  const nanos = toBig(value.nanos) ?? 0n;
  if (seconds < 0n || nanos < 0n) out.push({ path, rule: 'envoy.duration', message: `Invalid duration: Expected positive duration, is ${showDuration(nanosOf(value))}` });
  else if (seconds > MAX_DURATION_SECONDS || nanos > 999_999_999n) out.push({ path, rule: 'envoy.duration', message: 'Invalid duration: Duration out-of-range' });
}

/** Equality key for `repeated.unique` (scalars and enums in PGV; messages compared by content). */
function canonical(v: unknown): string {
  if (v instanceof Uint8Array) return `b:${Buffer.from(v).toString('hex')}`;
  if (typeof v === 'bigint') return `n:${v}`;
  if (isPlainObject(v) && typeof v.low === 'number' && typeof v.high === 'number') return `n:${toBig(v)}`;
  if (typeof v === 'number') return `n:${v}`;
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x instanceof Uint8Array ? Buffer.from(x).toString('hex') : x));
}
