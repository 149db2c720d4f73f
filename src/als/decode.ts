// StreamAccessLogsMessage → DenialRecord, by the contract in src/denials/record.ts.
// Decoding is strict: Envoy's protos (an unknown field at any depth fails,
// src/envoy/codec.ts), the envelope's PGV rules, and then the contract (log name, the egress.* tags and their values). A message
// that fails any of it is refused whole: nothing in it is stored.
import { decodeStrict } from '../envoy/codec.js';
import { envoyType } from '../envoy/protos.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import { CAP_BY_HOST, classifyForwardEntry, DEFAULT_LOGGED_LISTENER, type ForwardEntryFacts } from '../compile/accessLogContract.js';
import {
  ALS_LOG_NAME,
  SNI_FILTER_STATE_KEY,
  TAG,
  isDenialReason,
  isVerdict,
  type DenialReason,
  type DenialRecord,
  type Verdict,
} from '../denials/record.js';

/** A message or entry that breaks Envoy's protos or the contract; the text names the field. */
export class AlsInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AlsInputError';
  }
}

export interface AlsIdentifier {
  readonly nodeId: string;
  readonly cluster: string;
  readonly logName: string;
}

/** What one message carries, before the stream adds node and stamps. */
export interface DecodedMessage {
  readonly identifier?: AlsIdentifier;
  /** Records without node, revision and listenerVersion (the stream knows those). */
  readonly records: readonly Omit<DenialRecord, 'node'>[];
  /** Entries that are neither a denial nor a logged allowed connection (accessLogContract.ts classifyForwardEntry): not recorded. */
  readonly ignored: number;
}

type Obj = Record<string, any>;

const KNOWN_TAGS = new Set<string>(Object.values(TAG));
// "Common" HTTP methods as Envoy's RequestMethod enum numbers them (config/core/v3/base.proto).
const METHODS = ['', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];

const toNumber = (value: unknown): number =>
  value === undefined || value === null ? 0 : typeof value === 'number' ? value : typeof value === 'object' && 'toNumber' in (value as object) ? (value as { toNumber(): number }).toNumber() : Number(value);

function timeOf(timestamp: Obj | undefined, now: () => number): string {
  if (!timestamp) return new Date(now()).toISOString();
  const ms = toNumber(timestamp.seconds) * 1000 + Math.floor(toNumber(timestamp.nanos) / 1e6);
  const date = new Date(ms);
  if (Number.isNaN(date.getTime())) throw new AlsInputError(`start_time is out of range (${String(timestamp.seconds)} s)`);
  return date.toISOString();
}

/** "ip:port" ("[v6]:port") of a config.core.v3.Address with a socket address. */
function addressOf(address: Obj | undefined, field: string): string {
  const socket = address?.socketAddress as Obj | undefined;
  if (!socket || typeof socket.address !== 'string' || socket.address === '') {
    throw new AlsInputError(`common_properties.${field} must be a socket address (the generated access log always has one)`);
  }
  const port = toNumber(socket.portValue);
  return socket.address.includes(':') ? `[${socket.address}]:${port}` : `${socket.address}:${port}`;
}

function tagsOf(common: Obj, where: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const [key, value] of Object.entries((common.customTags ?? {}) as Record<string, string>)) {
    if (!key.startsWith('egress.')) continue; // an operator's own tags
    if (!KNOWN_TAGS.has(key)) throw new AlsInputError(`${where}.custom_tags: unknown tag "${key}"; known: ${[...KNOWN_TAGS].join(', ')}`);
    tags.set(key, value);
  }
  return tags;
}

let stringValueType: ReturnType<typeof envoyType> | undefined;

/** The string inside an Any holding google.protobuf.StringValue (already checked for unknown fields). */
function stringValueOf(any: Obj | undefined): string | undefined {
  if (!any) return undefined;
  const url = (any.typeUrl ?? any.type_url) as string | undefined;
  if (url !== TypeUrl.StringValue) return undefined;
  stringValueType ??= envoyType('google.protobuf.StringValue');
  return (stringValueType.decode(any.value as Uint8Array) as unknown as { value?: string }).value;
}

/** What classifyForwardEntry reads, from the entry's common properties and the logger's tags. */
function forwardFacts(common: Obj, envoyCap: boolean): ForwardEntryFacts {
  const flags = (common.responseFlags ?? {}) as Obj;
  const upstreamIp = ((common.upstreamRemoteAddress as Obj | undefined)?.socketAddress as Obj | undefined)?.address;
  return {
    ...(typeof upstreamIp === 'string' && upstreamIp !== '' && { upstreamIp }),
    ...(typeof common.upstreamCluster === 'string' && common.upstreamCluster !== '' && { upstreamCluster: common.upstreamCluster }),
    anyFlag: Object.values(flags).some((value) => value === true || (typeof value === 'object' && value !== null)),
    upstreamConnectionFailure: flags.upstreamConnectionFailure === true,
    envoyCap,
  };
}

