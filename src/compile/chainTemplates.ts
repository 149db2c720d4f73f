// The bytes of the hardened listener's per-source chains, from one template per kind.
//
// A source's name, original_dst, would_deny and http chains differ from another source's of
// the same kind only in strings derived from the source: the chain name ("name|10.0.0.4/30",
// also the access log's egress.chain tag and, for http, the RDS route table's name) and the
// connection_limit stat prefix ("src_10_0_0_4_30"). A cold compile of a host has thousands
// of them; walking each one's ProtoJSON was most of the chains' encode. Instead, per compile,
// the first chain of each kind and context is encoded into a template (fastEncode.ts
// encodingTemplate: its bytes with those strings as holes), and every other chain's bytes
// are the template filled with its own strings, correct length prefixes included. Each
// chain object is then primed with its bytes, so the listener's encode copies them.
//
// Trust but check: the context (everything else a chain depends on: the options, the
// listener, the access-log settings, the audit and log-all policies of its source) is what
// the builders read today; so that a dependency added later cannot slip through, the first
// fills of every template are compared with a walk of their chain, and a template that
// differs is dropped (its chains are then walked as before). Templates live for one
// compile: nothing stale crosses compiles. test/compile/chainTemplates.test.ts holds the
// filled bytes to the generic encoder's for random sources, IPv6 included.
import { encodingTemplate, fillTemplate, memoState, primeImmutable, walkEncode, type EncodingTemplate } from '../envoy/fastEncode.js';
import type { FilterChainJson } from '../envoy/resources.js';
import { TYPE_PREFIX } from '../envoy/typeUrls.js';
import { sourceStatPrefix } from './guards.js';

export const FILTER_CHAIN_TYPE = `${TYPE_PREFIX}envoy.config.listener.v3.FilterChain`;
/** Fills compared with a walk before a template is trusted for the rest of the compile. */
const CHECKED_FILLS = 2;

/** The strings of a chain that come from its source: its name, its stat prefix. */
export const chainSlots = (kind: string, sourceLabel: string): string[] => [`${kind}|${sourceLabel}`, sourceStatPrefix(sourceLabel)];

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.compare(a, b) === 0;

interface Entry {
  readonly template: EncodingTemplate | undefined;
  checked: number;
}

/**
 * Primes the immutable chains among `chains` that have no bytes yet with their bytes, from
 * templates. `contextOf(label)`: everything besides the source a chain of that source
 * depends on, as a string; undefined leaves the chain to the walk.
 */
export function primeChainBytes(chains: readonly FilterChainJson[], contextOf: (sourceLabel: string) => string | undefined): { filled: number; walked: number } {
  // By kind and family, then by context: no key string built per chain.
  const templates = new Map<string, Map<string, Entry>>();
  let filled = 0;
  let walked = 0;
  for (const chain of chains) {
    const name = chain.name;
    if (name === undefined || memoState(chain, FILTER_CHAIN_TYPE) !== 1) continue;
    const bar = name.indexOf('|');
    if (bar < 0) continue;
    const kind = name.slice(0, bar);
    const label = name.slice(bar + 1);
    const context = contextOf(label);
    if (context === undefined) continue;
    // The address family too: nothing should differ by it, but nothing is assumed.
    const kindKey = `${kind}|${label === '*' ? '*' : label.includes(':') ? 6 : 4}`;
    let byContext = templates.get(kindKey);
    if (byContext === undefined) templates.set(kindKey, (byContext = new Map()));
    const slots = chainSlots(kind, label);
    let entry = byContext.get(context);
    if (entry === undefined) {
      // The exemplar's own bytes are the template filled with its own strings.
      let template: EncodingTemplate | undefined;
      try {
        template = encodingTemplate(FILTER_CHAIN_TYPE, chain, slots);
      } catch {
        template = undefined;
      }
      byContext.set(context, (entry = { template, checked: CHECKED_FILLS }));
      if (template === undefined) continue;
      primeImmutable(chain, FILTER_CHAIN_TYPE, fillTemplate(template, slots));
      filled++;
      continue;
    }
    if (entry.template === undefined) continue;
    const body = fillTemplate(entry.template, slots);
    if (entry.checked > 0) {
      walked++;
      let walkedBytes: Uint8Array | undefined;
      try {
        walkedBytes = walkEncode(FILTER_CHAIN_TYPE, chain);
      } catch {
        walkedBytes = undefined;
      }
      if (walkedBytes === undefined || !sameBytes(walkedBytes, body)) {
        byContext.set(context, { template: undefined, checked: 0 });
        continue;
      }
      entry.checked--;
    }
    primeImmutable(chain, FILTER_CHAIN_TYPE, body);
    filled++;
  }
  return { filled, walked };
}
