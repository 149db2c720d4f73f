// A source group's prefix rows in one port branch: the prefixes it reaches, through its
// cidr rules or through one of its names kept under the prefix, grouped by the cells it
// has there (prefixes where it has the same cells share chains). Run once per group and
// port on every compile, so it only visits the prefixes the group reaches, and names
// each prefix's cells by a number rather than by text.
import type { PortBranch } from './allowlistTree.js';
import type { PortIndex } from './treeIndex.js';

export interface Row {
  /** Prefix keys, in branch order. */
  readonly prefixes: string[];
  /** The first prefix, whose kept names stand for the row's. */
  readonly first: number;
  /** The group's policies whose cidr rules cover the row; empty when it reaches the row by name only. */
  readonly cidrPolicies: Set<number>;
  /** Reached by name only: the group's names kept under the row (ascending). */
  readonly names: readonly number[];
}

/** Lists of names built by appending, numbered so that equal lists get equal numbers (0: the empty list). */
class NameLists {
  private readonly appended = new Map<number, number>();
  private readonly parents: number[] = [0];
  private readonly lasts: number[] = [-1];

  constructor(private readonly nameCount: number) {}

  append(list: number, name: number): number {
    const key = list * this.nameCount + name;
    let next = this.appended.get(key);
    if (next === undefined) {
      next = this.parents.length;
      this.appended.set(key, next);
      this.parents.push(list);
      this.lasts.push(name);
    }
    return next;
  }

  names(list: number): number[] {
    const names: number[] = [];
    for (let at = list; at !== 0; at = this.parents[at]!) names.push(this.lasts[at]!);
    return names.reverse();
  }
}

export class GroupRows {
  private readonly lists: NameLists;
  // Scratch per prefix, valid for the group whose serial it holds: no clearing between groups.
  private readonly coveredBy: Int32Array;
  private readonly reachedBy: Int32Array;
  private readonly listOf: Int32Array;
  private serial = 0;

  constructor(
    private readonly branch: PortBranch,
    private readonly at: PortIndex,
    nameCount: number,
  ) {
    this.lists = new NameLists(Math.max(nameCount, 1));
    this.coveredBy = new Int32Array(branch.prefixes.length);
    this.reachedBy = new Int32Array(branch.prefixes.length);
    this.listOf = new Int32Array(branch.prefixes.length);
  }

  /** The rows of a group with these policies and these names (ascending), in branch order of their first prefix. */
  rowsOf(policies: Iterable<number>, names: Iterable<number>): Row[] {
    const serial = ++this.serial;
    const { coveredBy, reachedBy, listOf, at } = this;
    const cidrPolicies = new Map<number, number[]>();
    for (const i of policies) {
      for (const p of at.prefixesByPolicy[i] ?? []) {
        coveredBy[p] = serial;
        const list = cidrPolicies.get(p);
        if (list) list.push(i);
        else cidrPolicies.set(p, [i]);
      }
    }
    const reached = [...cidrPolicies.keys()];
    for (const n of names) {
      for (const p of at.prefixesByName[n] ?? []) {
        if (coveredBy[p] === serial) continue;
        if (reachedBy[p] !== serial) {
          reachedBy[p] = serial;
          listOf[p] = 0;
          reached.push(p);
        }
        listOf[p] = this.lists.append(listOf[p]!, n);
      }
    }

    // Under a prefix its cidr rules cover the group has every cell of the row; elsewhere, its names'.
    const rows = new Map<number, Row>();
    for (const p of Int32Array.from(reached).sort()) {
      const covered = coveredBy[p] === serial;
      const cells = covered ? -1 - at.rowOf[p]! : listOf[p]!;
      let row = rows.get(cells);
      if (!row) rows.set(cells, (row = { prefixes: [], first: p, cidrPolicies: new Set(), names: covered ? [] : this.lists.names(cells) }));
      row.prefixes.push(this.branch.prefixes[p]!.key);
      for (const i of cidrPolicies.get(p) ?? []) row.cidrPolicies.add(i);
    }
    return [...rows.values()];
  }
}
