// Envoy's filter-chain selection as a pure function, and the listener checks
// Envoy does when it builds its filter-chain index.
//
// Modelled on envoyproxy/envoy source/common/listener_manager/filter_chain_manager_impl.cc
// (formerly source/server/filter_chain_manager_impl.cc):
//   setupFilterChainMatcher / addFilterChainFor*  build a tree keyed level by level;
//   findFilterChain → ForDestinationIP → ForServerName → ForTransportProtocol →
//   ForApplicationProtocols → ForDirectSourceIP → ForSourceTypes → ForSourceIpAndPort
// walk it. At every level the most specific present value wins (exact port, longest
// prefix, exact name then longest "*." suffix, ...) or else the level's catch-all;
// a miss below that choice is NOT retried on a less specific branch: the lookup
// returns nullptr and the listener's default_filter_chain is used.
import { cidrContainsIp, familyBits, formatCidr, parseIp, type Cidr, type IpAddress } from '../net/ip.js';
import type { CidrRangeJson, FilterChainJson, FilterChainMatchJson, ListenerJson } from './resources.js';

/** What Envoy knows about a connection when it picks a filter chain (after original_dst and tls_inspector). */
export interface FilterChainMatchInput {
  readonly sourceIp: string;
  /** Remote port; absent is treated as 0 (only port-agnostic chains match it). */
  readonly sourcePort?: number;
  /** Direct remote address (differs from sourceIp only behind the PROXY protocol); defaults to sourceIp. */
  readonly directSourceIp?: string;
  /** The original destination, restored by the original_dst listener filter. */
  readonly destinationIp: string;
  readonly destinationPort: number;
  /** TLS SNI; absent or "" for plain TCP or a ClientHello without SNI. */
  readonly serverName?: string;
  /** Defaults to "tls" when a server name is given, else "raw_buffer" (what Envoy sets when no listener filter detected TLS). */
  readonly transportProtocol?: string;
  /** ALPN values in the client's order. */
  readonly applicationProtocols?: readonly string[];
}

type SourceType = 'ANY' | 'SAME_IP_OR_LOOPBACK' | 'EXTERNAL';

/** A map keyed by CIDR (canonical text, "" for "no ranges": 0.0.0.0/0 and ::/0), looked up by longest prefix. */
class PrefixMap<T> {
  readonly entries = new Map<string, { readonly cidrs: readonly Cidr[]; readonly value: T }>();

  getOrCreate(key: string, cidrs: readonly Cidr[], create: () => T): T {
    let entry = this.entries.get(key);
    if (!entry) {
      entry = { cidrs, value: create() };
      this.entries.set(key, entry);
    }
    return entry.value;
  }

  /** Envoy's LcTrie with exclusive=true: only the longest matching prefix's data. */
  longestMatch(ip: IpAddress | undefined): T | undefined {
    if (!ip) return undefined;
    let best: { length: number; value: T } | undefined;
    for (const { cidrs, value } of this.entries.values()) {
      for (const cidr of cidrs) {
        if (cidrContainsIp(cidr, ip) && (!best || cidr.prefixLength > best.length)) best = { length: cidr.prefixLength, value };
      }
    }
    return best?.value;
  }
}

type SourcePorts = Map<number, FilterChainJson>;
type SourceIps = PrefixMap<SourcePorts>;
type SourceTypes = Map<SourceType, SourceIps>;
type DirectSourceIps = PrefixMap<SourceTypes>;
type ApplicationProtocols = Map<string, DirectSourceIps>;
type TransportProtocols = Map<string, ApplicationProtocols>;
type ServerNames = Map<string, TransportProtocols>;
type DestinationIps = PrefixMap<ServerNames>;
type DestinationPorts = Map<number, DestinationIps>;

export type FilterChainConflictKind =
  /** verifyNoDuplicateMatchers: "filter chain 'x' has the same matching rules defined as 'y'". */
  | 'duplicate-match'
  /** addFilterChainForSourcePorts: "multiple filter chains with overlapping matching rules are defined". */
  | 'overlapping-match'
  /** "partial wildcards are not supported in \"server_names\"" (anything with "*" not of the form "*.name"). */
  | 'partial-wildcard'
  /** CidrRange::create failed: unparsable address or a prefix length too long for the family. */
  | 'invalid-prefix'
  /** destination_port outside 1..65535 (FilterChainMatch proto validation). */
  | 'invalid-port'
  /** validateFilterChains: "no filter chains specified" (no filter_chains and no default_filter_chain). */
  | 'no-filter-chains'
  /**
   * The same prefix under two keys at one level ("" next to 0.0.0.0/0 or ::/0): Envoy's trie then holds
   * two values for one prefix, which trips an assertion in debug builds and picks one arbitrarily otherwise.
   */
  | 'ambiguous-prefix';

