// Shared by the store tests: temp data dirs and canonical specs.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PolicySpec } from '../../src/policy/model.js';
import type { HistoryEntry, PolicyStore } from '../../src/store/policyStore.js';

export async function tempDir(prefix = 'egress-xds-store-'): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export const spec = (...sni: string[]): PolicySpec => ({ allow: { sni: [...sni].sort() } });

/** Every history entry, paging through the store's 1000-entry limit. */
export async function allHistory(store: PolicyStore): Promise<HistoryEntry[]> {
  const all: HistoryEntry[] = [];
  for (;;) {
    const page = await store.history({ since: all.at(-1)?.storeRevision ?? 0, limit: 1000 });
    if (page.entries.length === 0) return all;
    all.push(...page.entries);
  }
}
