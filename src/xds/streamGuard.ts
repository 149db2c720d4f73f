// Server-wide bookkeeping of ADS streams for the bounds that no single stream
// can keep: the total number open (new ones are shed beyond it), and the
// streams whose responses are not being read (reset after limits.stuckWriteMs).
// One sweep timer for the whole server, over the few streams with unwritten
// data only, so 10,000 idle streams cost nothing.

export interface GuardedStream {
  /** A number that changes whenever the client takes bytes of this stream (its progress). */
  progress(): number;
  /** Reset the stream: its client has not taken a written response for too long. */
  abortStuck(stalledMs: number): void;
}

interface Stall {
  since: number;
  marker: number;
}

export class StreamGuard {
  private open = 0;
  /** Streams with a response not yet taken by the client → when it last made progress, and how far it was. */
  private readonly unwritten = new Map<GuardedStream, Stall>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly maxStreams: number,
    private readonly stuckWriteMs: number,
  ) {}

  /** Counts a new stream in, or false when the server is full (the caller sheds it). */
  admit(): boolean {
    if (this.open >= this.maxStreams) return false;
    this.open += 1;
    return true;
  }

  release(stream: GuardedStream): void {
    this.open -= 1;
    this.unwritten.delete(stream);
  }

  openStreams(): number {
    return this.open;
  }

  /** The stream has a response in the transport that the client has not taken; progress resets the clock. */
  writing(stream: GuardedStream, now = Date.now()): void {
    // The marker is read by the sweep, not here: writes are the hot path, sweeps are rare.
    const stall = this.unwritten.get(stream);
    if (stall) stall.since = now;
    else this.unwritten.set(stream, { since: now, marker: NaN });
    this.timer ??= setInterval(() => this.sweep(), Math.max(10, Math.min(1000, Math.floor(this.stuckWriteMs / 4)))).unref();
  }

  /** Everything the stream wrote was taken. */
  written(stream: GuardedStream): void {
    this.unwritten.delete(stream);
    if (this.unwritten.size === 0 && this.timer) {
      clearInterval(this.timer);
      delete this.timer;
    }
  }

  /** A large response to a slow link is not a stuck client: any byte taken restarts the clock. */
  sweep(now = Date.now()): void {
    for (const [stream, stall] of [...this.unwritten]) {
      const marker = stream.progress();
      if (marker !== stall.marker) {
        stall.marker = marker;
        stall.since = now;
        continue;
      }
      if (now - stall.since < this.stuckWriteMs) continue;
      this.unwritten.delete(stream);
      stream.abortStuck(now - stall.since);
    }
    if (this.unwritten.size === 0 && this.timer) {
      clearInterval(this.timer);
      delete this.timer;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    delete this.timer;
    this.unwritten.clear();
  }
}