export interface FilterChainConflict {
  readonly kind: FilterChainConflictKind;
  readonly message: string;
  /** Names (or "#index" when unnamed) of the filter chains involved. */
  readonly filterChains: readonly string[];
}

interface FilterChainIndex {
  readonly ports: DestinationPorts;
  readonly conflicts: FilterChainConflict[];
}

const IPV4_ANY: Cidr = { family: 4, network: 0n, prefixLength: 0 };
const IPV6_ANY: Cidr = { family: 6, network: 0n, prefixLength: 0 };
const CATCH_ALL = '';

const chainLabel = (chain: FilterChainJson, index: number): string => chain.name || `#${index}`;

/** CidrRange::create: the address with host bits cleared, or a reason it is refused. */
function parseRange(range: CidrRangeJson): { ok: true; cidr: Cidr } | { ok: false; reason: string } {
  const ip = parseIp(range.addressPrefix);
  if (!ip) return { ok: false, reason: `"${range.addressPrefix}" is not an IP address` };
  const length = range.prefixLen ?? 0;
  if (!Number.isInteger(length) || length < 0 || length > familyBits(ip.family)) {
    return { ok: false, reason: `prefix length ${length} is invalid for ${range.addressPrefix}` };
  }
  const bits = BigInt(familyBits(ip.family));
  const hostMask = (1n << (bits - BigInt(length))) - 1n;
  return { ok: true, cidr: { family: ip.family, network: ip.value & ~hostMask & ((1n << bits) - 1n), prefixLength: length } };
}

/** Keys of one CIDR level: "" (both families' /0) when the list is empty. */
function rangeKeys(
  ranges: readonly CidrRangeJson[] | undefined,
  onError: (reason: string) => void,
): { key: string; cidrs: readonly Cidr[] }[] {
  if (!ranges || ranges.length === 0) return [{ key: CATCH_ALL, cidrs: [IPV4_ANY, IPV6_ANY] }];
  const keys: { key: string; cidrs: readonly Cidr[] }[] = [];
  for (const range of ranges) {
    const parsed = parseRange(range);
    if (!parsed.ok) onError(parsed.reason);
    else keys.push({ key: formatCidr(parsed.cidr), cidrs: [parsed.cidr] });
  }
  return keys;
}

/** Envoy's FilterChainMatch equality for verifyNoDuplicateMatchers: proto equality, so order and presence count. */
function canonicalMatch(match: FilterChainMatchJson | undefined): string {
  const m = match ?? {};
  const nonEmpty = <T>(list: readonly T[] | undefined): readonly T[] | undefined => (list && list.length > 0 ? list : undefined);
  return JSON.stringify([
    m.destinationPort ?? null,
    nonEmpty(m.prefixRanges)?.map((r) => [r.addressPrefix, r.prefixLen ?? 0]) ?? [],
    nonEmpty(m.directSourcePrefixRanges)?.map((r) => [r.addressPrefix, r.prefixLen ?? 0]) ?? [],
    m.serverNames ?? [],
    m.transportProtocol ?? '',
    m.applicationProtocols ?? [],
    m.sourceType && m.sourceType !== 'ANY' ? m.sourceType : 'ANY',
    nonEmpty(m.sourcePrefixRanges)?.map((r) => [r.addressPrefix, r.prefixLen ?? 0]) ?? [],
    m.sourcePorts ?? [],
  ]);
}

function getOrCreate<K, V>(map: Map<K, V>, key: K, create: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = create();
    map.set(key, value);
  }
  return value;
}

