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

/** Policies a worker keeps (every version it was sent) before it is told to start over. */
const MAX_HELD_POLICIES = 100_000;

// Policy objects are immutable values (the snapshot cache keeps one per stored version), so
// an object's id names its content for the life of the process.
const policyIds = new WeakMap<Policy, number>();
let lastPolicyId = 0;
function policyIdOf(policy: Policy): number {
  let id = policyIds.get(policy);
  if (id === undefined) policyIds.set(policy, (id = ++lastPolicyId));
  return id;
}

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
      // A new worker holds no policies.
      this.held.clear();
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

  /** Ids of the policies this worker holds (compileWorker.ts). */
  private readonly held = new Set<number>();

  compile(sets: readonly (readonly Policy[])[]): Promise<EncodedResource[][]> {
    const id = ++CompileWorker.lastId;
    // Bounded: past the limit the worker forgets everything and is sent this request's policies.
    const reset = this.held.size > MAX_HELD_POLICIES;
    if (reset) this.held.clear();
    const policies: [number, Policy][] = [];
    const idSets = sets.map((set) =>
      set.map((policy) => {
        const policyId = policyIdOf(policy);
        if (!this.held.has(policyId)) {
          this.held.add(policyId);
          policies.push([policyId, policy]);
        }
        return policyId;
      }),
    );
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const request: CompileRequest = { id, sets: idSets, policies, ...(reset && { reset }) };
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

/** A worker index from the set's policy names (not their content, which an edit changes). */
function affinity(set: readonly Policy[], workers: number): number {
  let hash = 0;
  for (const policy of set) for (let i = 0; i < policy.name.length; i++) hash = (Math.imul(hash, 31) + policy.name.charCodeAt(i)) | 0;
  return (hash >>> 0) % workers;
}

export class CompilePool {
  private readonly workers: CompileWorker[];
  private turn = 0;

  constructor(options: CompileOptions = {}, size = defaultCompileWorkers()) {
    if (!Number.isSafeInteger(size) || size < 1) throw new RangeError(`compile workers must be a positive integer, not ${String(size)}`);
    this.workers = Array.from({ length: size }, () => new CompileWorker(options));
  }

  get size(): number {
    return this.workers.length;
  }

  /** Compiles and encodes each set; results in the order of the sets. */
  readonly build: GroupBuilder = async (sets) => {
    // A few sets (one host's edit): each to the worker its policy names hash to, so the same
    // group goes to the same worker edit after edit and finds its memoised fragments there
    // (a round-robin turn would send it to a worker whose memo holds an older version).
    if (sets.length < CHUNK) return Promise.all(sets.map((set) => this.workers[affinity(set, this.workers.length)]!.compile([set]).then((r) => r[0]!)));
    const chunks: Promise<EncodedResource[][]>[] = [];
    for (let i = 0; i < sets.length; i += CHUNK) {
      const worker = this.workers[this.turn++ % this.workers.length]!;
      chunks.push(worker.compile(sets.slice(i, i + CHUNK)));
    }
    return (await Promise.all(chunks)).flat();
  };

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
  }
}
