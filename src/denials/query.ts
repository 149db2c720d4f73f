// Which stored records a request asks for: the filters of GET /v1/denials
// (node, source, destination, since, verdict, limit), parsed strictly, and the
// summary view (per source: what it tried to reach, how often, first and last).
import { isIP } from 'node:net';
import { cidrContainsIp, parseCidr, parseIp } from '../net/ip.js';
import type { FieldError, Result } from '../policy/model.js';
import type { StoredDenial } from './buffer.js';
import { isVerdict, type Verdict } from './record.js';

export interface DenialFilter {
  readonly node?: string;
  /** An IP, "ip:port", or a CIDR. */
  readonly source?: string;
  /** An IP, "ip:port", or a server name (SNI/Host, exact). */
  readonly destination?: string;
  /** Only records at or after this time (ms since the epoch). */
  readonly sinceMs?: number;
  /** Default: denied and would-deny (allowed connections are logged only when a policy asks). */
  readonly verdicts: readonly Verdict[];
  readonly limit: number;
}

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 10_000;
const DEFAULT_VERDICTS: readonly Verdict[] = ['denied', 'would-deny'];

const fail = (field: string, message: string): { ok: false; error: FieldError } => ({ ok: false, error: { field, message } });

/** "1h", "15m", "30s", "2d" → milliseconds. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d{1,9})(s|m|h|d)$/.exec(text);
  if (!match) return undefined;
  return Number(match[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 's' | 'm' | 'h' | 'd'];
}

/** An ISO 8601 time, or a duration back from now ("1h"). */
export function parseSince(text: string, now: number): number | undefined {
  const duration = parseDuration(text);
  if (duration !== undefined) return now - duration;
  if (!/^\d{4}-\d{2}-\d{2}T/.test(text)) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

/** "ip:port" / "[v6]:port" → its parts; undefined when it is not one. */
export function splitHostPort(text: string): { ip: string; port: number } | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const ip = match[1] ?? match[2]!;
  return isIP(ip) ? { ip, port: Number(match[3]) } : undefined;
}

const ipOf = (address: string): string => splitHostPort(address)?.ip ?? address;

function checkAddressFilter(field: string, text: string, allowName: boolean): FieldError | undefined {
  if (text.length > 300) return { field, message: 'is too long' };
  if (isIP(text) || splitHostPort(text) || (text.includes('/') && parseCidr(text).ok)) return undefined;
  if (allowName && /^[a-z0-9*]([a-z0-9.-]*[a-z0-9])?$/i.test(text)) return undefined;
  return { field, message: `must be an IP address, IP:PORT${allowName ? ', a server name' : ' or a CIDR'}, got "${text}"` };
}

const KNOWN = new Set(['node', 'source', 'destination', 'since', 'limit', 'verdict', 'follow']);

export function parseDenialFilter(query: URLSearchParams, now: number, defaultLimit = DEFAULT_LIMIT): Result<DenialFilter> {
  for (const key of query.keys()) {
    if (!KNOWN.has(key)) return fail(key, `unknown query parameter; expected ${[...KNOWN].join(', ')}`);
    if (query.getAll(key).length > 1) return fail(key, 'is given more than once');
  }
  const node = query.get('node') ?? undefined;
  if (node !== undefined && (node === '' || node.length > 1024)) return fail('node', 'must be a node id (1 to 1024 characters)');
  const source = query.get('source') ?? undefined;
  if (source !== undefined) {
    const problem = checkAddressFilter('source', source, false);
    if (problem) return { ok: false, error: problem };
  }
  const destination = query.get('destination') ?? undefined;
  if (destination !== undefined) {
    const problem = checkAddressFilter('destination', destination, true);
    if (problem) return { ok: false, error: problem };
  }
  let sinceMs: number | undefined;
  const since = query.get('since');
  if (since !== null) {
    sinceMs = parseSince(since, now);
    if (sinceMs === undefined) return fail('since', `must be an ISO 8601 time or a duration such as 30s, 15m, 1h, 2d; got "${since}"`);
  }
  let limit = defaultLimit;
  const limitText = query.get('limit');
  if (limitText !== null) {
    limit = /^\d{1,6}$/.test(limitText) ? Number(limitText) : NaN;
    if (!(limit >= (defaultLimit === 0 ? 0 : 1) && limit <= MAX_LIMIT)) return fail('limit', `must be an integer ${defaultLimit === 0 ? 0 : 1} to ${MAX_LIMIT}`);
  }
  let verdicts = DEFAULT_VERDICTS;
  const verdictText = query.get('verdict');
  if (verdictText !== null) {
    const list = verdictText.split(',');
    const bad = list.find((v) => !isVerdict(v));
    if (bad !== undefined) return fail('verdict', `"${bad}" is not one of denied, would-deny, allowed`);
    verdicts = list as Verdict[];
  }
  return {
    ok: true,
    value: {
      ...(node !== undefined ? { node } : {}),
      ...(source !== undefined ? { source } : {}),
      ...(destination !== undefined ? { destination } : {}),
      ...(sinceMs !== undefined ? { sinceMs } : {}),
      verdicts,
      limit,
    },
  };
}

