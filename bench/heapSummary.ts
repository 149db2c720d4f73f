// A V8 heap snapshot (v8.writeHeapSnapshot; FLEET_HEAP_SNAPSHOT=FILE in bench/fleet.ts)
// summarised: self size and count by what an object is (its constructor, or the kind of
// a string, array or code object), and for the largest of them which object and field
// holds them (the first retainer: a field of an instance of X). Divided by `per` (the
// hosts of the fleet) it says what the main thread keeps per host.
//
//   node dist/bench/heapSummary.js FILE [per] [rows]
import { readFileSync } from 'node:fs';

interface RawSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[]; edge_types: [string[], ...unknown[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

export interface HeapRow {
  readonly what: string;
  readonly count: number;
  readonly bytes: number;
  /** The commonest holders ("X.field"), with their share of the bytes. */
  readonly heldBy: readonly { readonly by: string; readonly bytes: number }[];
}

export function summarizeHeap(raw: RawSnapshot, rows = 30): { total: number; rows: HeapRow[] } {
  const { meta } = raw.snapshot;
  const nf = meta.node_fields.length;
  const ef = meta.edge_fields.length;
  const [typeAt, nameAt, sizeAt, edgeCountAt] = ['type', 'name', 'self_size', 'edge_count'].map((f) => meta.node_fields.indexOf(f)) as [number, number, number, number];
  const [edgeTypeAt, edgeNameAt, toAt] = ['type', 'name_or_index', 'to_node'].map((f) => meta.edge_fields.indexOf(f)) as [number, number, number];
  const nodeTypes = meta.node_types[0];
  const edgeTypes = meta.edge_types[0];
  const count = raw.nodes.length / nf;

  const kindOf = (i: number): string => {
    const type = nodeTypes[raw.nodes[i * nf + typeAt]!]!;
    const name = raw.strings[raw.nodes[i * nf + nameAt]!]!;
    if (type === 'object' || type === 'closure' || type === 'native') return `${type === 'object' ? '' : `${type} `}${name.split(' ')[0]}`;
    if (type === 'hidden' || type === 'code' || type === 'array' || type === 'synthetic') return `(${type} ${name.slice(0, 40)})`;
    return `(${type})`;
  };
  const kinds = new Array<string>(count);
  for (let i = 0; i < count; i++) kinds[i] = kindOf(i);

  // The first retainer of each node (the first edge found that points at it, other than weak ones).
  const firstHolder = new Int32Array(count).fill(-1);
  const holderEdge = new Array<string>(count);
  let edge = 0;
  for (let i = 0; i < count; i++) {
    const edges = raw.nodes[i * nf + edgeCountAt]!;
    for (let e = 0; e < edges; e++, edge++) {
      const type = edgeTypes[raw.edges[edge * ef + edgeTypeAt]!]!;
      if (type === 'weak' || type === 'shortcut') continue;
      const to = raw.edges[edge * ef + toAt]! / nf;
      if (firstHolder[to] !== -1) continue;
      firstHolder[to] = i;
      const name = raw.edges[edge * ef + edgeNameAt]!;
      holderEdge[to] = type === 'element' || type === 'hidden' ? '[]' : String(raw.strings[name] ?? name);
    }
  }

  const by = new Map<string, { count: number; bytes: number; heldBy: Map<string, number> }>();
  let total = 0;
  for (let i = 0; i < count; i++) {
    const bytes = raw.nodes[i * nf + sizeAt]!;
    total += bytes;
    const kind = kinds[i]!;
    let entry = by.get(kind);
    if (!entry) by.set(kind, (entry = { count: 0, bytes: 0, heldBy: new Map() }));
    entry.count += 1;
    entry.bytes += bytes;
    const holder = firstHolder[i]!;
    const label = holder < 0 ? '(root)' : `${kinds[holder]}.${holderEdge[i]}`;
    entry.heldBy.set(label, (entry.heldBy.get(label) ?? 0) + bytes);
  }
  const sorted = [...by].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, rows);
  return {
    total,
    rows: sorted.map(([what, { count: n, bytes, heldBy }]) => ({
      what,
      count: n,
      bytes,
      heldBy: [...heldBy].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([holder, b]) => ({ by: holder, bytes: b })),
    })),
  };
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const file = process.argv[2];
  if (!file) throw new Error('usage: node dist/bench/heapSummary.js FILE [per] [rows]');
  const per = Number(process.argv[3] ?? 1);
  const { total, rows } = summarizeHeap(JSON.parse(readFileSync(file, 'utf8')) as RawSnapshot, Number(process.argv[4] ?? 30));
  const kb = (bytes: number) => (bytes / 1024).toFixed(1);
  console.log(`total ${(total / 2 ** 20).toFixed(1)} MiB; ${per > 1 ? `per ${per}: ${kb(total / per)} KB` : ''}`);
  console.log(`| what | count${per > 1 ? ' per host' : ''} | KB${per > 1 ? ' per host' : ''} | held by (first retainer, KB${per > 1 ? ' per host' : ''}) |`);
  console.log('|---|---|---|---|');
  for (const row of rows) {
    console.log(`| ${row.what} | ${(row.count / per).toFixed(per > 1 ? 2 : 0)} | ${kb(row.bytes / per)} | ${row.heldBy.map((h) => `${h.by} ${kb(h.bytes / per)}`).join('; ')} |`);
  }
}
