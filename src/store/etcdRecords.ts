// The etcd store's keys and values, under one prefix P:
//
//   P meta                 {"format":1,"base":N}: revisions users see are etcd's + N
//   P policies/NAME        one policy (no revision: it is the key's mod revision + base)
//   P history/ID           one commit; its store revision is the key's create revision
//                          + base, unless it carries one (history moved in by migrate)
//   P nodes/REPLICA/NODE   fleet status, under the replica's lease (src/cluster/)
//
// Revisions come from etcd so that every replica numbers a change the same way
// and If-Match is a compare on the policy key's mod revision. `base` keeps
// them above the revisions of a file store migrated in. Values read back are
// checked: a value another program wrote is refused, never half-used.
import type { PolicySpec, StoredPolicy } from '../policy/model.js';

export const META_KEY = 'meta';
export const POLICIES = 'policies/';
export const HISTORY = 'history/';
export const NODES = 'nodes/';

export interface MetaRecord {
  readonly format: 1;
  readonly base: number;
}

/** A policy as stored: StoredPolicy without its revision. */
export type PolicyRecord = Omit<StoredPolicy, 'revision'>;

export interface HistoryChangeRecord {
  readonly action: 'put' | 'delete';
  readonly name: string;
  readonly source: string;
  readonly spec?: PolicySpec;
  /** The policy's revision after the change; absent: the commit's store revision. */
  readonly revision?: number;
}

export interface HistoryRecord {
  readonly at: string;
  readonly client: string;
  readonly changes: readonly HistoryChangeRecord[];
  /** Absent for commits made in etcd (create revision + base); set for history migrated in. */
  readonly storeRevision?: number;
}

export function decodeMeta(text: string): MetaRecord | undefined {
  try {
    const value = JSON.parse(text) as MetaRecord;
    return value?.format === 1 && Number.isSafeInteger(value.base) && value.base >= 0 ? { format: 1, base: value.base } : undefined;
  } catch {
    return undefined;
  }
}

export function decodePolicy(name: string, text: string): PolicyRecord | undefined {
  try {
    const value = JSON.parse(text) as PolicyRecord;
    if (typeof value !== 'object' || value === null || value.name !== name || typeof value.updatedAt !== 'string') return undefined;
    if (typeof value.allow !== 'object' || value.allow === null || !Array.isArray(value.allow.sni)) return undefined;
    if (value.source !== undefined && typeof value.source !== 'string') return undefined;
    return value;
  } catch {
    return undefined;
  }
}

export function decodeHistory(text: string): HistoryRecord | undefined {
  try {
    const value = JSON.parse(text) as HistoryRecord;
    if (typeof value !== 'object' || value === null || typeof value.at !== 'string' || typeof value.client !== 'string') return undefined;
    if (!Array.isArray(value.changes)) return undefined;
    const changesOk = value.changes.every(
      (c) =>
        (c.action === 'put' ? typeof c.spec === 'object' && c.spec !== null : c.action === 'delete') &&
        typeof c.name === 'string' && typeof c.source === 'string' && (c.revision === undefined || Number.isSafeInteger(c.revision)),
    );
    if (!changesOk || (value.storeRevision !== undefined && !Number.isSafeInteger(value.storeRevision))) return undefined;
    return value;
  } catch {
    return undefined;
  }
}

export const policyRecordOf = (name: string, spec: PolicySpec, source: string, at: string): PolicyRecord => ({
  name,
  updatedAt: at,
  source,
  ...(spec.sources ? { sources: spec.sources } : {}),
  ...(spec.nodes ? { nodes: spec.nodes } : {}),
  ...(spec.upstream ? { upstream: spec.upstream } : {}),
  ...(spec.mode ? { mode: spec.mode } : {}),
  allow: spec.allow,
});
