// Which node gets which snapshot. Nodes that select the same policies form a
// group; each group is compiled and encoded once per change, and only the
// watchers whose group's content changed are told.
//
// A change costs the node groups it affects, not nodes × policies: each
// connected node keeps the names of the policies it selects, and a change of
// policy P looks only at the nodes P selected before or selects now (a glob
// without wildcards is one map lookup; a wildcard glob one linear match per
// connected node; a policy without `nodes` every node). Those nodes' selections
// are updated for the changed names only, and each new group is compiled once.
import { createHash } from 'node:crypto';
import type { Policy } from '../policy/model.js';
import { globMatches, isLiteralGlob, policySelectsNode } from '../policy/nodeSelector.js';
import { encodeResource, type EncodedResource } from './encodedResource.js';
import { Snapshot } from './snapshot.js';
import type { ProtoJson } from '../envoy/codec.js';
import { OwedQueue } from './owedQueue.js';

/** Typed resources for one node group, as ProtoJSON; produced by src/compile. */
export interface CompiledGroup {
  readonly resources: readonly { readonly typeUrl: string; readonly name: string; readonly json: ProtoJson }[];
}

export type GroupCompiler<C extends CompiledGroup = CompiledGroup> = (policies: readonly Policy[]) => C;

/**
 * Compiles and encodes many groups' policy sets, off the caller's thread
 * (src/snapshot/compilePool.ts): one list of encoded resources per set, in order.
 */
export type GroupBuilder = (sets: readonly (readonly Policy[])[]) => Promise<EncodedResource[][]>;

/**
 * A builder's answer that the change it compiles is already superseded by a newer one
 * (src/snapshot/pushScheduler.ts): applyChanges then gives it up whole, nothing moved,
 * nothing compiled here instead. A builder that rejects one slice of an apply so must
 * reject every slice it has not answered yet, and must not have answered any before.
 */
export class SupersededBuild extends Error {
  constructor() {
    super('superseded by a newer change before it was applied');
  }
}

/** Policies changed by one or more commits: a policy to put, or undefined to delete. */
export type PolicyChanges = ReadonlyMap<string, Policy | undefined>;

export class NodeGroup<C extends CompiledGroup = CompiledGroup> {
  /** Connected nodes in this group; the group is dropped when none is left. */
  refs = 0;
  private compiledValue?: C;

  constructor(
    readonly key: string,
    readonly policies: readonly Policy[],
    readonly snapshot: Snapshot,
    private readonly compile: GroupCompiler<C>,
    compiled?: C,
  ) {
    if (compiled) this.compiledValue = compiled;
  }

  /** The compiled ProtoJSON (for checks): kept when compiled here, else compiled again on first use. */
  get compiled(): C {
    return (this.compiledValue ??= this.compile(this.policies));
  }
}

interface Watcher {
  readonly onChange: (snapshot: Snapshot) => void;
}

interface NodeEntry<C extends CompiledGroup> {
  readonly id: string;
  /** Names of the policies that select this node, sorted. */
  selected: string[];
  group: NodeGroup<C>;
  readonly watchers: Set<Watcher>;
  /** In `owed` (OwedQueue's flag). */
  queued: boolean;
}

/** A node whose first group is compiling: its watchers wait. */
interface PendingNode {
  readonly watchers: Set<Watcher>;
  /** Rounds whose result a policy change made stale. */
  stale: number;
}

interface StoredPolicyEntry {
  readonly policy: Policy;
  readonly hash: string;
}

type Built<C> = ReadonlyMap<string, { resources: EncodedResource[]; compiled?: C }>;

/** What applying changes needs compiled, and how to put it in place as it is. */
interface Plan<C extends CompiledGroup> {
  readonly missing: Map<string, Policy[]>;
  /** Moves the nodes whose new group is one of `keys` (built now); the first call also moves those whose new group existed already. */
  commitPart(keys: readonly string[], built: Built<C>): void;
  /** Moves every node not moved yet, then stores the policies: the change is complete. */
  finish(built?: Built<C>): void;
}

