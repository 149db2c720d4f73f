// What a benchmark server's main thread did, on the wall clock (epoch ms), so a
// driver can line its slow requests up with it: garbage collections (kind and
// pause), event-loop stalls (a 2 ms timer that fired late: something ran
// synchronously that long), admin HTTP requests (received → response
// finished, via node's diagnostics channels) and named spans a server wraps
// around its own steps (store write, apply). Off unless a bench turns it on.
import { subscribe } from 'node:diagnostics_channel';
import { constants, PerformanceObserver, performance } from 'node:perf_hooks';

export interface TraceEvent {
  /** What: gc:scavenge, gc:mark-compact, gc:incremental, gc:weak, stall, http, or a span's name. */
  readonly what: string;
  /** Start, epoch ms. */
  readonly at: number;
  readonly ms: number;
}

const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'gc:scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'gc:mark-compact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'gc:incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'gc:weak',
};

const now = (): number => performance.timeOrigin + performance.now();

export interface MainThreadTrace {
  /** Events since the last take (bounded: the newest 50,000 to 100,000). */
  take(): TraceEvent[];
  /** Wraps an async step: its start and settle are recorded as one event. */
  span<T>(what: string, run: () => Promise<T>): Promise<T>;
  stop(): void;
}

/** stallMs: record event-loop stalls longer than this (a 2 ms timer; costs a wake-up every 2 ms), or undefined for none. */
export function startMainThreadTrace(stallMs: number | undefined = 8): MainThreadTrace {
  let events: TraceEvent[] = [];
  const record = (event: TraceEvent) => {
    if (events.length >= 100_000) events.splice(0, 50_000);
    events.push(event);
  };
  const gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = ((entry as { detail?: { kind?: number } }).detail)?.kind ?? -1;
      record({ what: GC_KINDS[kind] ?? `gc:${kind}`, at: performance.timeOrigin + entry.startTime, ms: entry.duration });
    }
  });
  gc.observe({ entryTypes: ['gc'] });

  // A timer due every 2 ms: when it fires `late` ms after it was due, the loop was busy that long.
  let due = now() + 2;
  let stopped = false;
  const tick = () => {
    if (stopped || stallMs === undefined) return;
    const t = now();
    if (t - due > stallMs) record({ what: 'stall', at: due, ms: t - due });
    due = t + 2;
    setTimeout(tick, 2).unref();
  };
  if (stallMs !== undefined) setTimeout(tick, 2).unref();

  const started = new WeakMap<object, number>();
  const onStart = (message: unknown) => started.set((message as { request: object }).request, now());
  const onFinish = (message: unknown) => {
    const { request } = message as { request: object };
    const at = started.get(request);
    if (at !== undefined) record({ what: 'http', at, ms: now() - at });
  };
  subscribe('http.server.request.start', onStart);
  subscribe('http.server.response.finish', onFinish);

  return {
    take() {
      const taken = events;
      events = [];
      return taken;
    },
    async span(what, run) {
      const at = now();
      try {
        return await run();
      } finally {
        record({ what, at, ms: now() - at });
      }
    },
    stop() {
      stopped = true;
      gc.disconnect();
    },
  };
}

/** The events overlapping [from, to] (epoch ms), by kind: count and total ms, and the longest. */
export function overlapping(events: readonly TraceEvent[], from: number, to: number): string {
  const by = new Map<string, { n: number; ms: number; max: number }>();
  for (const event of events) {
    if (event.at > to || event.at + event.ms < from) continue;
    const entry = by.get(event.what) ?? { n: 0, ms: 0, max: 0 };
    entry.n += 1;
    entry.ms += event.ms;
    entry.max = Math.max(entry.max, event.ms);
    by.set(event.what, entry);
  }
  return [...by].map(([what, { n, ms, max }]) => `${what} ${n}× ${ms.toFixed(1)} ms (max ${max.toFixed(1)})`).join('; ');
}