/** FilterChainManagerImpl::addFilterChains without the listener-matcher path. */
function buildIndex(listener: ListenerJson): FilterChainIndex {
  const conflicts: FilterChainConflict[] = [];
  const ports: DestinationPorts = new Map();
  const seenMatches = new Map<string, string>();
  const owners = new Map<FilterChainJson, string>();
  const chains = listener.filterChains ?? [];

  if (chains.length === 0 && !listener.defaultFilterChain) {
    conflicts.push({ kind: 'no-filter-chains', message: `listener '${listener.name}' has no filter chains and no default filter chain`, filterChains: [] });
  }

  chains.forEach((chain, index) => {
    const label = chainLabel(chain, index);
    owners.set(chain, label);
    const match = chain.filterChainMatch ?? {};
    const canonical = canonicalMatch(chain.filterChainMatch);
    const earlier = seenMatches.get(canonical);
    if (earlier !== undefined) {
      conflicts.push({ kind: 'duplicate-match', message: `filter chain '${label}' has the same matching rules defined as '${earlier}'`, filterChains: [earlier, label] });
      return;
    }
    seenMatches.set(canonical, label);

    let invalid = false;
    const prefixError = (field: string) => (reason: string) => {
      invalid = true;
      conflicts.push({ kind: 'invalid-prefix', message: `filter chain '${label}': ${field}: ${reason}`, filterChains: [label] });
    };
    const destinationIps = rangeKeys(match.prefixRanges, prefixError('prefix_ranges'));
    const sourceIps = rangeKeys(match.sourcePrefixRanges, prefixError('source_prefix_ranges'));
    const directSourceIps = rangeKeys(match.directSourcePrefixRanges, prefixError('direct_source_prefix_ranges'));
    const serverNames: string[] = [];
    for (const name of match.serverNames ?? []) {
      if (name.includes('*') && !name.startsWith('*.')) {
        invalid = true;
        conflicts.push({ kind: 'partial-wildcard', message: `filter chain '${label}': partial wildcards are not supported in server_names ("${name}")`, filterChains: [label] });
      }
      // "*.example.com" is stored as ".example.com"; lookups try the name's suffixes against that key.
      const lower = name.toLowerCase();
      serverNames.push(lower.startsWith('*.') ? lower.slice(1) : lower);
    }
    const destinationPort = match.destinationPort ?? 0;
    if (match.destinationPort !== undefined && (!Number.isInteger(destinationPort) || destinationPort < 1 || destinationPort > 65535)) {
      invalid = true;
      conflicts.push({ kind: 'invalid-port', message: `filter chain '${label}': destination_port ${destinationPort} is outside 1..65535`, filterChains: [label] });
    }
    if (invalid) return;

    const names = serverNames.length > 0 ? serverNames : [CATCH_ALL];
    const transport = match.transportProtocol ?? CATCH_ALL;
    const alpns = match.applicationProtocols && match.applicationProtocols.length > 0 ? match.applicationProtocols : [CATCH_ALL];
    const sourceType: SourceType = match.sourceType ?? 'ANY';
    const sourcePorts = match.sourcePorts && match.sourcePorts.length > 0 ? match.sourcePorts : [0];

    const byIp = getOrCreate(ports, destinationPort, () => new PrefixMap<ServerNames>());
    for (const destination of destinationIps) {
      const byName = byIp.getOrCreate(destination.key, destination.cidrs, () => new Map());
      for (const name of names) {
        const byTransport = getOrCreate(byName, name, () => new Map());
        const byAlpn = getOrCreate(byTransport, transport, () => new Map());
        for (const alpn of alpns) {
          const byDirectSource = getOrCreate(byAlpn, alpn, () => new PrefixMap<SourceTypes>());
          for (const direct of directSourceIps) {
            const bySourceType = byDirectSource.getOrCreate(direct.key, direct.cidrs, () => new Map());
            const bySource = getOrCreate(bySourceType, sourceType, () => new PrefixMap<SourcePorts>());
            for (const source of sourceIps) {
              const byPort = bySource.getOrCreate(source.key, source.cidrs, () => new Map());
              for (const port of sourcePorts) {
                const existing = byPort.get(port);
                if (existing) {
                  conflicts.push({
                    kind: 'overlapping-match',
                    message: `multiple filter chains with overlapping matching rules are defined: '${owners.get(existing)}' and '${label}' (port ${destinationPort || 'any'}, destination ${destination.key || 'any'}, server name ${name || 'any'}, source ${source.key || 'any'})`,
                    filterChains: [owners.get(existing) ?? '?', label],
                  });
                } else {
                  byPort.set(port, chain);
                }
              }
            }
          }
        }
      }
    }
  });

  collectAmbiguousPrefixes(ports, conflicts);
  return { ports, conflicts: dedupeConflicts(conflicts) };
}

function collectAmbiguousPrefixes(ports: DestinationPorts, conflicts: FilterChainConflict[]): void {
  const check = <T>(map: PrefixMap<T>, where: string): void => {
    if (!map.entries.has(CATCH_ALL)) return;
    for (const key of ['0.0.0.0/0', '::/0']) {
      if (map.entries.has(key)) {
        conflicts.push({ kind: 'ambiguous-prefix', message: `${where}: "${key}" and a chain without ranges both claim ${key}`, filterChains: [] });
      }
    }
  };
  for (const [port, byIp] of ports) {
    check(byIp, `destination port ${port || 'any'}: prefix_ranges`);
    for (const byName of [...byIp.entries.values()].map((e) => e.value)) {
      for (const byTransport of byName.values()) {
        for (const byAlpn of byTransport.values()) {
          for (const byDirect of byAlpn.values()) {
            check(byDirect, `destination port ${port || 'any'}: direct_source_prefix_ranges`);
            for (const bySourceType of [...byDirect.entries.values()].map((e) => e.value)) {
              for (const bySource of bySourceType.values()) check(bySource, `destination port ${port || 'any'}: source_prefix_ranges`);
            }
          }
        }
      }
    }
  }
}

