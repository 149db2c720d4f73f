// The optional denial log on disk: one JSON record per line, appended by one
// background writer, rotated by size (FILE → FILE.1 → … → FILE.K, the oldest
// dropped). Nothing waits for the disk: records queue in memory up to a byte
// bound, and past it they are dropped and counted, so a slow or full disk
// costs lines in the file, never time on the ADS path or unbounded memory.
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises';

export interface JsonlFileOptions {
  readonly path: string;
  /** Rotate when the file would pass this size. */
  readonly maxBytes: number;
  /** Rotated files kept beside the current one (0: the file is truncated instead). */
  readonly files: number;
  /** Queued bytes past which lines are dropped (default 8 MiB). */
  readonly maxQueuedBytes?: number;
  /** Called with the number of lines dropped (queue full or a write failed). */
  readonly onDrop?: (lines: number, why: 'queue-full' | 'write-error') => void;
  readonly onError?: (error: Error) => void;
}

export class JsonlFile {
  private handle: FileHandle | undefined;
  private size = 0;
  private queue: string[] = [];
  private queuedBytes = 0;
  private writing: Promise<void> | undefined;
  private closed = false;
  private readonly maxQueuedBytes: number;

  private constructor(private readonly options: JsonlFileOptions) {
    this.maxQueuedBytes = options.maxQueuedBytes ?? 8 * 1024 * 1024;
  }

  /** Opens (creating) the file for appending; fails at once when it cannot. */
  static async open(options: JsonlFileOptions): Promise<JsonlFile> {
    if (!(Number.isSafeInteger(options.maxBytes) && options.maxBytes >= 1024)) throw new RangeError(`the denial log's size bound must be at least 1024 bytes, not ${options.maxBytes}`);
    if (!(Number.isSafeInteger(options.files) && options.files >= 0 && options.files <= 100)) throw new RangeError(`the denial log keeps 0 to 100 rotated files, not ${options.files}`);
    const file = new JsonlFile(options);
    file.handle = await open(options.path, 'a', 0o640);
    file.size = (await stat(options.path)).size;
    return file;
  }

  /** Queues one line; never blocks. */
  append(record: unknown): void {
    if (this.closed) return;
    const line = `${JSON.stringify(record)}\n`;
    if (this.queuedBytes + line.length > this.maxQueuedBytes) {
      this.options.onDrop?.(1, 'queue-full');
      return;
    }
    this.queue.push(line);
    this.queuedBytes += line.length;
    this.writing ??= this.drain().finally(() => {
      this.writing = undefined;
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0 && this.handle) {
      const lines = this.queue;
      this.queue = [];
      this.queuedBytes = 0;
      // Chunks that fit what is left of the file, rotating between them (a line is never split).
      let i = 0;
      while (i < lines.length) {
        const room = Math.max(this.options.maxBytes - this.size, 0);
        let end = i;
        let bytes = 0;
        while (end < lines.length && bytes + Buffer.byteLength(lines[end]!) <= room) bytes += Buffer.byteLength(lines[end++]!);
        try {
          if (end === i) {
            // Nothing fits: rotate first (a line longer than the bound goes alone into a fresh file).
            if (this.size > 0) {
              await this.rotate();
              continue;
            }
            end = i + 1;
          }
          const buffer = Buffer.from(lines.slice(i, end).join(''));
          await this.handle!.write(buffer);
          this.size += buffer.length;
        } catch (error) {
          this.options.onDrop?.(end - i, 'write-error');
          this.options.onError?.(error as Error);
          if (!this.handle) {
            this.options.onDrop?.(lines.length - end, 'write-error');
            return;
          }
        }
        i = end;
      }
    }
  }

  private async rotate(): Promise<void> {
    await this.handle?.close();
    this.handle = undefined;
    const { path, files } = this.options;
    if (files === 0) {
      this.handle = await open(path, 'w', 0o640);
    } else {
      await rm(`${path}.${files}`, { force: true });
      for (let i = files - 1; i >= 1; i--) await rename(`${path}.${i}`, `${path}.${i + 1}`).catch(() => undefined);
      await rename(path, `${path}.1`);
      this.handle = await open(path, 'a', 0o640);
    }
    this.size = 0;
  }

  /** Writes what is queued, then closes. */
  async close(): Promise<void> {
    this.closed = true;
    await this.writing;
    if (this.queue.length > 0) await this.drain();
    await this.handle?.close();
    this.handle = undefined;
  }
}