/**
 * Groups per call of the builder in an asynchronous apply: each slice's nodes are moved
 * (and their streams pushed) as soon as it is compiled, while the workers compile the next.
 */
export const APPLY_SLICE = 128;

/** New nodes whose groups may be compiled on the event loop per window; more wait for the workers. */
export const FIRST_COMPILES_HERE_PER_WINDOW = 8;
// A second, not less: at 100 ms, a fleet reconnecting at 100 nodes a second had 80% of its
// groups compiled here, so the workers' memos were cold for the next global change (each
// group is compiled by the worker its policies hash to, which keeps its fragments) and the
// event loop's heap held the fragments of thousands of hosts.
const FIRST_COMPILE_WINDOW_MS = 1000;
/**
 * Longest stretch the event loop spends telling streams of a change before it
 * lets other work run (ACKs, health checks, the admin API's requests and their
 * fsyncs). Telling a stream encodes and writes its response: at a global change
 * of 10,000 hosts each its own group, a slice of groups told at once held the
 * loop for hundreds of milliseconds, and an admin PUT arriving then waited.
 */
export const TELL_SLICE_MS = 5;

/** Rules (names, address rules, source ranges) of a group beyond which a first compile goes to the workers: ~25 µs each cold. */
export const MAX_RULES_COMPILED_HERE = 1_000;

