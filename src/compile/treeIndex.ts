// Where each policy and each server name sit in the allowlist tree. A source group
// reaches only the branches its policies appear in; looking those up here, instead of
// testing every prefix and every name for every group, keeps the chain layout linear
// in what it emits rather than in groups × prefixes × names.
import type { AllowlistTree, PortBranch, ServerNameBranch } from './allowlistTree.js';

/** Lists by a small integer; undefined is the empty list. */
export type Lists = readonly (readonly number[] | undefined)[];

/** Prefixes are numbered by their place in PortBranch.prefixes, names by theirs in AllowlistTree.serverNames. */
export interface PortIndex {
  /** Policy → the prefixes its cidr rules cover (ascending). */
  readonly prefixesByPolicy: Lists;
  /** Name → the prefixes keeping it in their row (ascending). */
  readonly prefixesByName: Lists;
  /** Prefix → the names kept in its row. */
  readonly namesOf: readonly ReadonlySet<number>[];
  /** Prefix → the patterns of those names, in tree order; one array per distinct row. */
  readonly patternsOf: readonly (readonly string[])[];
  /** Prefix → the first prefix keeping the same names: equal for equal rows. */
  readonly rowOf: readonly number[];
}

export interface TreeIndex {
  /** Policy → the names whose patterns it covers (ascending). */
  readonly namesByPolicy: Lists;
  /** Parallel to AllowlistTree.ports. */
  readonly ports: readonly PortIndex[];
}

/** `count` empty lists, preallocated: filling a growing array out of order makes it slow to index. */
const emptyLists = (count: number): (number[] | undefined)[] => new Array<number[] | undefined>(count).fill(undefined);

function push(lists: (number[] | undefined)[], at: number, value: number): void {
  const list = lists[at];
  if (list) list.push(value);
  else lists[at] = [value];
}

function indexPort(tree: AllowlistTree, branch: PortBranch, nameIndex: ReadonlyMap<ServerNameBranch, number>): PortIndex {
  const prefixesByPolicy = emptyLists(tree.policies.length);
  const prefixesByName = emptyLists(tree.serverNames.length);
  const namesOf: Set<number>[] = [];
  const patternsOf: (readonly string[])[] = [];
  const rowOf: number[] = [];
  const rows = new Map<string, number>();
  branch.prefixes.forEach((prefix, p) => {
    for (const i of prefix.policies) push(prefixesByPolicy, i, p);
    const names = prefix.serverNames.map((name) => nameIndex.get(name)!);
    for (const n of names) push(prefixesByName, n, p);
    const row = names.join(',');
    if (!rows.has(row)) rows.set(row, p);
    const first = rows.get(row)!;
    rowOf.push(first);
    namesOf.push(new Set(names));
    patternsOf.push(first === p ? prefix.serverNames.map((name) => name.pattern) : patternsOf[first]!);
  });
  return { prefixesByPolicy, prefixesByName, namesOf, patternsOf, rowOf };
}

export function indexTree(tree: AllowlistTree): TreeIndex {
  const nameIndex = new Map(tree.serverNames.map((name, n) => [name, n]));
  const namesByPolicy = emptyLists(tree.policies.length);
  tree.serverNames.forEach((name, n) => {
    for (const i of name.policies) push(namesByPolicy, i, n);
  });
  return { namesByPolicy, ports: tree.ports.map((branch) => indexPort(tree, branch, nameIndex)) };
}
