// Worker threads that compile node groups (src/snapshot/compileWorker.ts),
// so a change that touches thousands of groups does not hold the event loop.
// Whatever src/compile does inside, it is called through the same entry as
// on the main thread (egressGroupCompiler), with the same options.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { CompileOptions } from '../compile/index.js';
import type { Policy } from '../policy/model.js';
import type { GroupBuilder } from './cache.js';
import { LARGE_RESOURCE_BYTES, type EncodedResource } from './encodedResource.js';
import type { CompileReply, CompileRequest, CompileWorkerData, PackedResource, ResourceRef, WarmupReport } from './compileWorker.js';
import { defaultYoungGenerationForWorkers } from './workerHeap.js';

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
  if (id === undefined) {
    policyIds.set(policy, (id = ++lastPolicyId));
    collected.register(policy, id);
  }
  return id;
}

// A policy version the main thread no longer holds (the cache let go of it: superseded or
// deleted) can never be asked for again, so the workers holding it are told to forget it
// with their next request. Without this a worker keeps every version it was ever sent, up
// to MAX_HELD_POLICIES: at a thousand writes a second, a minute of superseded allowlists.
const liveWorkers = new Set<CompileWorker>();
const collected = new FinalizationRegistry<number>((policyId) => {
  for (const worker of liveWorkers) worker.forget(policyId);
});

// Resources the main thread holds, by content (type, name, version: the version hashes the
// bytes). A worker refers to a resource it sent before (compileWorker.ts, ResourceRef) and
// this resolves it; a small resource that arrives again with its bytes (the clusters every
// group shares, once per chunk) is replaced by the one held, so 10,000 groups hold one copy
// of each, not 10,000. Held weakly: what no snapshot holds any more is forgotten, and a
// reference to it is answered by asking the worker for the bytes again.
const held = new Map<string, WeakRef<EncodedResource>>();
const released = new FinalizationRegistry<string>((key) => {
  if (held.get(key)?.deref() === undefined) held.delete(key);
});
const keyOf = (r: ResourceRef): string => `${r.typeUrl}\u0000${r.name}\u0000${r.version}`;

/** The resource held for `key`, if any. */
const heldResource = (key: string): EncodedResource | undefined => held.get(key)?.deref();

/** The object to keep for a resource that arrived with its bytes: the one held already, or this one, now held. */
function canonical(resource: EncodedResource): EncodedResource {
  // Large ones (a host's listener) are one group's own, and their room serves one response (wire.ts).
  if (resource.bytes.byteLength >= LARGE_RESOURCE_BYTES) return resource;
  const key = keyOf(resource);
  const known = heldResource(key);
  if (known) return known;
  held.set(key, new WeakRef(resource));
  released.register(resource, key);
  return resource;
}

/** The resource a packed one stands for: its bytes a view of the reply's packed buffer (compileWorker.ts, PackedResource). */
const unpacked = ({ typeUrl, name, version, at, length }: PackedResource, packed: ArrayBuffer | undefined): EncodedResource => {
  if (!packed || at + length > packed.byteLength) throw new Error(`compile worker: ${name} packed outside the reply's buffer`);
  return { typeUrl, name, version, bytes: new Uint8Array(packed, at, length) };
};

/**
 * Resolves a reply's resources in order (a reference may name a resource sent earlier in the same reply); undefined when one is not held.
 * Packed resources are views of the one buffer: it lives while one of them does, so its room is
 * taken back when the last of its resources is dropped (a group's, mostly, replaced together).
 */
function resolve(results: readonly (readonly (EncodedResource | ResourceRef | PackedResource)[])[], packed?: ArrayBuffer): EncodedResource[][] | undefined {
  const resolved: EncodedResource[][] = [];
  for (const resources of results) {
    const list: EncodedResource[] = [];
    for (const resource of resources) {
      const known = 'bytes' in resource ? canonical(resource) : 'at' in resource ? canonical(unpacked(resource, packed)) : heldResource(keyOf(resource));
      if (!known) return undefined;
      list.push(known);
    }
    resolved.push(list);
  }
  return resolved;
}

/** Resources the pool holds by content now, and requests repeated for the bytes of a resource no longer held (tests, metrics). */
export const resourceStats = { held: (): number => held.size, fullRequests: 0 };

interface Pending {
  /** Undefined when a reference named a resource not held (compile asks again, for the bytes). */
  readonly resolve: (results: EncodedResource[][] | undefined) => void;
  readonly reject: (error: Error) => void;
}

class CompileWorker {
  private worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private static lastId = 0;
  /** The current worker's warm-up report, once it has sent it. */
  private warmupReport?: WarmupReport['warmup'];
  private warmupWaiters: ((report: WarmupReport['warmup']) => void)[] = [];