/** Nodes placed in their new group per part of a plan. */
const PLAN_PART = 1000;

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Runs a plan to its end without pausing (the synchronous apply). */
function runToEnd<T>(steps: Generator<void, T, void>): T {
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export class SnapshotCache<C extends CompiledGroup = CompiledGroup> {
  private readonly policies = new Map<string, StoredPolicyEntry>();
  /** Policies without `nodes`: they select every node. */
  private readonly globalPolicies = new Set<string>();
  /** Literal glob (a whole node id) → the policies naming it. */
  private readonly literalIndex = new Map<string, Set<string>>();
  /** Policies with at least one wildcard glob. */
  private readonly wildcardPolicies = new Set<string>();
  private readonly groups = new Map<string, NodeGroup<C>>();
  private readonly nodes = new Map<string, NodeEntry<C>>();
  /** Nodes first watched while an asynchronous apply was compiling: re-selected when it commits. */
  private readonly lateNodes = new Set<string>();
  private applying = false;
  private changedAt = process.hrtime.bigint();
  /** One group computed for a node nobody watches (snapshotFor before watch), so it is not compiled twice. */
  private lastUnwatched?: NodeGroup<C>;
  private builder?: GroupBuilder;
  private readonly pendingNodes = new Map<string, PendingNode>();
  private firstCompiles = false;
  private hereWindowStart = 0;
  private hereInWindow = 0;
  /** Bumped by every commit of changes: a first compile selected before it is stale. */
  private epoch = 0;
  /** Nodes whose watchers are owed their group's current snapshot (insertion order), and the loop telling them. */
  private readonly owed = new OwedQueue<NodeEntry<C>>();
  private telling?: Promise<void>;
  private tellError?: unknown;
  /** Groups compiled, over the cache's life (tests and metrics). */
  compiledGroups = 0;
  /** Turns of the event loop the telling of changes took, over the cache's life (tests). */
  tellTurns = 0;

  private readonly tellSliceMs: number;

  /** options.tellSliceMs: TELL_SLICE_MS by default; 0 tells one node per turn of the event loop (tests). */
  constructor(
    private readonly compile: GroupCompiler<C>,
    options: { readonly tellSliceMs?: number } = {},
  ) {
    this.tellSliceMs = options.tellSliceMs ?? TELL_SLICE_MS;
  }

  /** Replaces the whole policy set, compiling here (tests, the floor benchmark, start-up). */
  setPolicies(policies: readonly Policy[], changedAt: bigint = process.hrtime.bigint()): void {
    this.applyChangesSync(this.diff(policies), changedAt);
  }

  /** The changes that turn the current set into `policies`. */
  diff(policies: readonly Policy[]): PolicyChanges {
    const changes = new Map<string, Policy | undefined>();
    const names = new Set<string>();
    for (const policy of policies) {
      names.add(policy.name);
      if (this.policies.get(policy.name)?.hash !== hashPolicy(policy)) changes.set(policy.name, policy);
    }
    for (const name of this.policies.keys()) if (!names.has(name)) changes.set(name, undefined);
    return changes;
  }

  /** Applies changes, compiling the affected groups here, on this thread. */
  applyChangesSync(changes: PolicyChanges, changedAt: bigint = process.hrtime.bigint()): void {
    if (this.applying) throw new Error('applyChangesSync while an asynchronous apply is compiling');
    const plan = runToEnd(this.plan(changes, changedAt, true));
    const built = new Map<string, { resources: EncodedResource[]; compiled: C }>();
    for (const [key, policies] of plan.missing) built.set(key, this.compileHere(policies));
    plan.finish(built);
  }

  /**
   * Applies changes, compiling the affected groups with `build` (worker
   * threads): the event loop stays free for ACKs, health checks and the admin
   * API meanwhile. Groups are compiled in slices, handed to the builder one per
   * turn of the event loop (the workers start on the first while the loop
   * serves others); the nodes of a slice move to their new
   * groups (and their streams are pushed) as soon as it is compiled, so a
   * global change of 10,000 groups starts reaching Envoys after the first
   * slice, not after the last. A node is never given a half-compiled group:
   * until its own group is ready it is served its previous state. Policies are
   * stored (and new nodes select against them) when the whole change is in
   * place. A slice the workers fail is compiled here; if that fails too, the
   * apply rejects with the nodes not moved yet on their previous state, and
   * the next apply moves them. One apply at a time (the push scheduler
   * serialises them).
   */
  async applyChanges(changes: PolicyChanges, build: GroupBuilder, changedAt: bigint = process.hrtime.bigint()): Promise<void> {
    if (this.applying) throw new Error('one asynchronous apply at a time');
    this.applying = true;
    try {
      // Planned in parts, with turns of the event loop between: at 10,000 nodes the whole
      // plan held the loop ~200 ms, and handing every slice to the workers another ~200 ms.
      const steps = this.plan(changes, changedAt);
      let step = steps.next();
      for (; !step.done; step = steps.next()) await nextTurn();
      const plan = step.value;
      const keys = [...plan.missing.keys()];
      const failed: string[][] = [];
      const slices: string[][] = [];
      for (let i = 0; i < keys.length; i += APPLY_SLICE) slices.push(keys.slice(i, i + APPLY_SLICE));
      let superseded = false;
      const compiling: Promise<void>[] = [];
      for (const [n, slice] of slices.entries()) {
        if (n > 0) await nextTurn();
        compiling.push(
          (async () => {
            let results: EncodedResource[][];
            try {
              results = await build(slice.map((key) => plan.missing.get(key)!));
            } catch (error) {
              if (error instanceof SupersededBuild) superseded = true;
              else failed.push(slice);
              return;
            }
            plan.commitPart(slice, new Map(slice.map((key, i) => [key, { resources: results[i]! }])));
          })(),
        );
      }
      await Promise.all(compiling);
      if (superseded) throw new SupersededBuild();
      // The workers failed these (a worker that died is restarted by the pool): compiled here.
      for (const slice of failed) plan.commitPart(slice, new Map(slice.map((key) => [key, this.compileHere(plan.missing.get(key)!)])));
      plan.finish();
      // Complete means told: the scheduler's idle() (and the next apply) wait for the streams too.
      await this.told();
    } finally {
      this.applying = false;
    }
    // Nodes that came while compiling were given the previous state: select them again now.
    const late = [...this.lateNodes];
    this.lateNodes.clear();
    for (const id of late) {
      const entry = this.nodes.get(id);
      if (entry) this.reselect(entry);
    }
  }

  /**
   * A generator that yields every PLAN_PART nodes placed (a turn of the event loop there, when applied asynchronously).
   * tellNow: watchers are told before this returns (the synchronous apply); else in slices of TELL_SLICE_MS.
   */
  private *plan(changes: PolicyChanges, changedAt: bigint, tellNow = false): Generator<void, Plan<C>, void> {
    const hashes = new Map<string, string>();
    for (const [name, policy] of changes) if (policy) hashes.set(name, hashPolicy(policy));
    const real = new Map<string, Policy | undefined>();
    for (const [name, policy] of changes) {
      const stored = this.policies.get(name);
      if (policy ? stored?.hash !== hashes.get(name) : stored !== undefined) real.set(name, policy);
    }
    const affected = this.affectedNodes(real);
    const hashOf = (name: string) => (real.has(name) ? hashes.get(name)! : this.policies.get(name)!.hash);
    const policyOf = (name: string) => (real.has(name) ? real.get(name)! : this.policies.get(name)!.policy);
    // Which changed policies may select a node: the global and wildcard ones, and those naming it.
    // Not every change for every affected node: a window of 1,000 writes to 1,000 hosts' own
    // policies would be 1,000,000 glob matches.
    const broad: string[] = [];
    const byNodeId = new Map<string, string[]>();
    for (const [name, policy] of real) {
      if (!policy) continue;
      if (policy.nodes === undefined || !policy.nodes.every(isLiteralGlob)) broad.push(name);
      else for (const id of new Set(policy.nodes)) byNodeId.set(id, [...(byNodeId.get(id) ?? []), name]);
    }
    /** The affected nodes by the key of their new group. */
    const byKey = new Map<string, { entry: NodeEntry<C>; selected: string[] }[]>();
    const missing = new Map<string, Policy[]>();
    // When no changed policy can tell nodes apart by id (global ones only, none naming a node),
    // nodes of one group get one new selection: computed once per group, not per node (a
    // one-policy change of a group of 10,000 nodes was 10,000 filters, sorts and keys, the
    // largest share of the server's garbage per push in the fan-out heap profile).
    const sameForGroup = broad.every((name) => real.get(name)!.nodes === undefined);
    const perGroup = new Map<NodeGroup<C>, { from: readonly string[]; kept: string[]; key: string }>();
    let placed = 0;
    for (const entry of affected) {
      if (++placed % PLAN_PART === 0) yield;
      const byId = byNodeId.get(entry.id);
      const shared = sameForGroup && byId === undefined ? perGroup.get(entry.group) : undefined;
      if (shared && sameNames(shared.from, entry.selected)) {
        byKey.get(shared.key)!.push({ entry, selected: shared.kept });
        continue;
      }
      const kept = entry.selected.filter((name) => !real.has(name));
      for (const name of broad) if (policySelectsNode(real.get(name)!, entry.id)) kept.push(name);
      for (const name of byId ?? []) kept.push(name);
      kept.sort(byName);
      const key = groupKey(kept, hashOf);
      if (sameForGroup && byId === undefined && !perGroup.has(entry.group)) perGroup.set(entry.group, { from: entry.selected, kept, key });
      let list = byKey.get(key);
      if (!list) byKey.set(key, (list = []));
      list.push({ entry, selected: kept });
      if (!this.groups.has(key) && !missing.has(key)) missing.set(key, kept.map(policyOf));
    }
    const existing = [...byKey.keys()].filter((key) => !missing.has(key));
    let existingMoved = false;
    const move = (keys: readonly string[], built: Built<C> | undefined) => {
      // Adopting before releasing, so a group one node leaves while another joins it is never dropped in between.
      const moves: { entry: NodeEntry<C>; group: NodeGroup<C> }[] = [];
      for (const key of keys) {
        for (const { entry, selected } of byKey.get(key) ?? []) {
          if (this.nodes.get(entry.id) !== entry) continue; // gone while compiling
          let group = this.groups.get(key);
          if (!group) {
            const policies = missing.get(key) ?? selected.map(policyOf);
            // Not built when the group existed at planning and its last node left while compiling.
            const result = built?.get(key) ?? this.compileHere(policies);
            group = new NodeGroup(key, policies, new Snapshot(result.resources, changedAt), this.compile, result.compiled);
            this.groups.set(key, group);
          }
          entry.selected = selected;
          if (group !== entry.group) moves.push({ entry, group });
        }
        byKey.delete(key);
      }
      for (const { group } of moves) group.refs += 1;
      const told: NodeEntry<C>[] = [];
      // The nodes of a group move together: compared once per run of one old and new group.
      let lastFrom: NodeGroup<C> | undefined;
      let lastTo: NodeGroup<C> | undefined;
      let lastChanged = false;
      for (const { entry, group } of moves) {
        if (entry.group !== lastFrom || group !== lastTo) {
          lastFrom = entry.group;
          lastTo = group;
          lastChanged = !group.snapshot.sameContentAs(entry.group.snapshot);
        }
        const contentChanged = lastChanged;
        this.release(entry.group);
        entry.group = group;
        if (contentChanged) told.push(entry);
      }
      // Told after the part is in place, so a watcher that looks sees its new state.
      this.tell(told, tellNow);
    };
    const moveExisting = () => {
      if (existingMoved) return;
      existingMoved = true;
      move(existing, undefined);
    };
    return {
      missing,
      commitPart: (keys, built) => {
        moveExisting();
        move(keys, built);
      },
      finish: (built) => {
        for (const [name, policy] of real) this.storePolicy(name, policy, hashes.get(name));
        if (real.size > 0) this.epoch += 1;
        this.changedAt = changedAt;
        delete this.lastUnwatched;
        moveExisting();
        move([...byKey.keys()], built);
      },
    };
  }

  /** Connected nodes whose selection a change of these policies can change: those they selected before or select now. */
  private affectedNodes(changes: ReadonlyMap<string, Policy | undefined>): Iterable<NodeEntry<C>> {
    const affected = new Set<NodeEntry<C>>();
    const wildcards: string[] = [];
    for (const [name, policy] of changes) {
      for (const version of [this.policies.get(name)?.policy, policy]) {
        if (!version) continue;
        // A copy: the plan yields to the event loop between parts, and nodes come and go meanwhile.
        if (version.nodes === undefined) return new Set(this.nodes.values());
        for (const glob of version.nodes) {
          if (isLiteralGlob(glob)) {
            const entry = this.nodes.get(glob);
            if (entry) affected.add(entry);
          } else wildcards.push(glob);
        }
      }
    }
    if (wildcards.length > 0) {
      for (const entry of this.nodes.values()) if (!affected.has(entry) && wildcards.some((glob) => globMatches(glob, entry.id))) affected.add(entry);
    }
    return affected;
  }

  private storePolicy(name: string, policy: Policy | undefined, hash: string | undefined): void {
    const old = this.policies.get(name)?.policy;
    if (old) {
      this.globalPolicies.delete(name);
      this.wildcardPolicies.delete(name);
      for (const glob of old.nodes ?? []) {
        const names = this.literalIndex.get(glob);
        names?.delete(name);
        if (names?.size === 0) this.literalIndex.delete(glob);
      }
    }
    if (!policy) {
      this.policies.delete(name);
      return;
    }
    this.policies.set(name, { policy, hash: hash ?? hashPolicy(policy) });
    if (policy.nodes === undefined) this.globalPolicies.add(name);
    for (const glob of policy.nodes ?? []) {
      if (!isLiteralGlob(glob)) this.wildcardPolicies.add(name);
      else {
        let names = this.literalIndex.get(glob);
        if (!names) this.literalIndex.set(glob, (names = new Set()));
        names.add(name);
      }
    }
  }

  /** The policies that select a node, from the indexes: globals, its literal entries, the wildcard policies that match. */
  private selectionFor(nodeId: string): string[] {
    const selected = new Set(this.globalPolicies);
    for (const name of this.literalIndex.get(nodeId) ?? []) selected.add(name);
    for (const name of this.wildcardPolicies) if (policySelectsNode(this.policies.get(name)!.policy, nodeId)) selected.add(name);
    return [...selected].sort(byName);
  }

  private compileHere(policies: readonly Policy[]): { resources: EncodedResource[]; compiled: C } {
    this.compiledGroups += 1;
    const compiled = this.compile(policies);
    return { compiled, resources: compiled.resources.map((r) => encodeResource(r.typeUrl, r.name, r.json)) };
  }

  /** The group for a selection, compiled here if no node holds it yet. */
  private groupFor(selected: readonly string[]): NodeGroup<C> {
    const key = groupKey(selected, (name) => this.policies.get(name)!.hash);
    const known = this.groups.get(key) ?? (this.lastUnwatched?.key === key ? this.lastUnwatched : undefined);
    if (known) return known;
    const policies = selected.map((name) => this.policies.get(name)!.policy);
    const { resources, compiled } = this.compileHere(policies);
    return new NodeGroup(key, policies, new Snapshot(resources, this.changedAt), this.compile, compiled);
  }

  private reselect(entry: NodeEntry<C>): void {
    const selected = this.selectionFor(entry.id);
    const group = this.groupFor(selected);
    entry.selected = selected;
    if (group === entry.group) return;
    const contentChanged = !group.snapshot.sameContentAs(entry.group.snapshot);
    this.adopt(group);
    this.release(entry.group);
    entry.group = group;
    if (contentChanged) for (const watcher of entry.watchers) watcher.onChange(group.snapshot);
  }

  private adopt(group: NodeGroup<C>): void {
    group.refs += 1;
    this.groups.set(group.key, group);
  }

  private release(group: NodeGroup<C>): void {
    group.refs -= 1;
    if (group.refs <= 0 && this.groups.get(group.key) === group) this.groups.delete(group.key);
  }

  snapshotFor(nodeId: string): Snapshot {
    return this.groupForNode(nodeId).snapshot;
  }

  /** The group a node belongs to now: its policies and compiled resources (for checks and status). */
  groupForNode(nodeId: string): NodeGroup<C> {
    const entry = this.nodes.get(nodeId);
    if (entry) return entry.group;
    const group = this.groupFor(this.selectionFor(nodeId));
    if (group.refs === 0) this.lastUnwatched = group;
    return group;
  }

  /**
   * Compile the groups of newly connected nodes with `build` (worker threads)
   * instead of on the event loop: after a restart, 10,000 Envoys reconnect
   * within seconds, each possibly a group of its own. Such a node has no
   * snapshot (currentSnapshot is undefined) until its group is ready; then its
   * watchers are told.
   */
  useBuilder(build: GroupBuilder): void {
    this.builder = build;
  }

  /** The node's snapshot, or undefined while its first group compiles. */
  currentSnapshot(nodeId: string): Snapshot | undefined {
    if (this.pendingNodes.has(nodeId)) return undefined;
    return this.snapshotFor(nodeId);
  }

  /** Calls onChange whenever the node's snapshot content changes (and when its first is ready); returns the unsubscribe function. */
  watch(nodeId: string, onChange: (snapshot: Snapshot) => void): () => void {
    const watcher: Watcher = { onChange };
    let watchers = this.nodes.get(nodeId)?.watchers ?? this.pendingNodes.get(nodeId)?.watchers;
    if (!watchers) {
      watchers = new Set();
      const selected = this.selectionFor(nodeId);
      const key = groupKey(selected, (name) => this.policies.get(name)!.hash);
      if (this.builder && !this.groups.has(key) && this.lastUnwatched?.key !== key && (!this.smallEnoughHere(selected) || !this.mayCompileHere())) {
        this.pendingNodes.set(nodeId, { watchers, stale: 0 });
        this.scheduleFirstCompiles();
      } else this.enter(nodeId, selected, this.groupFor(selected), watchers);
    }
    watchers.add(watcher);
    const set = watchers;
    return () => {
      if (!set.delete(watcher) || set.size > 0) return;
      const entry = this.nodes.get(nodeId);
      if (entry?.watchers === set) {
        this.nodes.delete(nodeId);
        this.release(entry.group);
      } else if (this.pendingNodes.get(nodeId)?.watchers === set) this.pendingNodes.delete(nodeId);
    };
  }

  /**
   * A node connecting alone is compiled here at once (a fraction of a
   * millisecond, and no wait for a worker); beyond a few per window — a
   * reconnection storm — they queue for the workers.
   */
  private mayCompileHere(now = Date.now()): boolean {
    if (this.firstCompiles || this.pendingNodes.size > 0) return false;
    if (now - this.hereWindowStart > FIRST_COMPILE_WINDOW_MS) {
      this.hereWindowStart = now;
      this.hereInWindow = 0;
    }
    if (this.hereInWindow >= FIRST_COMPILES_HERE_PER_WINDOW) return false;
    this.hereInWindow += 1;
    return true;
  }

  /**
   * A group small enough to compile on the event loop without holding it long: a host of
   * 1,000 microVMs is tens of thousands of rules and half a second of compiling, so it
   * goes to the workers even when it is the only node connecting.
   */
  private smallEnoughHere(selected: readonly string[]): boolean {
    let rules = 0;
    for (const name of selected) {
      const policy = this.policies.get(name)!.policy;
      rules += policy.allow.sni.length + (policy.allow.cidrs?.length ?? 0) + (policy.sources?.length ?? 0);
      if (rules > MAX_RULES_COMPILED_HERE) return false;
    }
    return true;
  }

  private enter(nodeId: string, selected: string[], group: NodeGroup<C>, watchers: Set<Watcher>): NodeEntry<C> {
    this.adopt(group);
    const entry: NodeEntry<C> = { id: nodeId, selected, group, watchers, queued: false };
    this.nodes.set(nodeId, entry);
    // Selected against the policies before an apply that is compiling: selected again when it commits.
    if (this.applying) this.lateNodes.add(nodeId);
    return entry;
  }

  private scheduleFirstCompiles(): void {
    if (this.firstCompiles) return;
    this.firstCompiles = true;
    // Gathered for a turn of the event loop, so a connection storm compiles in batches.
    setImmediate(() => {
      void this.compileFirstGroups().finally(() => {
        this.firstCompiles = false;
        if (this.pendingNodes.size > 0) this.scheduleFirstCompiles();
      });
    });
  }

  private async compileFirstGroups(): Promise<void> {
    const epoch = this.epoch;
    const batch: { id: string; pending: PendingNode; selected: string[]; key: string }[] = [];
    const missing = new Map<string, Policy[]>();
    for (const [id, pending] of this.pendingNodes) {
      const selected = this.selectionFor(id);
      const key = groupKey(selected, (name) => this.policies.get(name)!.hash);
      batch.push({ id, pending, selected, key });
      if (!this.groups.has(key) && !missing.has(key)) missing.set(key, selected.map((name) => this.policies.get(name)!.policy));
    }
    const keys = [...missing.keys()];
    let results: EncodedResource[][] | undefined;
    try {
      results = keys.length > 0 ? await this.builder!([...missing.values()]) : [];
    } catch {
      // The workers failed: compile here rather than leave Envoys without configuration.
      results = undefined;
    }
    // Policies changed meanwhile: these selections are stale, and the next round selects
    // again; after a few such rounds (writes that never pause) the nodes go in now and are
    // selected again here, on the event loop, so that none waits forever.
    const stale = this.epoch !== epoch;
    if (stale && batch.some(({ pending }) => ++pending.stale < 3)) return;
    const built = new Map(keys.map((key, i) => [key, results?.[i]]));
    const told: NodeEntry<C>[] = [];
    for (const { id, pending, selected, key } of batch) {
      if (this.pendingNodes.get(id) !== pending) continue; // gone meanwhile
      this.pendingNodes.delete(id);
      if (stale) {
        const fresh = this.selectionFor(id);
        told.push(this.enter(id, fresh, this.groupFor(fresh), pending.watchers));
        continue;
      }
      let group = this.groups.get(key);
      if (!group) {
        const resources = built.get(key);
        group = resources
          ? new NodeGroup(key, selected.map((name) => this.policies.get(name)!.policy), new Snapshot(resources, this.changedAt), this.compile)
          : this.groupFor(selected);
      }
      told.push(this.enter(id, selected, group, pending.watchers));
    }
    this.tell(told, false);
  }

  /**
   * Tells the nodes' watchers of their current snapshot: now, or queued and told in
   * slices of about tellSliceMs with a turn of the event loop between them. A node
   * queued twice is told once, of the snapshot it has when its turn comes.
   */
  private tell(entries: readonly NodeEntry<C>[], now: boolean): void {
    if (now) {
      for (const entry of entries) this.tellOne(entry);
      this.throwTellError();
      return;
    }
    for (const entry of entries) this.owed.add(entry);
    if (this.owed.size > 0) this.telling ??= this.tellOwed();
  }

  private async tellOwed(): Promise<void> {
    // Begun in a microtask, so `telling` is set before the first slice (which may be the last) ends.
    await Promise.resolve();
    try {
      while (this.owed.size > 0) {
        this.tellTurns += 1;
        const until = performance.now() + this.tellSliceMs;
        // The clock read every 8 nodes, not after each: a push to 1,000 streams read it 1,000
        // times (~0.1 ms of the push's main thread); telling 8 nodes takes tens of µs, so a
        // slice still ends within about that of tellSliceMs. A zero slice is one node a turn.
        const stride = this.tellSliceMs > 0 ? 8 : 1;
        let sinceCheck = 0;
        for (let entry = this.owed.shift(); entry !== undefined; entry = this.owed.shift()) {
          this.tellOne(entry);
          if (++sinceCheck === stride) {
            sinceCheck = 0;
            if (performance.now() >= until) break;
          }
        }
        if (this.owed.size > 0) await nextTurn();
      }
    } finally {
      delete this.telling;
    }
  }

  private tellOne(entry: NodeEntry<C>): void {
    if (this.nodes.get(entry.id) !== entry) return; // disconnected meanwhile
    const snapshot = entry.group.snapshot;
    for (const watcher of entry.watchers) {
      // One watcher's failure must not leave the others untold; the apply reports it (told()).
      try {
        watcher.onChange(snapshot);
      } catch (error) {
        this.tellError ??= error;
      }
    }
  }

  /** Resolves once every watcher owed a change has been told; rejects with a watcher's error if one threw meanwhile. */
  async told(): Promise<void> {
    if (this.telling) await this.telling;
    this.throwTellError();
  }

  /** Throws (and clears) the first error a watcher threw while being told, if any. */
  private throwTellError(): void {
    const error = this.tellError;
    delete this.tellError;
    if (error !== undefined) throw error;
  }

  groupCount(): number {
    return this.groups.size;
  }

  /** Connected (watched) node ids. */
  nodeCount(): number {
    return this.nodes.size;
  }

  policyCount(): number {
    return this.policies.size;
  }
}

/** The same names in the same order (selections are kept sorted). */
function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const groupKey = (selected: readonly string[], hashOf: (name: string) => string): string => selected.map((name) => `${name}@${hashOf(name)}`).join(',');

const hashPolicy = (policy: Policy): string => createHash('sha256').update(JSON.stringify(policy)).digest('hex').slice(0, 16);
