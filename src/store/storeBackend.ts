// Which store a control plane keeps its policies in: the embedded file store
// (one machine, the default) or etcd (replicas sharing one state). Opening
// one is the only place that knows both.
import type { Logger } from '../log.js';
import { type EtcdStoreOptions, openEtcdPolicyStore } from './etcdStore.js';
import { openPolicyStore, type StoreTuning } from './policyStore.js';
import type { PolicyStore } from './store.js';

export type StoreBackend =
  | { readonly kind: 'file'; readonly dataDir: string }
  | { readonly kind: 'etcd'; readonly etcd: Omit<EtcdStoreOptions, 'logger'> };

/** `tuning` (history retention, compaction) applies to the file store; etcd keeps its own history. */
export function openStoreBackend(backend: StoreBackend, logger: Logger, tuning?: StoreTuning): Promise<PolicyStore> {
  return backend.kind === 'file' ? openPolicyStore(backend.dataDir, { logger, ...tuning }) : openEtcdPolicyStore({ ...backend.etcd, logger });
}
