// A compile worker thread (src/snapshot/compilePool.ts starts them): policy
// sets in, encoded resources out. Compiling and encoding a group is the CPU
// of a change; here it runs beside the event loop that serves ACKs, health
// checks and the admin API, not on it.
import { parentPort, workerData } from 'node:worker_threads';
import type { CompileOptions } from '../compile/index.js';
import type { Policy } from '../policy/model.js';
import { egressGroupCompiler } from './egressGroups.js';
import { warmupSets } from './compileWarmup.js';
import { encodeResource, LARGE_RESOURCE_BYTES, type EncodedResource } from './encodedResource.js';

/**
 * Sets as policy ids: a policy crosses the thread boundary once (in `policies`), then only
 * its id. The worker keeps the policy objects, so the compiler's memos, which know a policy
 * by its object, find it again on the next change (a structured clone would make every
 * policy a new object on every request), and a host's edit does not clone the whole host.
 */
export interface CompileRequest {
  readonly id: number;
  readonly sets: readonly (readonly number[])[];
  /** The policies of `sets` this worker has not been sent yet. */
  readonly policies: readonly (readonly [number, Policy])[];
  /** Forget every policy held before this request (the pool bounds what a worker keeps). */
  readonly reset?: boolean;
  /** Policies the main thread let go of: never asked for again. */
  readonly forget?: readonly number[];
  /** Every resource with its bytes, none as a reference (the pool no longer held one it was referred to). */
  readonly full?: boolean;
}

/**
 * A resource this worker sent before (with its bytes), sent again by name: the route tables
 * and clusters an edit did not reach come back from the encoder's memo as the same objects,
 * and a host's edit would otherwise clone its thousand unchanged route tables (megabytes, a
 * buffer each) to the event loop, where they were deserialised and then deduplicated. The
 * pool resolves it to the object it holds (compilePool.ts); the version is the hash of the
 * bytes, so the three fields name the bytes.
 */
export interface ResourceRef {
  readonly typeUrl: string;
  readonly name: string;
  readonly version: string;
}

/**
 * A small resource sent with its bytes, packed: its bytes are `packed[at, at + length)` of
 * the reply. A host's edit of the policy every microVM shares changes its thousand route
 * tables (~2 KB each): sent as a thousand buffers, their structured clone cost both threads
 * a buffer each (a backing store, an ArrayBuffer object and a view to allocate, track and
 * later collect), ~16 ms of the event loop's garbage collection per such edit at 1,000
 * microVMs; packed, they are one transferred buffer and a thousand views of it.
 */
export interface PackedResource {
  readonly typeUrl: string;
  readonly name: string;
  readonly version: string;
  readonly at: number;
  readonly length: number;
}

export type CompileReply =
  | { readonly id: number; readonly results: (EncodedResource | ResourceRef | PackedResource)[][]; readonly packed?: ArrayBuffer }
  | { readonly id: number; readonly error: string };

/** Sent once, when the warm-up ends: steps compiled, and whether it ran to its end (false: a request stopped it, or it failed). */
export interface WarmupReport {
  readonly warmup: { readonly steps: number; readonly completed: boolean };
}

export interface CompileWorkerData {
  readonly options: CompileOptions;
  /** Compile the synthetic host of compileWarmup.ts before the first request (default true). */
  readonly warmup?: boolean;
}

const data = workerData as CompileWorkerData;
const compile = egressGroupCompiler(data.options);

// Warm up at start (the protos load, the compiler is JIT-compiled), so the first change
// after a start does not pay for it: that was a second of CPU on the first global change.
try {
  for (const r of compile([]).resources) encodeResource(r.typeUrl, r.name, r.json);
} catch {
  // A real compile reports its own error.
}

// Then the JIT: a synthetic host and its edits, one step per turn of this thread's event
// loop. Off the main thread: the server is ready and serving while this runs. A request
// that comes meanwhile waits for one step at most and ends the warm-up: from then on the
// real work keeps the code warm, and the compiler's memos are the real host's. (Finishing
// the warm-up before a large first request was tried: at 1,000 microVMs it cost ~400 ms
// more CPU for no clear gain in time to the ACK.)
let warming = data.warmup !== false;
let warmSteps = 0;
const warmup = warmupSets();
const warmupClones = new WeakMap<Policy, Policy>();
function stopWarmup(completed: boolean): void {
  if (!warming) return;
  warming = false;
  const report: WarmupReport = { warmup: { steps: warmSteps, completed } };
  parentPort!.postMessage(report);
}
function warmStep(): void {
  if (!warming) return;
  const next = warmup.next();
  if (next.done) return stopWarmup(true);
  try {
    // Cloned as a request's policies are (postMessage), each version once (as the worker holds
    // them): the same kind of objects the real compiles get, the unchanged ones the same objects.
    const set = next.value.map((policy) => {
      let clone = warmupClones.get(policy);
      if (!clone) warmupClones.set(policy, (clone = structuredClone(policy)));
      return clone;
    });
    for (const r of compile(set).resources) encodeResource(r.typeUrl, r.name, r.json);
  } catch {
    // Options this synthetic host does not fit: the real compiles warm up on their own.
    return stopWarmup(false);
  }
  warmSteps += 1;
  setImmediate(warmStep);
}
if (warming) setImmediate(warmStep);

