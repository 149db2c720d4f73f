// The one door from untrusted input (API body, policy file, CLI flags) to the
// policy model. Pure. The first problem found is reported with the field it is
// in and why; on success the spec is in canonical form, so that two specs that
// mean the same thing compare equal (and a re-PUT of the same meaning is a no-op).
//
// Canonical form, a set in every list:
//   sources, allow.cidrs[].cidr  network form, host bits zero (host bits set is an error)
//   sources, allow.cidrs         sorted by family, network, prefix; duplicates removed
//   allow.cidrs with equal cidr  merged: their ports united, an entry without ports wins
//   ports                        integers 1..65535, sorted, duplicates removed
//   nodes                        sorted, duplicates removed
//   upstream, mode, log          absent when the default ("name", "enforce", "denied")
//   allow.sni                    lower case, no trailing dot, sorted, duplicates removed
// Empty `sources` / `nodes` / `ports` lists are errors: absent means "every",
// and an empty list would silently mean "none". An empty allowlist (no sni and
// no cidrs) is legal: it allows nothing, e.g. to stage a policy before filling it.
import { compareCidrs, type Cidr } from '../net/ip.js';
import { checkCidr } from './cidrText.js';
import type { Allowlist, CidrAllow, FieldError, PolicySpec, Result } from './model.js';
import { checkServerNamePattern } from './serverName.js';

/** Policy names: 1–63 of a-z 0-9 . _ -, starting and ending with a letter or digit. */
export const POLICY_NAME_PATTERN = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;
export const NODE_GLOB_PATTERN = /^[A-Za-z0-9._:*?-]+$/;
const MAX_GLOB = 253;

const fail = (field: string, message: string): { ok: false; error: FieldError } => ({ ok: false, error: { field, message } });

/** Thrown inside this module only, to leave deep walks early; never escapes. */
class Invalid extends Error {
  constructor(readonly fieldError: FieldError) {
    super(fieldError.message);
  }
}
const invalid = (field: string, message: string): never => {
  throw new Invalid({ field, message });
};

const describe = (value: unknown): string =>
  value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : `a ${typeof value}`;

export function validatePolicyName(name: unknown): Result<string> {
  if (typeof name !== 'string' || name === '') return fail('name', 'a policy name is required');
  if (name.length > 63) return fail('name', `is ${name.length} characters; at most 63`);
  if (!POLICY_NAME_PATTERN.test(name)) {
    return fail('name', 'must be lower-case letters, digits, ".", "_" or "-", starting and ending with a letter or digit');
  }
  return { ok: true, value: name };
}

export function validatePolicySpec(body: unknown): Result<PolicySpec> {
  try {
    return { ok: true, value: spec(body) };
  } catch (error) {
    if (error instanceof Invalid) return { ok: false, error: error.fieldError };
    throw error;
  }
}

/** Joins a field path: ("policies.web", "allow.sni[0]") -> "policies.web.allow.sni[0]". */
export const joinField = (prefix: string, field: string): string =>
  prefix === '' ? field : field === '' ? prefix : field.startsWith('[') ? `${prefix}${field}` : `${prefix}.${field}`;

function object(value: unknown, field: string, allowed: readonly string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    invalid(field, `must be an object, got ${describe(value)}`);
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!allowed.includes(key)) invalid(joinField(field, key), `unknown field; expected ${allowed.join(', ')}`);
  }
  return record;
}

function array(value: unknown, field: string): unknown[] {
  if (!Array.isArray(value)) invalid(field, `must be an array, got ${describe(value)}`);
  return value as unknown[];
}

function string(value: unknown, field: string): string {
  if (typeof value !== 'string') invalid(field, `must be a string, got ${describe(value)}`);
  return value as string;
}

function nonEmptyArray(value: unknown, field: string, absentMeans: string): unknown[] {
  const items = array(value, field);
  if (items.length === 0) invalid(field, `must not be empty; leave ${field} out for ${absentMeans}`);
  return items;
}