function dedupeConflicts(conflicts: FilterChainConflict[]): FilterChainConflict[] {
  const seen = new Set<string>();
  return conflicts.filter((c) => {
    const key = `${c.kind}|${c.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

// Compiled listeners are immutable values; index each once.
const indexCache = new WeakMap<ListenerJson, FilterChainIndex>();

function indexOf(listener: ListenerJson): FilterChainIndex {
  let index = indexCache.get(listener);
  if (!index) {
    index = buildIndex(listener);
    indexCache.set(listener, index);
  }
  return index;
}

/** What Envoy would refuse (or mis-handle) when adding this listener; empty when it is fine. */
export function findFilterChainConflicts(listener: ListenerJson): FilterChainConflict[] {
  return [...indexOf(listener).conflicts];
}

/** Network::Utility::isSameIpOrLoopback: a loopback peer, or a peer whose address is the local one. */
function isSameIpOrLoopback(source: IpAddress | undefined, destination: IpAddress | undefined): boolean {
  if (!source) return false;
  if (source.family === 4 && source.value >> 24n === 127n) return true;
  if (source.family === 6 && source.value === 1n) return true;
  return destination !== undefined && destination.family === source.family && destination.value === source.value;
}

/** findFilterChainForServerName: exact name, then "*.b.c", "*.c" by longest suffix, then no server_names. */
function findForServerName(byName: ServerNames, serverName: string): TransportProtocols | undefined {
  const exact = byName.get(serverName);
  if (exact) return exact;
  let pos = serverName.indexOf('.', 1);
  while (pos >= 0 && pos < serverName.length - 1) {
    const wildcard = byName.get(serverName.slice(pos));
    if (wildcard) return wildcard;
    pos = serverName.indexOf('.', pos + 1);
  }
  return byName.get(CATCH_ALL);
}

/** FilterChainManagerImpl::findFilterChain, levels below the destination port. */
function findBelowPort(byIp: DestinationIps, connection: FilterChainMatchInput): FilterChainJson | undefined {
  const destination = parseIp(connection.destinationIp);
  const byName = byIp.longestMatch(destination);
  if (!byName) return undefined;

  const serverName = (connection.serverName ?? '').toLowerCase();
  const byTransport = findForServerName(byName, serverName);
  if (!byTransport) return undefined;

  const transport = connection.transportProtocol ?? (serverName !== '' ? 'tls' : 'raw_buffer');
  const byAlpn = byTransport.get(transport) ?? byTransport.get(CATCH_ALL);
  if (!byAlpn) return undefined;

  // The first of the client's ALPN values that some chain names, else chains without application_protocols.
  let byDirectSource: DirectSourceIps | undefined;
  for (const alpn of connection.applicationProtocols ?? []) {
    byDirectSource = byAlpn.get(alpn);
    if (byDirectSource) break;
  }
  byDirectSource ??= byAlpn.get(CATCH_ALL);
  if (!byDirectSource) return undefined;

  const source = parseIp(connection.sourceIp);
  const directSource = connection.directSourceIp !== undefined ? parseIp(connection.directSourceIp) : source;
  const bySourceType = byDirectSource.longestMatch(directSource);
  if (!bySourceType) return undefined;

  // findFilterChainForSourceTypes: LOCAL or EXTERNAL when such chains exist for this kind of peer, else ANY.
  const local = isSameIpOrLoopback(source, destination);
  const bySource = (local ? bySourceType.get('SAME_IP_OR_LOOPBACK') : bySourceType.get('EXTERNAL')) ?? bySourceType.get('ANY');
  if (!bySource) return undefined;

  const byPort = bySource.longestMatch(source);
  if (!byPort) return undefined;
  const sourcePort = connection.sourcePort ?? 0;
  return byPort.get(sourcePort) ?? (sourcePort !== 0 ? byPort.get(0) : undefined);
}

/**
 * The filter chain Envoy picks for a connection: listener.defaultFilterChain when no chain
 * matches (or a more specific branch was chosen and then failed), undefined when there is none.
 */
export function selectFilterChain(listener: ListenerJson, connection: FilterChainMatchInput): FilterChainJson | undefined {
  const { ports } = indexOf(listener);
  // A specific destination_port branch, once present, is final: no fallback to the port-less chains.
  const specific = ports.get(connection.destinationPort);
  if (specific && connection.destinationPort !== 0) return findBelowPort(specific, connection) ?? listener.defaultFilterChain;
  const anyPort = ports.get(0);
  return (anyPort && findBelowPort(anyPort, connection)) ?? listener.defaultFilterChain;
}