  constructor(
    private readonly options: CompileOptions,
    private readonly warmup: boolean,
  ) {
    this.worker = this.start();
    liveWorkers.add(this);
  }

  private start(): Worker {
    defaultYoungGenerationForWorkers();
    const workerData: CompileWorkerData = { options: this.options, warmup: this.warmup };
    const worker = new Worker(new URL('./compileWorker.js', import.meta.url), { workerData });
    worker.unref();
    delete this.warmupReport;
    worker.on('message', (reply: CompileReply | WarmupReport) => {
      if ('warmup' in reply) {
        this.warmupReport = reply.warmup;
        for (const resolve of this.warmupWaiters.splice(0)) resolve(reply.warmup);
        return;
      }
      const pending = this.pending.get(reply.id);
      if (!pending) return;
      this.pending.delete(reply.id);
      if ('error' in reply) pending.reject(new Error(`compile worker: ${reply.error}`));
      else {
        // Resolved here, as the reply arrives: a reference in a later reply finds what this one sent.
        let resolved: EncodedResource[][] | undefined;
        try {
          resolved = resolve(reply.results, reply.packed);
        } catch (error) {
          // A malformed reply fails its request (compiled on the event loop instead), not the process.
          return pending.reject(error as Error);
        }
        pending.resolve(resolved);
      }
    });
    // A worker that dies fails what it held; the next request gets a new one.
    const fail = (error: Error) => {
      // A new worker holds no policies.
      this.held.clear();
      this.forgotten = [];
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
  /** Held ids whose policy the main thread let go of: sent with the next request. */
  private forgotten: number[] = [];

  /** Resolves with the warm-up's report once the worker has sent it; at once (no step) without a warm-up. */
  warmed(): Promise<WarmupReport['warmup']> {
    if (!this.warmup) return Promise.resolve({ steps: 0, completed: false });
    if (this.warmupReport) return Promise.resolve(this.warmupReport);
    return new Promise((resolve) => this.warmupWaiters.push(resolve));
  }

  heldCount(): number {
    return this.held.size;
  }

  forget(policyId: number): void {
    if (this.held.delete(policyId)) this.forgotten.push(policyId);
  }

  async compile(sets: readonly (readonly Policy[])[]): Promise<EncodedResource[][]> {
    const resolved = await this.request(sets, false);
    if (resolved) return resolved;
    // A reference to a resource no snapshot held any more (a group left and came back): the bytes, again.
    resourceStats.fullRequests += 1;
    return (await this.request(sets, true))!;
  }

  /** Full requests are resolved whatever is held: every resource comes with its bytes. */
  private request(sets: readonly (readonly Policy[])[], full: boolean): Promise<EncodedResource[][] | undefined> {
    const id = ++CompileWorker.lastId;
    // Bounded: past the limit the worker forgets everything and is sent this request's policies.
    const reset = this.held.size > MAX_HELD_POLICIES;
    if (reset) this.held.clear();
    const forget = reset ? [] : this.forgotten;
    this.forgotten = [];
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
      const request: CompileRequest = { id, sets: idSets, policies, ...(reset && { reset }), ...(forget.length > 0 && { forget }), ...(full && { full }) };
      this.worker.postMessage(request);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    liveWorkers.delete(this);
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

  /** warmup: each worker compiles a synthetic host before its first request (compileWarmup.ts); off by default, as serve's --compile-warmup. */
  constructor(options: CompileOptions = {}, size = defaultCompileWorkers(), { warmup = false }: { readonly warmup?: boolean } = {}) {
    if (!Number.isSafeInteger(size) || size < 1) throw new RangeError(`compile workers must be a positive integer, not ${String(size)}`);
    this.workers = Array.from({ length: size }, () => new CompileWorker(options, warmup));
  }

  /** Each worker's warm-up report, once every worker has sent it (tests, benchmarks). */
  warmed(): Promise<WarmupReport['warmup'][]> {
    return Promise.all(this.workers.map((w) => w.warmed()));
  }

  get size(): number {
    return this.workers.length;
  }

  /**
   * Compiles and encodes each set; results in the order of the sets. Every set goes to the
   * worker its policy names hash to, a few or ten thousand: the same group goes to the same
   * worker edit after edit, and a global change finds each group's fragments (and their
   * bytes) memoised in the worker that built them, each worker holding only its share of
   * the fleet's (a round-robin turn would send it to a worker whose memo holds an older
   * version, or none).
   */
  readonly build: GroupBuilder = async (sets) => {
    const byWorker: number[][] = this.workers.map(() => []);
    for (let i = 0; i < sets.length; i++) byWorker[affinity(sets[i]!, this.workers.length)]!.push(i);
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

  /** Policy versions the workers hold between them (what the main thread has not let go of). */
  heldPolicies(): number {
    return this.workers.reduce((sum, w) => sum + w.heldCount(), 0);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
  }
}