/**
 * The verdict and reason: from the tags, or derived (accessLogContract.ts). undefined: the
 * entry is neither a denial nor an allowed connection a policy asked to log (a forwarding
 * chain's logger also sends failures that are neither), and is not recorded.
 */
function verdictAndReason(tags: Map<string, string>, common: Obj, where: string, tcp: boolean): { verdict: Verdict; reason?: DenialReason; refusedAllowed?: true } | undefined {
  const verdict = tags.get(TAG.verdict);
  if (verdict !== undefined && !isVerdict(verdict)) throw new AlsInputError(`${where}.custom_tags["${TAG.verdict}"]: "${verdict}" is not one of denied, would-deny, allowed`);
  const reason = tags.get(TAG.reason);
  if (reason !== undefined && !isDenialReason(reason)) throw new AlsInputError(`${where}.custom_tags["${TAG.reason}"]: unknown reason "${reason}"`);
  const cap = tags.get(TAG.cap);
  if (cap !== undefined && cap !== CAP_BY_HOST) throw new AlsInputError(`${where}.custom_tags["${TAG.cap}"]: "${cap}" is not "${CAP_BY_HOST}"`);
  // Without the tag the chain has connection_limit (accessLogContract.ts TAG.cap).
  const envoyCap = cap === undefined;
  if (verdict === undefined) {
    if (reason !== undefined) return { verdict: 'denied', reason };
    if (!tcp) throw new AlsInputError(`${where}.custom_tags: "${TAG.verdict}" or "${TAG.reason}" is required on an HTTP entry`);
    const classified = classifyForwardEntry(forwardFacts(common, envoyCap));
    return classified ? { verdict: 'denied', reason: classified } : undefined;
  }
  if (verdict === 'allowed') {
    // The connection_limit filter closes the connection before tcp_proxy dials, and the host
    // refuses marked sockets to special addresses: a "log": "all" logger sees both.
    const flags = (common.responseFlags ?? {}) as Obj;
    const details = String(common.connectionTerminationDetails ?? '');
    if (flags.upstreamOverflow === true || /connection_limit/i.test(details)) return { verdict: 'denied', reason: 'per-source-limit', refusedAllowed: true };
    const classified = tcp ? classifyForwardEntry(forwardFacts(common, envoyCap)) : undefined;
    return classified ? { verdict: 'denied', reason: classified, refusedAllowed: true } : { verdict };
  }
  if (reason === undefined) throw new AlsInputError(`${where}.custom_tags: "${TAG.reason}" is required when the verdict is ${verdict}`);
  return { verdict, reason };
}

function commonRecord(common: Obj | undefined, where: string, now: () => number, tcp: boolean) {
  if (!common) throw new AlsInputError(`${where}.common_properties is missing`);
  const tags = tagsOf(common, `${where}.common_properties`);
  const listener = tags.get(TAG.listener) ?? DEFAULT_LOGGED_LISTENER;
  if (listener === '') throw new AlsInputError(`${where}.common_properties.custom_tags: "${TAG.listener}" is empty`);
  const judged = verdictAndReason(tags, common, `${where}.common_properties`, tcp);
  // Addresses and time are checked on every entry, recorded or not.
  const time = timeOf(common.startTime as Obj | undefined, now);
  const source = addressOf(common.downstreamRemoteAddress as Obj | undefined, 'downstream_remote_address');
  const destination = addressOf(common.downstreamLocalAddress as Obj | undefined, 'downstream_local_address');
  if (!judged) return undefined;
  const { verdict, reason } = judged;
  // The policies of a "log": "all" logger asked for the log; they are not why it was refused.
  const policy = judged.refusedAllowed ? undefined : tags.get(TAG.policy);
  const chain = tags.get(TAG.chain);
  const revision = tags.get(TAG.revision);
  return {
    time,
    source,
    destination,
    verdict,
    ...(reason !== undefined ? { reason } : {}),
    ...(policy ? { policy } : {}),
    ...(revision ? { revision } : {}),
    listener,
    ...(chain ? { chain } : {}),
  };
}

function tcpRecord(entry: Obj, where: string, now: () => number): Omit<DenialRecord, 'node'> | undefined {
  const common = entry.commonProperties as Obj | undefined;
  const base = commonRecord(common, where, now, true);
  if (!base) return undefined;
  const sni =
    stringValueOf((common!.filterStateObjects as Record<string, Obj> | undefined)?.[SNI_FILTER_STATE_KEY]) ||
    ((common!.tlsProperties as Obj | undefined)?.tlsSniHostname as string | undefined) ||
    undefined;
  return { ...base, ...(sni ? { serverName: sni.toLowerCase() } : {}) };
}