/**
 * The large buffers of `results` that are theirs alone (not a slice of a shared pool), once
 * each. Transferred buffers are detached here: nothing in this thread may keep them (the
 * encoder's memo keeps its own copies of fragments, never the resource's bytes).
 */
function transferList(results: readonly (readonly (EncodedResource | ResourceRef | PackedResource)[])[]): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const resources of results) {
    for (const resource of resources) {
      if (!('bytes' in resource)) continue;
      const { bytes, roomAround } = resource;
      const buffer = bytes.buffer;
      // Their own buffer: exactly the bytes, or the bytes with the room around them (encodedResource.ts).
      const own = roomAround === true || (bytes.byteOffset === 0 && bytes.byteLength === buffer.byteLength);
      if (buffer instanceof ArrayBuffer && bytes.byteLength >= LARGE_RESOURCE_BYTES && own) buffers.add(buffer);
    }
  }
  return [...buffers];
}

/**
 * The small resources of `results` that go with their bytes, as PackedResources of one new
 * buffer (PackedResource says why); large ones stay as they are (moved whole, transferList).
 * Copied, so the encoder's memo keeps its own bytes.
 */
function packSmall(results: (EncodedResource | ResourceRef | PackedResource)[][]): ArrayBuffer | undefined {
  let total = 0;
  let count = 0;
  for (const resources of results) {
    for (const resource of resources) {
      if ('bytes' in resource && resource.bytes.byteLength < LARGE_RESOURCE_BYTES) {
        total += resource.bytes.byteLength;
        count += 1;
      }
    }
  }
  if (count < 2) return undefined;
  const packed = new Uint8Array(total);
  let at = 0;
  for (const resources of results) {
    resources.forEach((resource, i) => {
      if (!('bytes' in resource) || resource.bytes.byteLength >= LARGE_RESOURCE_BYTES) return;
      const { typeUrl, name, version, bytes } = resource;
      packed.set(bytes, at);
      resources[i] = { typeUrl, name, version, at, length: bytes.byteLength };
      at += bytes.byteLength;
    });
  }
  return packed.buffer;
}

const held = new Map<number, Policy>();

/** Resources sent with their bytes: sent as a ResourceRef when the encoder's memo hands them out again. */
const sent = new WeakSet<EncodedResource>();
const toSend = (resource: EncodedResource, full: boolean): EncodedResource | ResourceRef => {
  if (!full && sent.has(resource)) return { typeUrl: resource.typeUrl, name: resource.name, version: resource.version };
  sent.add(resource);
  return resource;
};

parentPort!.on('message', ({ id, sets, policies, reset, forget, full }: CompileRequest) => {
  stopWarmup(false);
  let reply: CompileReply;
  try {
    if (reset) held.clear();
    for (const policyId of forget ?? []) held.delete(policyId);
    for (const [policyId, policy] of policies) held.set(policyId, policy);
    const policySets = sets.map((ids) =>
      ids.map((policyId) => {
        const policy = held.get(policyId);
        if (!policy) throw new Error(`policy ${policyId} was never sent to this worker`);
        return policy;
      }),
    );
    const results: (EncodedResource | ResourceRef | PackedResource)[][] = policySets.map((set) =>
      compile(set).resources.map((r) => toSend(encodeResource(r.typeUrl, r.name, r.json), full === true)),
    );
    const packed = packSmall(results);
    reply = { id, results, ...(packed && { packed }) };
  } catch (error) {
    reply = { id, error: error instanceof Error ? (error.stack ?? error.message) : String(error) };
  }
  // The resources' bytes are moved to the main thread, not copied: a host's listener is
  // megabytes, and a structured clone copies it on the receiving event loop.
  parentPort!.postMessage(reply, 'results' in reply ? [...transferList(reply.results), ...(reply.packed ? [reply.packed] : [])] : []);
});
