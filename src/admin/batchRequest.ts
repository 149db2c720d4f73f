// POST /v1/policies:batch's body: {"put": {NAME: SPEC}?, "delete": [NAME]?,
// "ifMatch": {NAME: REVISION | "*"}?}. Every name and spec is checked as a
// single PUT/DELETE would check it, before the store sees anything, and the
// first problem names its place ("put.web.allow.sni[0]", "delete[2]").
import type { PolicySpec, Result } from '../policy/model.js';
import { validatePolicyName, validatePolicySpec } from '../policy/validate.js';
import type { BatchRequest } from '../store/store.js';

const fail = (field: string, message: string): Result<never> => ({ ok: false, error: { field, message } });
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

export function validateBatchRequest(body: unknown): Result<BatchRequest> {
  if (!isObject(body)) return fail('body', 'must be a JSON object: {"put": {NAME: POLICY}, "delete": [NAME], "ifMatch": {NAME: REVISION}}');
  const unknown = Object.keys(body).find((key) => key !== 'put' && key !== 'delete' && key !== 'ifMatch');
  if (unknown !== undefined) return fail(unknown, 'unknown field; expected put, delete, ifMatch');
  const seen = new Set<string>();
  const put: Record<string, PolicySpec> = {};
  if (body.put !== undefined) {
    if (!isObject(body.put)) return fail('put', 'must be an object of policy name to policy');
    for (const [key, value] of Object.entries(body.put)) {
      const name = validatePolicyName(key);
      if (!name.ok) return fail(`put.${key}`, name.error.message);
      const spec = validatePolicySpec(value);
      if (!spec.ok) return fail(`put.${key}${spec.error.field ? `.${spec.error.field}` : ''}`, spec.error.message);
      put[name.value] = spec.value;
      seen.add(name.value);
    }
  }
  const deletes: string[] = [];
  if (body.delete !== undefined) {
    if (!Array.isArray(body.delete)) return fail('delete', 'must be an array of policy names');
    for (const [i, value] of body.delete.entries()) {
      const name = validatePolicyName(value);
      if (!name.ok) return fail(`delete[${i}]`, name.error.message);
      if (seen.has(name.value)) return fail(`delete[${i}]`, `policy "${name.value}" appears twice in the batch; a name may be put or deleted once`);
      seen.add(name.value);
      deletes.push(name.value);
    }
  }
  const ifMatch: Record<string, number | '*'> = {};
  if (body.ifMatch !== undefined) {
    if (!isObject(body.ifMatch)) return fail('ifMatch', 'must be an object of policy name to revision (or "*")');
    for (const [name, value] of Object.entries(body.ifMatch)) {
      if (!seen.has(name)) return fail(`ifMatch.${name}`, 'names no policy put or deleted in this batch');
      if (value !== '*' && !(Number.isSafeInteger(value) && (value as number) >= 0)) {
        return fail(`ifMatch.${name}`, 'must be a revision (a whole number, as in the ETag) or "*" (exists at all)');
      }
      ifMatch[name] = value as number | '*';
    }
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
