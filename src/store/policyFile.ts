// Policies declared in a file (serve --policy FILE), YAML or JSON:
//
//   policies:
//     github:                      # the policy name
//       sources: [172.31.0.0/16]   # same fields as PUT /v1/policies/{name}
//       allow:
//         sni: [github.com, www.github.com]
//
// The file owns the policies it declares: while it is loaded, API writes to
// them are refused (409), a policy removed from the file is deleted, and an
// API-created policy the file declares is taken over. The whole file is
// validated before anything is applied, and applied as one commit.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import type { FieldError, Policy } from '../policy/model.js';
import { joinField, validatePolicyName, validatePolicySpec } from '../policy/validate.js';
import type { PolicyStore } from './policyStore.js';

export type PolicyFileParse = { ok: true; policies: Policy[] } | { ok: false; errors: FieldError[] };

/** The store source of policies owned by the file at `path`. */
export const policyFileSource = (path: string): string => `file:${resolve(path)}`;
/** The history's client for changes the file made. */
export const policyFileClient = (path: string): string => `policy-file:${resolve(path)}`;

export class PolicyFileError extends Error {
  constructor(
    readonly path: string,
    readonly errors: readonly FieldError[],
  ) {
    super(`policy file ${path} is invalid:\n${errors.map((e) => `  ${e.field || '(file)'}: ${e.message}`).join('\n')}`);
    this.name = 'PolicyFileError';
  }
}

/** Parses and validates the whole text; every invalid policy is reported (its first error). */
export function parsePolicyFile(text: string): PolicyFileParse {
  if (text.trim() === '') {
    // Also what an editor that truncates before writing shows mid-save.
    return { ok: false, errors: [{ field: '', message: 'is empty; write "policies: {}" to remove every policy it manages' }] };
  }
  const lines = new LineCounter();
  const document = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter: lines });
  if (document.errors.length > 0) {
    return {
      ok: false,
      errors: document.errors.map((error) => {
        const at = lines.linePos(error.pos[0]);
        return { field: '', message: `line ${at.line}, column ${at.col}: ${error.message}` };
      }),
    };
  }
  const root: unknown = document.toJS({ maxAliasCount: 100 });
  if (typeof root !== 'object' || root === null || Array.isArray(root)) {
    return { ok: false, errors: [{ field: '', message: 'must be a mapping with a "policies" key' }] };
  }
  const unknownKey = Object.keys(root).find((key) => key !== 'policies');
  if (unknownKey !== undefined) return { ok: false, errors: [{ field: unknownKey, message: 'unknown field; expected policies' }] };
  const declared = (root as { policies?: unknown }).policies;
  if (typeof declared !== 'object' || declared === null || Array.isArray(declared)) {
    return { ok: false, errors: [{ field: 'policies', message: 'must be a mapping of policy name to policy ({} for none)' }] };
  }
  const errors: FieldError[] = [];
  const policies: Policy[] = [];
  for (const [name, body] of Object.entries(declared)) {
    const field = `policies.${name}`;
    const checkedName = validatePolicyName(name);
    if (!checkedName.ok) {
      errors.push({ field, message: `policy name ${checkedName.error.message}` });
      continue;
    }
    const checked = validatePolicySpec(body);
    if (checked.ok) policies.push({ name, ...checked.value });
    else errors.push({ field: joinField(field, checked.error.field), message: checked.error.message });
  }
  if (errors.length > 0) return { ok: false, errors };
  policies.sort((a, b) => (a.name < b.name ? -1 : 1));
  return { ok: true, policies };
}

/** Reads and validates the file; a read failure is reported as an error of the file. */
export async function loadPolicyFile(path: string): Promise<PolicyFileParse & { text?: string }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { ok: false, errors: [{ field: '', message: `cannot be read (${code ?? (error as Error).message})` }] };
  }
  return { ...parsePolicyFile(text), text };
}

/**
 * Makes the store hold exactly the file's policies among those the file owns:
 * puts every declared policy (unchanged ones are skipped by the store) and
 * deletes the ones it owned that are no longer declared. One commit.
 */
export async function applyPolicies(
  store: PolicyStore,
  path: string,
  policies: readonly Policy[],
): Promise<{ storeRevision: number; changed: string[]; takenOver: string[] }> {
  const source = policyFileSource(path);
  const declared = new Set(policies.map((p) => p.name));
  const takenOver = policies.filter((p) => {
    const existing = store.get(p.name);
    return existing !== undefined && existing.source !== source;
  }).map((p) => p.name);
  const removed = store.list().filter((p) => p.source === source && !declared.has(p.name)).map((p) => p.name);
  const result = await store.apply(
    [
      ...policies.map(({ name, sources, nodes, upstream, mode, log, allow }) => ({
        name,
        spec: { ...(sources ? { sources } : {}), ...(nodes ? { nodes } : {}), ...(upstream ? { upstream } : {}), ...(mode ? { mode } : {}), ...(log ? { log } : {}), allow },
      })),
      ...removed.map((name) => ({ name, spec: undefined })),
    ],
    { client: policyFileClient(path), source },
  );
  return { ...result, takenOver };
}
