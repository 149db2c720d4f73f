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
  /**
   * The guard's record for this stream, kept on the stream and reused: a push
   * marks 10,000 streams writing and then written, and a record allocated
   * each time (and a map entry per stream) showed in the push profile.
   */
  readonly stall: Stall;
}

export class Stall {
  /** When the stream last wrote or made progress (Date.now()). */
  since = 0;
  /** progress() when the sweep last looked; NaN before it has. */
  marker = NaN;
  /** Where the stream is in the guard's list of streams with unwritten data; -1 when not in it. */
  at = -1;
}

export class StreamGuard {
  private open = 0;
  /**
   * Streams with a response not yet taken by the client (each one's Stall says since when and
   * where it is in here). An array whose entries know their place, not a Set: a push adds
   * and removes every stream once, and a Set's table grew and shrank (allocated) with it.
   */
  private readonly unwritten: GuardedStream[] = [];
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
    this.unlist(stream);
  }

  private unlist(stream: GuardedStream): void {
    const at = stream.stall.at;
    if (at < 0) return;
    stream.stall.at = -1;
    // The last one takes the leaving one's place.
    const last = this.unwritten.pop()!;
    if (last !== stream) {
      this.unwritten[at] = last;
      last.stall.at = at;
    }
  }

  openStreams(): number {
    return this.open;
  }

  /** The stream has a response in the transport that the client has not taken; progress resets the clock. */
  writing(stream: GuardedStream, now = Date.now()): void {
    // The marker is read by the sweep, not here: writes are the hot path, sweeps are rare.
    const stall = stream.stall;
    stall.since = now;
    if (stall.at < 0) {
      stall.at = this.unwritten.length;
      stall.marker = NaN;
      this.unwritten.push(stream);
    }
    this.timer ??= setInterval(() => this.sweep(), Math.max(10, Math.min(1000, Math.floor(this.stuckWriteMs / 4)))).unref();
  }

  /** Everything the stream wrote was taken. */
  written(stream: GuardedStream): void {
    this.unlist(stream);
    if (this.unwritten.length === 0 && this.timer) {
      clearInterval(this.timer);
      delete this.timer;
    }
  }

  /** A large response to a slow link is not a stuck client: any byte taken restarts the clock. */
  sweep(now = Date.now()): void {
    // From the end: a stream unlisted here is replaced by the last one, which was visited already.
    for (let i = this.unwritten.length - 1; i >= 0; i--) {
      const stream = this.unwritten[i];
      if (stream === undefined) continue; // the list shrank under us (abortStuck closing others)
      const stall = stream.stall;
      const marker = stream.progress();
      if (marker !== stall.marker) {
        stall.marker = marker;
        stall.since = now;
        continue;
      }
      if (now - stall.since < this.stuckWriteMs) continue;
      this.unlist(stream);
      stream.abortStuck(now - stall.since);
    }
    if (this.unwritten.length === 0 && this.timer) {
      clearInterval(this.timer);
      delete this.timer;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    delete this.timer;
    for (const stream of this.unwritten) stream.stall.at = -1;
    this.unwritten.length = 0;
  }
}
