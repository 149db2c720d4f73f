// POST /v1/policies:batch's body: {"put": {NAME: SPEC}?, "delete": [NAME]?,
// "ifMatch": {NAME: REVISION | "*"}?}. Its shape is batchRequestSchema (the
// OpenAPI document's BatchRequest; every put item is the PolicySpec schema,
// every name the PolicyName schema); then every spec's meaning is checked as a
// single PUT checks it, and the names across put/delete/ifMatch, before the
// store sees anything. The first problem names its place ("put.web.allow.sni[0]",
// "delete[2]").
import type { PolicySpec, Result } from '../policy/model.js';
import { policyNameSchema, policySpecSchema, type PolicySpecBody } from '../policy/policySchema.js';
import { joinField, normalisePolicySpec } from '../policy/validate.js';
import { compileSchema } from '../schema/validator.js';
import type { BatchRequest } from '../store/store.js';

export const batchRequestSchema = {
  type: 'object',
  additionalProperties: false,
  'x-message': { type: 'must be a JSON object: {"put": {NAME: POLICY}, "delete": [NAME], "ifMatch": {NAME: REVISION}}' },
  properties: {
    put: {
      type: 'object',
      propertyNames: policyNameSchema,
      additionalProperties: policySpecSchema,
      'x-message': { type: 'must be an object of policy name to policy' },
      description: 'Policies to create or replace, by name.',
    },
    delete: {
      type: 'array',
      items: policyNameSchema,
      'x-message': { type: 'must be an array of policy names' },
      description: 'Policies to delete; each must exist. A name may be put or deleted once per batch.',
    },
    ifMatch: {
      type: 'object',
      additionalProperties: {
        anyOf: [{ type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER }, { const: '*' }],
        'x-message': 'must be a revision (a whole number, as in the ETag) or "*" (exists at all)',
      },
      'x-message': { type: 'must be an object of policy name to revision (or "*")' },
      description: 'Per policy of this batch: only if it is at this revision ("*": exists at all), as If-Match on a single write.',
    },
  },
} as const;

interface BatchBody {
  readonly put?: Readonly<Record<string, PolicySpecBody>>;
  readonly delete?: readonly string[];
  readonly ifMatch?: Readonly<Record<string, number | '*'>>;
}

export const batchShape = compileSchema<BatchBody>(batchRequestSchema);

const fail = (field: string, message: string): Result<never> => ({ ok: false, error: { field, message } });

export function validateBatchRequest(body: unknown): Result<BatchRequest> {
  if (!batchShape(body)) {
    const error = batchShape.error(body);
    return fail(error.field || 'body', error.message);
  }
  const seen = new Set<string>();
  const put: Record<string, PolicySpec> = {};
  for (const [name, value] of Object.entries(body.put ?? {})) {
    const spec = normalisePolicySpec(value);
    if (!spec.ok) return fail(joinField(`put.${name}`, spec.error.field), spec.error.message);
    put[name] = spec.value;
    seen.add(name);
  }
  const deletes: string[] = [];
  for (const [i, name] of (body.delete ?? []).entries()) {
    if (seen.has(name)) return fail(`delete[${i}]`, `policy "${name}" appears twice in the batch; a name may be put or deleted once`);
    seen.add(name);
    deletes.push(name);
  }
  const ifMatch: Record<string, number | '*'> = {};
  for (const [name, value] of Object.entries(body.ifMatch ?? {})) {
    if (!seen.has(name)) return fail(`ifMatch.${name}`, 'names no policy put or deleted in this batch');
    ifMatch[name] = value;
  }
  return {
    ok: true,
    value: {
      ...(Object.keys(put).length > 0 ? { put } : {}),
      ...(deletes.length > 0 ? { delete: deletes } : {}),
      ...(Object.keys(ifMatch).length > 0 ? { ifMatch } : {}),
    },
  };
}