function httpRecord(entry: Obj, where: string, now: () => number): Omit<DenialRecord, 'node'> {
  const base = commonRecord(entry.commonProperties as Obj | undefined, where, now, false)!;
  const request = (entry.request ?? {}) as Obj;
  const response = (entry.response ?? {}) as Obj;
  // Host may carry a port ("example.com:80", "[::1]:80"): the name is what a policy allows.
  const authority = String(request.authority ?? '');
  const host = authority.startsWith('[') ? authority.slice(0, authority.indexOf(']') + 1) : authority.replace(/:\d+$/, '');
  const method = METHODS[toNumber(request.requestMethod)] || undefined;
  // The explicit forward proxy (listener "forward_http"): the connection's local address is
  // the proxy's own, the destination is the CONNECT target / absolute-form Host. An address
  // literal there is the destination (allow.cidrs), not a server name (allow.sni).
  const literal = base.listener === FORWARD_HTTP_LISTENER ? forwardLiteral(authority, method === 'CONNECT') : undefined;
  const status = response.responseCode ? toNumber((response.responseCode as Obj).value) : undefined;
  const http = {
    ...(method ? { method } : {}),
    ...(request.path ? { path: String(request.path).slice(0, 512) } : {}),
    ...(status !== undefined ? { status } : {}),
  };
  if (literal !== undefined) return { ...base, ...(literal && { destination: literal }), http };
  return { ...base, ...(host ? { serverName: host.toLowerCase() } : {}), http };
}

/** The forward proxy's HTTP listener (src/compile/forwardNames.ts FORWARD_HTTP_LISTENER_NAME). */
const FORWARD_HTTP_LISTENER = 'forward_http';

/** "ip:port" / "[v6]:port" when the authority is an address literal ("" when a CONNECT names no port; plain HTTP: 80 by default); undefined for a name. */
function forwardLiteral(authority: string, connect: boolean): string | undefined {
  const match = /^(\[[0-9a-fA-F:.]+\]|[0-9]{1,3}(?:\.[0-9]{1,3}){3})(?::([0-9]{1,5}))?$/.exec(authority);
  if (!match) return undefined;
  const port = match[2] ?? (connect ? undefined : '80');
  return port === undefined ? '' : `${match[1]!.toLowerCase()}:${Number(port)}`;
}

/** One StreamAccessLogsMessage from its bytes; throws AlsInputError naming what is wrong. */
export function decodeAccessLogsMessage(bytes: Uint8Array, options: { first?: boolean; now?: () => number } = {}): DecodedMessage {
  const now = options.now ?? Date.now;
  let message: Obj;
  try {
    message = decodeStrict(TypeUrl.StreamAccessLogsMessage, bytes) as unknown as Obj;
  } catch (error) {
    throw new AlsInputError(`not a valid StreamAccessLogsMessage: ${(error as Error).message}`);
  }
  // The envelope's PGV rules (als.proto), checked by hand: the entries' own rules are not applied,
  // because Envoy emits fields it never fills (common_properties.sample_rate is 0, below its
  // "gt: 0" rule) and validates nothing it sends.
  if (message.identifier && !(message.identifier as Obj).node) throw new AlsInputError('identifier.node is required (PGV message.required)');
  if (!message.tcpLogs && !message.httpLogs) throw new AlsInputError('one of tcp_logs or http_logs is required (PGV oneof log_entries required)');
  const batch = ((message.tcpLogs ?? message.httpLogs) as Obj).logEntry as unknown[] | undefined;
  if (!batch || batch.length === 0) throw new AlsInputError(`${message.tcpLogs ? 'tcp_logs' : 'http_logs'}.log_entry must hold at least one entry (PGV repeated.min_items)`);
  let identifier: AlsIdentifier | undefined;
  if (message.identifier) {
    const id = message.identifier as Obj;
    const logName = String(id.logName ?? '');
    if (logName !== ALS_LOG_NAME) throw new AlsInputError(`identifier.log_name is "${logName}": this service takes only the "${ALS_LOG_NAME}" access log`);
    const nodeId = String((id.node as Obj | undefined)?.id ?? '');
    if (nodeId === '') throw new AlsInputError('identifier.node.id is empty');
    identifier = { nodeId, cluster: String((id.node as Obj).cluster ?? ''), logName };
  }
  if (options.first && !identifier) throw new AlsInputError('the first StreamAccessLogsMessage of a stream must carry identifier.node');
  const tcp = (message.tcpLogs as Obj | undefined)?.logEntry as Obj[] | undefined;
  const http = (message.httpLogs as Obj | undefined)?.logEntry as Obj[] | undefined;
  const records: Omit<DenialRecord, 'node'>[] = [];
  let ignored = 0;
  if (tcp) {
    tcp.forEach((entry, i) => {
      const record = tcpRecord(entry, `tcp_logs.log_entry[${i}]`, now);
      if (record) records.push(record);
      else ignored += 1;
    });
  } else (http ?? []).forEach((entry, i) => records.push(httpRecord(entry, `http_logs.log_entry[${i}]`, now)));
  return { ...(identifier ? { identifier } : {}), records, ignored };
}