const unique = <T>(items: readonly T[]): T[] => [...new Set(items)];
const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function spec(body: unknown): PolicySpec {
  const record = object(body, '', ['sources', 'nodes', 'upstream', 'mode', 'log', 'allow']);
  // Checked in document order, so the first error is the one a reader meets first.
  const checkedSources = record.sources === undefined ? undefined : sources(record.sources);
  const checkedNodes = record.nodes === undefined ? undefined : nodes(record.nodes);
  const upstream = record.upstream === undefined ? undefined : oneOf(record.upstream, 'upstream', ['name', 'original-destination'] as const);
  const mode = record.mode === undefined ? undefined : oneOf(record.mode, 'mode', ['enforce', 'audit'] as const);
  const log = record.log === undefined ? undefined : oneOf(record.log, 'log', ['denied', 'all'] as const);
  if (record.allow === undefined) invalid('allow', 'is required: {"sni": [NAME], "cidrs": [{"cidr": CIDR, "ports": [PORT]}]}');
  const allow = allowlist(record.allow);
  // Key order fixed so that equal meaning serialises equally.
  return {
    ...(checkedSources ? { sources: checkedSources } : {}),
    ...(checkedNodes ? { nodes: checkedNodes } : {}),
    // Defaults are stored absent, so {"upstream":"name"} and {} are the same policy.
    ...(upstream && upstream !== 'name' ? { upstream } : {}),
    ...(mode && mode !== 'enforce' ? { mode } : {}),
    ...(log && log !== 'denied' ? { log } : {}),
    allow,
  };
}

function oneOf<T extends string>(value: unknown, field: string, choices: readonly T[]): T {
  const text = string(value, field);
  if (!(choices as readonly string[]).includes(text)) invalid(field, `"${text}" is not one of ${choices.map((c) => `"${c}"`).join(', ')}`);
  return text as T;
}

function cidr(value: unknown, field: string): { cidr: Cidr; text: string } {
  const checked = checkCidr(string(value, field));
  if (!checked.ok) invalid(field, `"${String(value)}" ${checked.reason}`);
  return checked as { ok: true; cidr: Cidr; text: string };
}

function sources(value: unknown): string[] {
  const items = nonEmptyArray(value, 'sources', 'every source').map((item, i) => cidr(item, `sources[${i}]`));
  items.sort((a, b) => compareCidrs(a.cidr, b.cidr));
  return unique(items.map((item) => item.text));
}

function nodes(value: unknown): string[] {
  const globs = nonEmptyArray(value, 'nodes', 'every node').map((item, i) => {
    const field = `nodes[${i}]`;
    const glob = string(item, field);
    if (glob === '') invalid(field, 'must not be empty');
    if (glob.length > MAX_GLOB) invalid(field, `is ${glob.length} characters; at most ${MAX_GLOB}`);
    if (!NODE_GLOB_PATTERN.test(glob)) invalid(field, `"${glob}" may hold only letters, digits, ".", "_", ":", "-", "*" (any run of characters) and "?" (exactly one character)`);
    return glob;
  });
  return unique(globs).sort(byText);
}

function allowlist(value: unknown): Allowlist {
  const record = object(value, 'allow', ['sni', 'cidrs']);
  const sni = record.sni === undefined ? [] : serverNames(record.sni);
  if (record.cidrs === undefined) return { sni };
  return { sni, cidrs: cidrAllows(record.cidrs) };
}

function serverNames(value: unknown): string[] {
  const names = array(value, 'allow.sni').map((item, i) => {
    const field = `allow.sni[${i}]`;
    const text = string(item, field);
    const checked = checkServerNamePattern(text);
    if (!checked.ok) invalid(field, `"${text}" ${checked.reason}`);
    return (checked as { ok: true; name: string }).name;
  });
  return unique(names).sort(byText);
}

function ports(value: unknown, field: string): number[] {
  const items = nonEmptyArray(value, field, 'every port').map((item, i) => {
    if (typeof item !== 'number' || !Number.isInteger(item) || item < 1 || item > 65535) {
      invalid(`${field}[${i}]`, `must be an integer port 1 to 65535, got ${JSON.stringify(item) ?? describe(item)}`);
    }
    return item as number;
  });
  return unique(items).sort((a, b) => a - b);
}

function cidrAllows(value: unknown): CidrAllow[] {
  const merged = new Map<string, { cidr: Cidr; ports: Set<number> | undefined }>();
  array(value, 'allow.cidrs').forEach((item, i) => {
    const field = `allow.cidrs[${i}]`;
    const record = object(item, field, ['cidr', 'ports']);
    if (record.cidr === undefined) invalid(`${field}.cidr`, 'is required');
    const range = cidr(record.cidr, `${field}.cidr`);
    const entryPorts = record.ports === undefined ? undefined : ports(record.ports, `${field}.ports`);
    const seen = merged.get(range.text);
    if (!seen) {
      merged.set(range.text, { cidr: range.cidr, ports: entryPorts && new Set(entryPorts) });
    } else if (seen.ports) {
      // Every port (no list) absorbs any list; two lists unite.
      if (entryPorts) for (const port of entryPorts) seen.ports.add(port);
      else seen.ports = undefined;
    }
  });
  return [...merged.entries()]
    .sort(([, a], [, b]) => compareCidrs(a.cidr, b.cidr))
    .map(([text, entry]) => (entry.ports ? { cidr: text, ports: [...entry.ports].sort((a, b) => a - b) } : { cidr: text }));
}
