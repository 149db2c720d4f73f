// Coalescing: store commits that come close together are applied to the
// snapshot cache as one change, so a burst of writes costs one compile per
// affected group and one push per stream, not one per write. A change waits
// for a quiet `windowMs` after the latest commit, never more than
// `maxDelayMs` after the first one it holds; while an apply is compiling, new
// commits gather for the next. Only the newest version of each policy is
// kept, so the last state is always the one delivered.
//
// A compile overtaken by a newer version of one of its policies (a commit
// that came while it compiled) is given up rather than pushed, if its oldest
// commit is younger than `maxDelayMs`: pushing it would make every Envoy of
// the group take, decode and ACK a state already out of date before it could
// be sent the newest (one response in flight per type per stream), which
// doubled the time a change took to reach them under a stream of changes
// (BENCHMARKS.md, hostile mix). Past `maxDelayMs` it is pushed all the same,
// so changes that never stop still reach Envoy at least that often.
import type { Logger } from '../log.js';
import type { Policy } from '../policy/model.js';
import { SupersededBuild, type GroupBuilder, type PolicyChanges } from './cache.js';

/** What the scheduler drives: SnapshotCache.applyChanges. */
export interface ChangeTarget {
  applyChanges(changes: PolicyChanges, build: GroupBuilder, changedAt: bigint): Promise<void>;
}

export interface PushTiming {
  /** Quiet time after a commit before its change is applied (default 10 ms). */
  readonly windowMs: number;
  /** Longest a commit waits for later ones (default 100 ms). */
  readonly maxDelayMs: number;
}

export const DEFAULT_PUSH_TIMING: PushTiming = { windowMs: 10, maxDelayMs: 100 };

export interface CommittedChange {
  readonly revision: number;
  readonly puts: readonly Policy[];
  readonly deletes: readonly string[];
}

export class PushScheduler {
  private pending = new Map<string, Policy | undefined>();
  private pendingRevision = 0;
  /** process.hrtime.bigint() of the oldest commit held (what push latency is measured from). */
  private oldestAt?: bigint;
  /** Date.now() of the oldest commit held (what maxDelayMs counts from). */
  private firstAtMs = 0;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private idleWaiters: (() => void)[] = [];
  private stopped = false;
  /** The newest store revision handed to the scheduler. */
  latestRevision: number;
  /** The store revision whose state the cache serves now. */
  servedRevision: number;
  /** Applies (pushes) made, and commits they covered: coalescing at work is fewer of the first. */
  applies = 0;
  commits = 0;
  /** Compiles given up before they were pushed: a newer version of one of their policies came meanwhile. */
  superseded = 0;

  constructor(
    private readonly cache: ChangeTarget,
    private readonly build: GroupBuilder,
    private readonly logger: Logger,
    private readonly timing: PushTiming = DEFAULT_PUSH_TIMING,
    startRevision = 0,
  ) {
    this.latestRevision = startRevision;
    this.servedRevision = startRevision;
  }

  /** A commit of the store; applied within the window. */
  enqueue(change: CommittedChange, at: bigint = process.hrtime.bigint()): void {
    if (this.stopped) return;
    for (const policy of change.puts) this.pending.set(policy.name, policy);
    for (const name of change.deletes) this.pending.set(name, undefined);
    this.commits += 1;
    this.pendingRevision = Math.max(this.pendingRevision, change.revision);
    this.latestRevision = Math.max(this.latestRevision, change.revision);
    if (this.oldestAt === undefined) {
      this.oldestAt = at;
      this.firstAtMs = Date.now();
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.running || this.stopped || (this.pending.size === 0 && this.pendingRevision <= this.servedRevision)) return;
    if (this.timer) clearTimeout(this.timer);
    const waited = Date.now() - this.firstAtMs;
    const delay = Math.max(0, Math.min(this.timing.windowMs, this.timing.maxDelayMs - waited));
    this.timer = setTimeout(() => {
      delete this.timer;
      this.running = this.run().then((ok) => {
        delete this.running;
        // After a failure, the held changes wait for the next commit (no retry loop).
        if (ok) this.schedule();
        if (!this.running && !this.timer) for (const resolve of this.idleWaiters.splice(0)) resolve();
      });
    }, delay);
  }

  private async run(): Promise<boolean> {
    const changes: PolicyChanges = this.pending;
    const revision = this.pendingRevision;
    const at = this.oldestAt ?? process.hrtime.bigint();
    const firstAtMs = this.firstAtMs;
    this.pending = new Map();
    delete this.oldestAt;
    const started = Date.now();
    try {
      await this.cache.applyChanges(changes, this.supersedable(changes, firstAtMs), at);
      this.applies += 1;
      this.servedRevision = Math.max(this.servedRevision, revision);
      this.logger.info('policy change applied', { revision, policies: changes.size, ms: Date.now() - started });
      return true;
    } catch (error) {
      if (this.stopped) return false;
      if (error instanceof SupersededBuild) {
        // Nothing was moved: the changes join the newer ones, which keep their own versions,
        // and are applied with them at once (the window of the oldest has passed).
        this.superseded += 1;
        for (const [name, policy] of changes) if (!this.pending.has(name)) this.pending.set(name, policy);
        if (this.oldestAt === undefined || at < this.oldestAt) this.oldestAt = at;
        this.firstAtMs = Math.min(this.firstAtMs, firstAtMs);
        this.pendingRevision = Math.max(this.pendingRevision, revision);
        this.logger.debug('policy change superseded while compiling; applied with the newer one', { revision, policies: changes.size, ms: Date.now() - started });
        return true;
      }
      // The cache is unchanged (an apply commits whole or not at all); the policies stay as
      // stored and the next change retries them with it.
      this.logger.error('failed to apply a policy change to the snapshots; retried with the next change', { error, revision });
      for (const [name, policy] of changes) if (!this.pending.has(name)) this.pending.set(name, policy);
      if (this.oldestAt === undefined) {
        this.oldestAt = at;
        this.firstAtMs = Date.now();
      }
      return false;
    }
  }

  /**
   * The builder for one apply: when its first slice is compiled, it decides once for all its
   * slices (SupersededBuild's rule) whether a newer commit of one of the apply's policies, come
   * meanwhile, supersedes it. Only while the oldest commit it carries is younger than maxDelayMs.
   */
  private supersedable(changes: PolicyChanges, firstAtMs: number): GroupBuilder {
    let superseded: boolean | undefined;
    return async (sets) => {
      const results = await this.build(sets);
      superseded ??= this.newerWaiting(changes, firstAtMs);
      if (superseded) throw new SupersededBuild();
      return results;
    };
  }

  private newerWaiting(changes: PolicyChanges, firstAtMs: number): boolean {
    if (this.stopped || Date.now() - firstAtMs >= this.timing.maxDelayMs) return false;
    for (const name of this.pending.keys()) if (changes.has(name)) return true;
    return false;
  }

  /** Resolves once nothing is waiting or compiling (tests, shutdown). */
  idle(): Promise<void> {
    if (!this.running && !this.timer) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    delete this.timer;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}
