// One page of the history, cut from entries kept in store-revision order.
// A page never splits a commit: a batch's entries share one store revision,
// and a cursor (since / before) is a store revision, so a split commit would
// lose or repeat entries when paging. A page holds at most `limit` entries,
// except that a single commit larger than the limit is returned whole.
import type { HistoryEntry, HistoryPage, HistoryQuery } from './store.js';

export const DEFAULT_HISTORY_LIMIT = 100;
export const MAX_HISTORY_LIMIT = 1000;

/** The first index whose entry's storeRevision is greater than `revision` (entries sorted). */
function firstAfter(entries: readonly HistoryEntry[], revision: number): number {
  let low = 0;
  let high = entries.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (entries[mid]!.storeRevision <= revision) low = mid + 1;
    else high = mid;
  }
  return low;
}

/**
 * With `since`: the oldest commits after it (page forward with the last
 * entry's storeRevision). Otherwise the newest commits before `before` (or
 * overall); `next` is set when older entries remain.
 */
export function historyPage(entries: readonly HistoryEntry[], query: HistoryQuery = {}): HistoryPage {
  const limit = Math.min(Math.max(Math.trunc(query.limit ?? DEFAULT_HISTORY_LIMIT), 1), MAX_HISTORY_LIMIT);
  const from = query.since === undefined ? 0 : firstAfter(entries, query.since);
  const to = query.before === undefined ? entries.length : firstAfter(entries, query.before - 1);
  if (from >= to) return { entries: [] };
  if (query.since !== undefined) {
    let end = Math.min(from + limit, to);
    // Do not cut the last commit: drop it, unless it is the only one.
    if (end < to && entries[end]!.storeRevision === entries[end - 1]!.storeRevision) {
      const cut = entries[end]!.storeRevision;
      let back = end;
      while (back > from && entries[back - 1]!.storeRevision === cut) back--;
      if (back > from) end = back;
      else while (end < to && entries[end]!.storeRevision === cut) end++;
    }
    return { entries: entries.slice(from, end) };
  }
  let start = Math.max(to - limit, from);
  if (start > from && entries[start - 1]!.storeRevision === entries[start]!.storeRevision) {
    const cut = entries[start]!.storeRevision;
    let forward = start;
    while (forward < to && entries[forward]!.storeRevision === cut) forward++;
    if (forward < to) start = forward;
    else while (start > from && entries[start - 1]!.storeRevision === cut) start--;
  }
  const page = entries.slice(start, to);
  return start > from ? { entries: page, next: entries[start]!.storeRevision } : { entries: page };
}
