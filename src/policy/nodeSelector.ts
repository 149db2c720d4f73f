// Which policies apply to an Envoy node: `nodes` globs on the node id.
// "*" is any run of characters (none included), "?" exactly one character.
//
// Matched without regular expressions: a glob is split at its stars into
// segments, the first anchored at the start, the last at the end, and each
// middle one found at its leftmost place after the previous. Leftmost is
// always right for star-separated segments (a later place leaves less room
// for the rest, never more), so nothing is ever retried: the cost is at most
// (id length × glob length), with globs bounded by validation (253
// characters) — linear in the node id. A backtracking RegExp (`^a.*b.*c$`)
// on a 60,000-character id froze the server for seconds.
import type { PolicySpec } from './model.js';

interface CompiledGlob {
  /** No wildcard at all: the id must equal the glob (what index lookups use). */
  readonly literal: boolean;
  /** Segments between stars, in order; "?" inside a segment matches one character. */
  readonly segments: readonly (readonly string[])[];
}

// Characters, not UTF-16 units: "?" is one character of the id, also outside the BMP.
const ASCII = /^[\x00-\x7f]*$/;
const chars = (text: string): readonly string[] => (ASCII.test(text) ? text.split('') : [...text]);

const compiled = new Map<string, CompiledGlob>();

function compileGlob(glob: string): CompiledGlob {
  let c = compiled.get(glob);
  if (!c) {
    // Bounded: globs come and go with policies over a server's lifetime.
    if (compiled.size >= 10_000) compiled.clear();
    const parts = glob.split('*');
    c = {
      literal: parts.length === 1 && !glob.includes('?'),
      // "a**b" is "a*b": empty middle segments go; the first and last stay (they anchor).
      segments: parts.filter((part, i) => part !== '' || i === 0 || i === parts.length - 1).map(chars),
    };
    compiled.set(glob, c);
  }
  return c;
}

/** True when the glob has neither "*" nor "?": it names exactly one node id. */
export const isLiteralGlob = (glob: string): boolean => compileGlob(glob).literal;

/** Does `segment` (with "?" for any one character) match `id` at `at`? */
function segmentAt(segment: readonly string[], id: readonly string[], at: number): boolean {
  if (at + segment.length > id.length) return false;
  for (let i = 0; i < segment.length; i++) {
    const s = segment[i]!;
    if (s !== '?' && s !== id[at + i]) return false;
  }
  return true;
}

/** Leftmost position ≥ from where the segment matches and ends by `end`, or -1. */
function findSegment(segment: readonly string[], id: readonly string[], from: number, end: number): number {
  for (let at = from; at + segment.length <= end; at++) if (segmentAt(segment, id, at)) return at;
  return -1;
}


export function globMatches(glob: string, nodeId: string): boolean {
  const g = compileGlob(glob);
  if (g.literal) return glob === nodeId;
  const id = chars(nodeId);
  const segments = g.segments;
  if (segments.length === 1) {
    // No star: only "?"s; same length, each character matched.
    return segments[0]!.length === id.length && segmentAt(segments[0]!, id, 0);
  }
  const first = segments[0]!;
  const last = segments.at(-1)!;
  if (first.length + last.length > id.length) return false;
  if (!segmentAt(first, id, 0)) return false;
  const end = id.length - last.length;
  if (!segmentAt(last, id, end)) return false;
  let at = first.length;
  for (let i = 1; i < segments.length - 1; i++) {
    const segment = segments[i]!;
    const found = findSegment(segment, id, at, end);
    if (found < 0) return false;
    at = found + segment.length;
  }
  return true;
}

export function policySelectsNode(policy: PolicySpec, nodeId: string): boolean {
  return policy.nodes === undefined || policy.nodes.some((glob) => globMatches(glob, nodeId));
}
