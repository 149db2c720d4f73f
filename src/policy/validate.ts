// The one door from untrusted input (API body, policy file, CLI flags) to the
// policy model. Pure. Two passes: the shape, by the JSON Schemas of
// policySchema.ts (compiled once by ajv, the same objects the OpenAPI document
// serves), then the meaning a schema cannot state (CIDRs, DNS name syntax) while
// putting the spec in canonical form. The first problem found is reported with
// the field it is in and why; on success the spec is in canonical form, so that
// two specs that mean the same thing compare equal (and a re-PUT of the same
// meaning is a no-op).
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
import { compileSchema, type SchemaFieldError } from '../schema/validator.js';
import { checkCidr } from './cidrText.js';
import type { Allowlist, CidrAllow, FieldError, PolicySpec, Result } from './model.js';
import { policyNameSchema, policySpecSchema, type PolicySpecBody } from './policySchema.js';
import { checkServerNamePattern } from './serverName.js';

export { NODE_GLOB_PATTERN, POLICY_NAME_PATTERN } from './policySchema.js';

/** Compiled at start-up (module load), once. */
export const policySpecShape = compileSchema<PolicySpecBody>(policySpecSchema);
export const policyNameShape = compileSchema<string>(policyNameSchema);

/** Thrown inside this module only, to leave deep walks early; never escapes. */
class Invalid extends Error {
  constructor(readonly fieldError: FieldError) {
    super(fieldError.message);
  }
}
const invalid = (field: string, message: string): never => {
  throw new Invalid({ field, message });
};

const refuse = (error: SchemaFieldError): { ok: false; error: FieldError } => ({ ok: false, error });

export function validatePolicyName(name: unknown): Result<string> {
  if (!policyNameShape(name)) return refuse({ field: 'name', message: policyNameShape.error(name).message });
  return { ok: true, value: name };
}

export function validatePolicySpec(body: unknown): Result<PolicySpec> {
  if (!policySpecShape(body)) return refuse(policySpecShape.error(body));
  return normalisePolicySpec(body);
}

/**
 * The second pass, for a body whose shape policySpecShape accepted (a batch
 * checks the shape of all its items in one schema pass first): the meaning of
 * each value, and the canonical form.
 */
export function normalisePolicySpec(body: PolicySpecBody): Result<PolicySpec> {
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

const unique = <T>(items: readonly T[]): T[] => [...new Set(items)];
const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function spec(body: PolicySpecBody): PolicySpec {
  // Checked in document order, so the first error is the one a reader meets first.
  const sources = body.sources === undefined ? undefined : sourceCidrs(body.sources);
  const nodes = body.nodes === undefined ? undefined : unique(body.nodes).sort(byText);
  const allow = allowlist(body.allow);
  const { upstream, mode, log } = body;
  // Key order fixed so that equal meaning serialises equally.
  return {
    ...(sources ? { sources } : {}),
    ...(nodes ? { nodes } : {}),
    // Defaults are stored absent, so {"upstream":"name"} and {} are the same policy.
    ...(upstream && upstream !== 'name' ? { upstream } : {}),
    ...(mode && mode !== 'enforce' ? { mode } : {}),
    ...(log && log !== 'denied' ? { log } : {}),
    allow,
  };
}

function cidr(text: string, field: string): { cidr: Cidr; text: string } {
  const checked = checkCidr(text);
  if (!checked.ok) invalid(field, `"${text}" ${checked.reason}`);
  return checked as { ok: true; cidr: Cidr; text: string };
}

function sourceCidrs(texts: readonly string[]): string[] {
  const items = texts.map((text, i) => cidr(text, `sources[${i}]`));
  items.sort((a, b) => compareCidrs(a.cidr, b.cidr));
  return unique(items.map((item) => item.text));
}

function allowlist(allow: PolicySpecBody['allow']): Allowlist {
  const sni = allow.sni === undefined ? [] : serverNames(allow.sni);
  if (allow.cidrs === undefined) return { sni };
  return { sni, cidrs: cidrAllows(allow.cidrs) };
}

function serverNames(texts: readonly string[]): string[] {
  const names = texts.map((text, i) => {
    const checked = checkServerNamePattern(text);
    if (!checked.ok) invalid(`allow.sni[${i}]`, `"${text}" ${checked.reason}`);
    return (checked as { ok: true; name: string }).name;
  });
  return unique(names).sort(byText);
}

function cidrAllows(entries: NonNullable<PolicySpecBody['allow']['cidrs']>): CidrAllow[] {
  const merged = new Map<string, { cidr: Cidr; ports: Set<number> | undefined }>();
  entries.forEach((entry, i) => {
    const range = cidr(entry.cidr, `allow.cidrs[${i}].cidr`);
    const seen = merged.get(range.text);
    if (!seen) {
      merged.set(range.text, { cidr: range.cidr, ports: entry.ports && new Set(entry.ports) });
    } else if (seen.ports) {
      // Every port (no list) absorbs any list; two lists unite.
      if (entry.ports) for (const port of entry.ports) seen.ports.add(port);
      else seen.ports = undefined;
    }
  });
  return [...merged.entries()]
    .sort(([, a], [, b]) => compareCidrs(a.cidr, b.cidr))
    .map(([text, entry]) => (entry.ports ? { cidr: text, ports: [...entry.ports].sort((a, b) => a - b) } : { cidr: text }));
}
