// Which node gets which snapshot. Nodes that select the same policies form a
// group; each group is compiled and encoded once per change, and only the
// watchers whose group's content changed are told.
import { createHash } from 'node:crypto';
import type { Policy } from '../policy/model.js';
import { policySelectsNode } from '../policy/nodeSelector.js';
import { encodeResource } from './encodedResource.js';
import { Snapshot } from './snapshot.js';
import type { ProtoJson } from '../envoy/codec.js';

/** Typed resources for one node group, as ProtoJSON; produced by src/compile. */
export interface CompiledGroup {
  readonly resources: readonly { readonly typeUrl: string; readonly name: string; readonly json: ProtoJson }[];
}

export type GroupCompiler<C extends CompiledGroup = CompiledGroup> = (policies: readonly Policy[]) => C;

export interface NodeGroup<C extends CompiledGroup = CompiledGroup> {
  readonly key: string;
  readonly policies: readonly Policy[];
  readonly compiled: C;
  readonly snapshot: Snapshot;
}

interface Watcher<C extends CompiledGroup> {
  readonly nodeId: string;
  readonly onChange: (snapshot: Snapshot) => void;
  group: NodeGroup<C>;
}

export class SnapshotCache<C extends CompiledGroup = CompiledGroup> {
  private policies: readonly Policy[] = [];
  private policyHashes = new Map<string, string>();
  private changedAt = process.hrtime.bigint();
  private groups = new Map<string, NodeGroup<C>>();
  private readonly watchers = new Set<Watcher<C>>();

  constructor(private readonly compile: GroupCompiler<C>) {}

  /** Replaces the policy set; recompiles only the groups whose policies changed and notifies their watchers. */
  setPolicies(policies: readonly Policy[], changedAt: bigint = process.hrtime.bigint()): void {
    this.policies = [...policies].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.policyHashes = new Map(this.policies.map((p) => [p.name, hashPolicy(p)]));
    this.changedAt = changedAt;
    const previous = this.groups;
    this.groups = new Map();
    const changed: Watcher<C>[] = [];
    // Streams of one node id (reconnects, several Envoys on one id) share one selection.
    const byNode = new Map<string, NodeGroup<C>>();
    for (const watcher of this.watchers) {
      let group = byNode.get(watcher.nodeId);
      if (!group) byNode.set(watcher.nodeId, (group = this.groupForNode(watcher.nodeId, previous)));
      if (group !== watcher.group) {
        const contentChanged = !group.snapshot.sameContentAs(watcher.group.snapshot);
        watcher.group = group;
        if (contentChanged) changed.push(watcher);
      }
    }
    for (const watcher of changed) watcher.onChange(watcher.group.snapshot);
  }

  snapshotFor(nodeId: string): Snapshot {
    return this.groupForNode(nodeId).snapshot;
  }

  /** The group a node belongs to now: its policies and compiled resources (for checks and status). */
  groupForNode(nodeId: string, reuse: ReadonlyMap<string, NodeGroup<C>> = this.groups): NodeGroup<C> {
    const selected = this.policies.filter((policy) => policySelectsNode(policy, nodeId));
    const key = selected.map((p) => `${p.name}@${this.policyHashes.get(p.name)}`).join(',');
    let group = this.groups.get(key) ?? reuse.get(key);
    if (!group) {
      const compiled = this.compile(selected);
      const resources = compiled.resources.map((r) => encodeResource(r.typeUrl, r.name, r.json));
      group = { key, policies: selected, compiled, snapshot: new Snapshot(resources, this.changedAt) };
    }
    this.groups.set(key, group);
    return group;
  }

  /** Calls onChange whenever the node's snapshot content changes; returns the unsubscribe function. */
  watch(nodeId: string, onChange: (snapshot: Snapshot) => void): () => void {
    const watcher: Watcher<C> = { nodeId, onChange, group: this.groupForNode(nodeId) };
    this.watchers.add(watcher);
    return () => this.watchers.delete(watcher);
  }

  groupCount(): number {
    return this.groups.size;
  }
}

const hashPolicy = (policy: Policy): string => createHash('sha256').update(JSON.stringify(policy)).digest('hex').slice(0, 16);