function addressMatches(filter: string, address: string): boolean {
  if (filter === address) return true;
  if (splitHostPort(filter)) return false; // ip:port: exact only
  const ip = ipOf(address);
  if (filter.includes('/')) {
    const cidr = parseCidr(filter);
    const parsed = parseIp(ip);
    return cidr.ok && parsed !== undefined && cidrContainsIp(cidr.cidr, parsed);
  }
  return filter === ip;
}

/** The filter as a predicate (limit aside). */
export function denialMatcher(filter: DenialFilter): (record: StoredDenial) => boolean {
  const destination = filter.destination?.toLowerCase();
  return (record) =>
    filter.verdicts.includes(record.verdict) &&
    (filter.node === undefined || record.node === filter.node) &&
    (filter.source === undefined || addressMatches(filter.source, record.source)) &&
    (destination === undefined || record.serverName === destination || addressMatches(filter.destination!, record.destination)) &&
    (filter.sinceMs === undefined || Date.parse(record.time) >= filter.sinceMs);
}

export interface DestinationSummary {
  /** The server name when there was one, else the original destination ip:port. */
  readonly destination: string;
  readonly serverName?: string;
  /** The original destinations seen for it (up to 5). */
  readonly addresses: readonly string[];
  readonly count: number;
  readonly firstSeen: string;
  readonly lastSeen: string;
  readonly reasons: readonly string[];
  readonly verdicts: readonly Verdict[];
}

export interface SourceSummary {
  /** The source IP (ports are ephemeral). */
  readonly source: string;
  readonly node: string;
  readonly count: number;
  readonly destinations: readonly DestinationSummary[];
}

/** Per node and source IP: each destination, how often, first and last seen; busiest first. */
export function summarize(records: Iterable<StoredDenial>, filter: DenialFilter): SourceSummary[] {
  const matches = denialMatcher(filter);
  type Acc = { destination: string; serverName?: string; addresses: Set<string>; count: number; first: string; last: string; reasons: Set<string>; verdicts: Set<Verdict> };
  const bySource = new Map<string, { source: string; node: string; count: number; destinations: Map<string, Acc> }>();
  for (const record of records) {
    if (!matches(record)) continue;
    const source = ipOf(record.source);
    const key = `${record.node}\u0000${source}`;
    let entry = bySource.get(key);
    if (!entry) bySource.set(key, (entry = { source, node: record.node, count: 0, destinations: new Map() }));
    entry.count += 1;
    const destinationKey = record.serverName ?? record.destination;
    let acc = entry.destinations.get(destinationKey);
    if (!acc) {
      acc = { destination: destinationKey, addresses: new Set(), count: 0, first: record.time, last: record.time, reasons: new Set(), verdicts: new Set() };
      if (record.serverName) acc.serverName = record.serverName;
      entry.destinations.set(destinationKey, acc);
    }
    acc.count += 1;
    if (acc.addresses.size < 5) acc.addresses.add(record.destination);
    if (record.time < acc.first) acc.first = record.time;
    if (record.time > acc.last) acc.last = record.time;
    if (record.reason) acc.reasons.add(record.reason);
    acc.verdicts.add(record.verdict);
  }
  return [...bySource.values()]
    .sort((a, b) => b.count - a.count || (a.source < b.source ? -1 : 1))
    .map((s) => ({
      source: s.source,
      node: s.node,
      count: s.count,
      destinations: [...s.destinations.values()]
        .sort((a, b) => b.count - a.count || (a.destination < b.destination ? -1 : 1))
        .map((a) => ({
          destination: a.destination,
          ...(a.serverName ? { serverName: a.serverName } : {}),
          addresses: [...a.addresses],
          count: a.count,
          firstSeen: a.first,
          lastSeen: a.last,
          reasons: [...a.reasons].sort(),
          verdicts: [...a.verdicts].sort(),
        })),
    }));
}
