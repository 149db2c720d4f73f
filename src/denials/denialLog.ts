// Where decoded records go: the bounded in-memory buffer, the optional JSONL
// file, the live followers (SSE), and the counters. Everything here is O(1)
// per record on the calling tick, or queued within a bound: the ALS stream
// that calls ingest shares the event loop with ADS.
import type { Metrics } from '../metrics/metrics.js';
import { DenialBuffer, type DenialBufferLimits, type StoredDenial } from './buffer.js';
import { JsonlFile } from './jsonlFile.js';
import { denialMatcher, summarize, type DenialFilter, type SourceSummary } from './query.js';
import type { DenialRecord } from './record.js';

export interface DenialLogOptions {
  readonly buffer?: Partial<DenialBufferLimits>;
  readonly file?: { readonly path: string; readonly maxBytes: number; readonly files: number };
  /** Distinct node label values on egress_xds_denials_total before the rest become "other" (default 50). */
  readonly metricNodes?: number;
  /** Live followers at once (default 64). */
  readonly maxFollowers?: number;
  readonly metrics: Metrics;
  readonly onFileError?: (error: Error) => void;
}

export interface Follower {
  /** Called once per new record the filter matches; returns false when the follower cannot keep up (it is then dropped). */
  readonly push: (record: StoredDenial) => boolean;
  readonly matches: (record: StoredDenial) => boolean;
  /** Called when the log drops the follower (too slow, or the log closes). */
  readonly end: (why: 'slow' | 'closing') => void;
}

export const DEFAULT_METRIC_NODES = 50;

export class DenialLog {
  readonly buffer: DenialBuffer;
  private readonly followers = new Set<Follower>();
  private readonly metricNodes = new Set<string>();
  private readonly maxMetricNodes: number;
  private readonly maxFollowers: number;

  private constructor(
    private readonly options: DenialLogOptions,
    private readonly file: JsonlFile | undefined,
  ) {
    this.buffer = new DenialBuffer(options.buffer);
    this.maxMetricNodes = options.metricNodes ?? DEFAULT_METRIC_NODES;
    this.maxFollowers = options.maxFollowers ?? 64;
  }

  static async open(options: DenialLogOptions): Promise<DenialLog> {
    const { metrics } = options;
    const file = options.file
      ? await JsonlFile.open({
          ...options.file,
          onDrop: (lines, why) => metrics.denialsDropped.inc({ sink: 'file', why }, lines),
          ...(options.onFileError ? { onError: options.onFileError } : {}),
        })
      : undefined;
    return new DenialLog(options, file);
  }

  private nodeLabel(node: string): string {
    if (this.metricNodes.has(node)) return node;
    if (this.metricNodes.size < this.maxMetricNodes) {
      this.metricNodes.add(node);
      return node;
    }
    return 'other';
  }

  /** Stores records (already stamped with node and revision). */
  ingest(records: readonly DenialRecord[]): void {
    const { metrics } = this.options;
    for (const record of records) {
      const stored = this.buffer.add(record);
      if (record.verdict !== 'allowed') metrics.denials.inc({ node: this.nodeLabel(record.node), reason: record.reason ?? 'unknown', verdict: record.verdict });
      this.file?.append(stored);
      for (const follower of this.followers) {
        if (!follower.matches(stored)) continue;
        if (!follower.push(stored)) {
          this.followers.delete(follower);
          metrics.denialsDropped.inc({ sink: 'follow', why: 'slow' });
          follower.end('slow');
        }
      }
    }
    metrics.denialsBuffered.set(this.buffer.size());
  }

  /** Up to filter.limit matching records, newest first. */
  query(filter: DenialFilter): StoredDenial[] {
    return this.buffer.newest(filter.limit, denialMatcher(filter), filter.node);
  }

  summary(filter: DenialFilter): SourceSummary[] {
    const buffer = this.buffer;
    const all = function* () {
      if (filter.node !== undefined) yield* buffer.newestFirst(filter.node);
      else for (const ring of buffer.byNode()) yield* ring;
    };
    return summarize(all(), filter);
  }

  /** Adds a live follower; false when there are too many already. */
  follow(follower: Follower): { ok: true; stop: () => void } | { ok: false; max: number } {
    if (this.followers.size >= this.maxFollowers) return { ok: false, max: this.maxFollowers };
    this.followers.add(follower);
    return { ok: true, stop: () => this.followers.delete(follower) };
  }

  followerCount(): number {
    return this.followers.size;
  }

  private closing: Promise<void> | undefined;

  /** Ends the live followers and flushes the file; safe to call twice. */
  close(): Promise<void> {
    return (this.closing ??= this.doClose());
  }

  private async doClose(): Promise<void> {
    for (const follower of this.followers) follower.end('closing');
    this.followers.clear();
    await this.file?.close();
  }
}
