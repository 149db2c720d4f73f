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

// Ids of the policy objects sent to workers (the cache keeps one object per policy version).
const policyIds = new WeakMap<Policy, number>();
let lastPolicyId = 0;

// Small resources (the clusters every group shares) arrive once per chunk as copies of one
// another: kept once, so 10,000 groups hold one copy of each, not 10,000.
const MAX_INTERNED = 4096;
const INTERN_MAX_BYTES = 2048;
const interned = new Map<string, EncodedResource>();
function intern(resource: EncodedResource): EncodedResource {
  if (resource.bytes.length > INTERN_MAX_BYTES) return resource;
  const key = `${resource.typeUrl}\u0000${resource.name}\u0000${resource.version}`;
  const known = interned.get(key);
  if (known) return known;
  if (interned.size >= MAX_INTERNED) interned.clear();
  interned.set(key, resource);
  return resource;
}

class CompileWorker {
  private worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private static lastId = 0;
  /**
   * The policies this worker holds: each policy version is sent to a worker once, then
   * named by its id, so the worker compiles the same object again (its memos are keyed by
   * policy object) and a set costs a few numbers to send, not a structured clone of its
   * policies. Ids of policies the cache has let go are forgotten with the next request.
   */
  private known = new WeakSet<Policy>();
  private forgotten: number[] = [];
  private readonly collected = new FinalizationRegistry<number>((id) => this.forgotten.push(id));

  constructor(private readonly options: CompileOptions) {
    this.worker = this.start();
  }

  private start(): Worker {
    const worker = new Worker(new URL('./compileWorker.js', import.meta.url), { workerData: { options: this.options } });
    worker.unref();
    this.known = new WeakSet();
    worker.on('message', (reply: CompileReply) => {
      const pending = this.pending.get(reply.id);
      if (!pending) return;
      this.pending.delete(reply.id);
      if ('error' in reply) pending.reject(new Error(`compile worker: ${reply.error}`));
      else pending.resolve(reply.results.map((resources) => resources.map(intern)));
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
    const policies: [number, Policy][] = [];
    const ids = sets.map((set) =>
      set.map((policy) => {
        let policyId = policyIds.get(policy);
        if (policyId === undefined) policyIds.set(policy, (policyId = ++lastPolicyId));
        if (!this.known.has(policy)) {
          this.known.add(policy);
          this.collected.register(policy, policyId);
          policies.push([policyId, policy]);
        }
        return policyId;
      }),
    );
    const forget = this.forgotten.splice(0);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const request: CompileRequest = { id, policies, sets: ids, forget };
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
