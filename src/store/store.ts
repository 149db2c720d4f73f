// The policy store's interface, implemented by the file store (policyStore.ts)
// and the etcd store: what the admin API, the policy file and the control
// plane may rely on, whichever keeps the data. Types only.
import type { PolicySpec, StoredPolicy } from '../policy/model.js';

/** The source of policies written through the admin API. */
export const API_SOURCE = 'api';

export interface WriteOptions {
  /** Who asks, for the history: remote address, token identity, user agent; or "policy-file:PATH". */
  readonly client: string;
  /** Who will manage the policy; default "api". */
  readonly source?: string;
  /** Only if the policy exists at this revision ("*": exists at all); else precondition_failed. */
  readonly ifMatch?: number | '*';
  /** "*": only if the policy does not exist; else precondition_failed. */
  readonly ifNoneMatch?: '*';
}

export type StoreRefusalCode = 'not_found' | 'conflict' | 'precondition_failed';

export interface StoreRefusal {
  readonly code: StoreRefusalCode;
  readonly message: string;
}

export interface WriteOutcome {
  readonly name: string;
  /** The policy's revision after the write (for a delete: the revision the deletion got). */
  readonly revision: number;
  readonly storeRevision: number;
  /** False when a put carried the spec already stored: nothing was written. */
  readonly changed: boolean;
}

export type WriteResult = { readonly ok: true; readonly value: WriteOutcome } | { readonly ok: false; readonly error: StoreRefusal };

/** One element of an apply: a spec to put, or undefined to delete. */
export interface PolicyChange {
  readonly name: string;
  readonly spec: PolicySpec | undefined;
}

export interface BatchRequest {
  /** Validated, canonical specs by policy name. */
  readonly put?: Readonly<Record<string, PolicySpec>>;
  readonly delete?: readonly string[];
  /** Optional per-name preconditions, as If-Match for single writes. */
  readonly ifMatch?: Readonly<Record<string, number | '*'>>;
}

export type BatchResult =
  | { readonly ok: true; readonly value: { readonly storeRevision: number; readonly changed: readonly string[] } }
  | { readonly ok: false; readonly error: StoreRefusal & { readonly name: string } };

export interface StoreChange {
  /** The store revision of this commit. */
  readonly revision: number;
  /** Policies created or changed by the commit, as now stored. */
  readonly puts: readonly StoredPolicy[];
  /** Names removed by the commit. */
  readonly deletes: readonly string[];
}

/** Called after every commit, in commit order. */
export type ChangeListener = (change: StoreChange) => void;

export interface HistoryEntry {
  /** The store revision of the commit the change was in. */
  readonly storeRevision: number;
  readonly at: string;
  readonly action: 'put' | 'delete';
  readonly name: string;
  /** The policy's revision after the change. */
  readonly revision: number;
  readonly client: string;
  readonly source: string;
  readonly spec?: PolicySpec;
}

export interface HistoryQuery {
  /** At most this many entries (default 100, at most 1000). */
  readonly limit?: number;
  /** Only commits after this store revision, oldest first; without it, the newest entries. */
  readonly since?: number;
  /** Only commits before this store revision (a page's `next`). */
  readonly before?: number;
}

export interface HistoryPage {
  /** Oldest first. */
  readonly entries: HistoryEntry[];
  /** Pass as before= for older entries; absent when there are none (or none kept). */
  readonly next?: number;
}

export interface PolicyStore {
  /** A short description for logs/status: "file:/abs/data" or "etcd://h1:2379,h2:2379/prefix". */
  readonly location: string;
  /** Increases on every committed change; 0 for a store never written. */
  readonly revision: number;
  /** Every policy, sorted by name. */
  list(): StoredPolicy[];
  /** How many policies there are: list().length without copying and sorting them (taken per commit for the metrics). */
  count(): number;
  /** Group commit at work (the file store): commits made durable, and the appends + fsyncs that did it. */
  groupCommit?(): { readonly commits: number; readonly fsyncs: number; readonly largestGroup: number };
  get(name: string): StoredPolicy | undefined;
  put(name: string, spec: PolicySpec, options: WriteOptions): Promise<WriteResult>;
  delete(name: string, options: WriteOptions): Promise<WriteResult>;
  /**
   * Several changes as one commit (one store revision, one change event): a
   * policy file edit lands whole or not at all. No ownership or precondition
   * checks: the caller (the policy file) is the authority for these names.
   */
  apply(changes: readonly PolicyChange[], options: { client: string; source: string }): Promise<{ storeRevision: number; changed: string[] }>;
  /**
   * All or nothing, one commit, one revision: ownership (conflict), not_found
   * for a missing delete, preconditions; the first refusal names the policy
   * and nothing is written.
   */
  batch(request: BatchRequest, options: { client: string }): Promise<BatchResult>;
  history(query?: HistoryQuery): Promise<HistoryPage>;
  /** Called after every commit, in commit order; the result unsubscribes. */
  onChange(listener: ChangeListener): () => void;
  /**
   * Marks a source (a policy file) as active: while claimed, its policies
   * refuse writes from any other source (conflict). The result releases it.
   */
  claimSource(source: string): () => void;
  /**
   * Whether the store can take writes now and its view is current (the etcd
   * store: etcd answers and its watch runs), and if not why, naming what.
   * Absent: always healthy (the file store).
   */
  health?(): { readonly ok: boolean; readonly reason?: string };
  /** Waits for pending writes, then releases the store. */
  close(): Promise<void>;
}
