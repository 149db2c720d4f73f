// A snapshot: the complete set of resources one node group receives, per type,
// with a version per type derived from the content (so an unchanged type keeps
// its version and is never re-sent).
import { type EncodedResource, shortHash } from './encodedResource.js';

export interface ResourceSet {
  /** version_info for state-of-the-world and system_version_info for delta. */
  readonly version: string;
  readonly items: ReadonlyMap<string, EncodedResource>;
}

export class Snapshot {
  private readonly sets: ReadonlyMap<string, ResourceSet>;

  constructor(
    resources: readonly EncodedResource[],
    /** process.hrtime.bigint() of the policy change this snapshot carries; for push-latency metrics. */
    readonly changedAt: bigint,
  ) {
    const byType = new Map<string, EncodedResource[]>();
    for (const resource of resources) {
      const list = byType.get(resource.typeUrl) ?? [];
      list.push(resource);
      byType.set(resource.typeUrl, list);
    }
    const sets = new Map<string, ResourceSet>();
    for (const [typeUrl, list] of byType) {
      list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const items = new Map<string, EncodedResource>();
      for (const resource of list) {
        if (items.has(resource.name)) throw new Error(`duplicate ${typeUrl} resource "${resource.name}" in one snapshot`);
        items.set(resource.name, resource);
      }
      sets.set(typeUrl, { version: shortHash(list.map((r) => `${r.name}\u0000${r.version}`).join('\n')), items });
    }
    this.sets = sets;
  }

  resourceSet(typeUrl: string): ResourceSet | undefined {
    return this.sets.get(typeUrl);
  }

  version(typeUrl: string): string | undefined {
    return this.sets.get(typeUrl)?.version;
  }

  /** The same array every call (asked on every ACK): do not modify. */
  typeUrls(): readonly string[] {
    return (this.typeUrlList ??= [...this.sets.keys()]);
  }

  private typeUrlList?: readonly string[];

  /** True when every type has the same version in both. */
  sameContentAs(other: Snapshot): boolean {
    // The same types (sizes equal and every one of ours theirs too), each at the same version; no allocation (asked per node moved).
    if (this.sets.size !== other.sets.size) return false;
    for (const [typeUrl, set] of this.sets) if (other.sets.get(typeUrl)?.version !== set.version) return false;
    return true;
  }
}
