// What a write does to the policies, decided before anything is written: the
// refusals (ownership, preconditions, a missing delete), the no-op put, and the
// revisions each change gets. Pure functions over a view of the current state,
// so every store (file, etcd) refuses and numbers the same way.
import type { PolicySpec, StoredPolicy } from '../policy/model.js';
import { API_SOURCE, type BatchRequest, type PolicyChange, type StoreRefusal, type WriteOptions } from './store.js';

/** One policy's change in a commit. */
export interface PlannedChange {
  readonly action: 'put' | 'delete';
  readonly name: string;
  /** The policy's revision after this change (a delete leaves it as the tombstone's). */
  readonly revision: number;
  /** Who manages the policy: "api" or "file:PATH". */
  readonly source: string;
  /** The canonical spec written (put only). */
  readonly spec?: PolicySpec;
}

/** The state a write is decided against. */
export interface PolicyView {
  get(name: string): StoredPolicy | undefined;
  /** The policy's revision, or its tombstone's when deleted; 0 for a name never used. */
  lastRevision(name: string): number;
  /** Sources currently claimed (a loaded policy file). */
  isClaimed(source: string): boolean;
}

export type Plan = { readonly ok: true; readonly changes: PlannedChange[] } | { readonly ok: false; readonly error: StoreRefusal & { readonly name: string } };

/** True when putting `spec` from `source` would change nothing (specs are canonical, so text equality is meaning equality). */
export function alreadyStored(existing: StoredPolicy, source: string, spec: PolicySpec): boolean {
  if ((existing.source ?? API_SOURCE) !== source) return false;
  const { sources, nodes, upstream, mode, log, allow } = existing;
  return (
    JSON.stringify({ sources, nodes, upstream, mode, log, allow }) ===
    JSON.stringify({ sources: spec.sources, nodes: spec.nodes, upstream: spec.upstream, mode: spec.mode, log: spec.log, allow: spec.allow })
  );
}

/** Why a write from `source` to `name` is refused, or undefined when it may go ahead. */
export function refusalFor(view: PolicyView, name: string, source: string, options: Pick<WriteOptions, 'ifMatch' | 'ifNoneMatch'>): StoreRefusal | undefined {
  const existing = view.get(name);
  if (existing && existing.source !== source && existing.source !== undefined && view.isClaimed(existing.source)) {
    const owner = existing.source.startsWith('file:') ? `the policy file ${existing.source.slice(5)}` : existing.source;
    return { code: 'conflict', message: `policy "${name}" is managed by ${owner}; change it there` };
  }
  if (options.ifNoneMatch === '*' && existing) {
    return { code: 'precondition_failed', message: `policy "${name}" already exists (revision ${existing.revision})` };
  }
  if (options.ifMatch !== undefined) {
    if (!existing) return { code: 'precondition_failed', message: `policy "${name}" does not exist; If-Match needs an existing policy` };
    if (options.ifMatch !== '*' && existing.revision !== options.ifMatch) {
      return { code: 'precondition_failed', message: `policy "${name}" is at revision ${existing.revision}, not ${options.ifMatch}` };
    }
  }
  return undefined;
}

/** A single PUT: a refusal, no change (already stored), or one change. */
export function planPut(view: PolicyView, name: string, spec: PolicySpec, options: WriteOptions): Plan {
  const source = options.source ?? API_SOURCE;
  const refusal = refusalFor(view, name, source, options);
  if (refusal) return { ok: false, error: { ...refusal, name } };
  const existing = view.get(name);
  if (existing && alreadyStored(existing, source, spec)) return { ok: true, changes: [] };
  return { ok: true, changes: [{ action: 'put', name, revision: view.lastRevision(name) + 1, source, spec }] };
}

/** A single DELETE: a refusal (not_found included) or one change. */
export function planDelete(view: PolicyView, name: string, options: WriteOptions): Plan {
  const source = options.source ?? API_SOURCE;
  const refusal = refusalFor(view, name, source, options);
  if (refusal) return { ok: false, error: { ...refusal, name } };
  if (!view.get(name)) return { ok: false, error: { code: 'not_found', message: `policy "${name}" does not exist`, name } };
  return { ok: true, changes: [{ action: 'delete', name, revision: view.lastRevision(name) + 1, source }] };
}

/** A policy file's edit: no refusals; unchanged puts and deletes of absent policies drop out. */
export function planApply(view: PolicyView, changes: readonly PolicyChange[], source: string): PlannedChange[] {
  const planned: PlannedChange[] = [];
  for (const { name, spec } of changes) {
    const existing = view.get(name);
    if (spec === undefined) {
      if (existing) planned.push({ action: 'delete', name, revision: view.lastRevision(name) + 1, source });
    } else if (!existing || !alreadyStored(existing, source, spec)) {
      planned.push({ action: 'put', name, revision: view.lastRevision(name) + 1, source, spec });
    }
  }
  return planned;
}

/**
 * POST /v1/policies:batch: every put (in name order), then every delete (in
 * request order), checked as single writes from the API would be; the first
 * refusal refuses the whole batch. A name may appear once only (the caller
 * validates that, and that every ifMatch names a put or delete).
 */
export function planBatch(view: PolicyView, request: BatchRequest): Plan {
  const planned: PlannedChange[] = [];
  const conditions = request.ifMatch ?? {};
  const condition = (name: string): Pick<WriteOptions, 'ifMatch'> =>
    Object.hasOwn(conditions, name) ? { ifMatch: conditions[name]! } : {};
  const puts = Object.keys(request.put ?? {}).sort();
  for (const name of puts) {
    const plan = planPut(view, name, request.put![name]!, { client: '', ...condition(name) });
    if (!plan.ok) return plan;
    planned.push(...plan.changes);
  }
  for (const name of request.delete ?? []) {
    const plan = planDelete(view, name, { client: '', ...condition(name) });
    if (!plan.ok) return plan;
    planned.push(...plan.changes);
  }
  return { ok: true, changes: planned };
}
