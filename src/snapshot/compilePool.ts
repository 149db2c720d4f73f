// Worker threads that compile node groups (src/snapshot/compileWorker.ts),
// so a change that touches thousands of groups does not hold the event loop.
// Whatever src/compile does inside, it is called through the same entry as
// on the main thread (egressGroupCompiler), with the same options.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { CompileOptions } from '../compile/index.js';
import type { Policy } from '../policy/model.js';
import type { GroupBuilder } from './cache.js';
import type { EncodedResource } from './encodedResource.js';
import type { CompileReply, CompileRequest } from './compileWorker.js';

/** Sets per message: large enough that messaging costs little beside compiling, small enough to spread over the workers. */
const CHUNK = 32;

/** The default: one thread per core beyond the one the event loop uses, at least one, at most four. */
export const defaultCompileWorkers = (): number => Math.max(1, Math.min(4, availableParallelism() - 1));

interface Pending {
  readonly resolve: (results: EncodedResource[][]) => void;
  readonly reject: (error: Error) => void;
}

class CompileWorker {
  private worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private static lastId = 0;

  constructor(private readonly options: CompileOptions) {
    this.worker = this.start();
  }

  private start(): Worker {
    const worker = new Worker(new URL('./compileWorker.js', import.meta.url), { workerData: { options: this.options } });
    worker.unref();
    worker.on('message', (reply: CompileReply) => {
      const pending = this.pending.get(reply.id);
      if (!pending) return;
      this.pending.delete(reply.id);
      if ('error' in reply) pending.reject(new Error(`compile worker: ${reply.error}`));
      else pending.resolve(reply.results);
    });
    // A worker that dies fails what it held; the next request gets a new one.
    const fail = (error: Error) => {
      for (const pending of this.pending.values()) pending.reject(error);
      this.pending.clear();
      if (this.worker === worker) this.worker = this.start();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (code !== 0 && !this.closed) fail(new Error(`compile worker exited with code ${code}`));
    });
    return worker;
  }

  compile(sets: readonly (readonly Policy[])[]): Promise<EncodedResource[][]> {
    const id = ++CompileWorker.lastId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const request: CompileRequest = { id, sets };
      this.worker.postMessage(request);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const pending of this.pending.values()) pending.reject(new Error('compile pool closed'));
    this.pending.clear();
    await this.worker.terminate();
  }
}

/**
 * A stable hash of the names of a set's node-specific policies (all names when none is):
 * the same group keeps its worker across versions of its policies.
 */
export function affinity(set: readonly Policy[]): number {
  let h = 0x811c9dc5;
  let any = false;
  for (const pass of [false, true]) {
    for (const policy of set) {
      if (!pass && policy.nodes === undefined) continue;
      any = true;
      for (let i = 0; i < policy.name.length; i++) h = Math.imul(h ^ policy.name.charCodeAt(i), 0x01000193);
      h = Math.imul(h ^ 0x2c, 0x01000193);
    }
    if (any) break;
  }
  return h >>> 0;
}

export class CompilePool {
  private readonly workers: CompileWorker[];

  constructor(options: CompileOptions = {}, size = defaultCompileWorkers()) {
    if (!Number.isSafeInteger(size) || size < 1) throw new RangeError(`compile workers must be a positive integer, not ${String(size)}`);
    this.workers = Array.from({ length: size }, () => new CompileWorker(options));
  }

  get size(): number {
    return this.workers.length;
  }

  /**
   * Compiles and encodes each set; results in the order of the sets. Each set goes to the
   * worker its node-specific policies' names hash to, so the next compile of that group (a
   * global change, an edit of its own policy) finds the group's fragments memoised in the
   * worker that built them, and each worker holds only its share of the fleet's fragments.
   */
  readonly build: GroupBuilder = async (sets) => {
    const byWorker: number[][] = this.workers.map(() => []);
    for (let i = 0; i < sets.length; i++) byWorker[affinity(sets[i]!) % this.workers.length]!.push(i);
    const results: EncodedResource[][] = new Array<EncodedResource[]>(sets.length);
    const chunks: Promise<void>[] = [];
    byWorker.forEach((indices, w) => {
      for (let i = 0; i < indices.length; i += CHUNK) {
        const part = indices.slice(i, i + CHUNK);
        chunks.push(
          this.workers[w]!.compile(part.map((k) => sets[k]!)).then((built) => {
            part.forEach((k, j) => (results[k] = built[j]!));
          }),
        );
      }
    });
    await Promise.all(chunks);
    return results;
  };

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
  }
}
