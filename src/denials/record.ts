// The denial record, and the CONTRACT between the access-log configuration in
// the generated listeners (src/compile/, written by the "dnshttp" side) and the
// Access Log Service that decodes it (src/als/, src/denials/). Both sides read
// this file; change it only together.
//
// ───────────────────────────── The contract ─────────────────────────────
// Transport
//   * Envoy's gRPC access loggers (envoy.access_loggers.tcp_grpc for TCP
//     proxies and listener-level logs, envoy.access_loggers.http_grpc for the
//     HTTP connection manager of the port-80 path) stream to the cluster that
//     points at the control plane (the ADS cluster of the bootstrap), service
//     envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs, on the same
//     address and TLS as ADS.
//   * CommonGrpcAccessLogConfig.log_name = ALS_LOG_NAME ("egress-xds"). A stream
//     whose identifier names another log is refused (INVALID_ARGUMENT).
//   * transport_api_version: V3.
//   * The first StreamAccessLogsMessage of a stream carries identifier.node
//     (node.id non-empty); later messages may omit the identifier (Envoy does).
//
// What each access logger is configured with
//   * custom_tags: LITERAL tags (CustomTag.literal), fixed per access logger,
//     i.e. per filter chain / route / listener:
//       egress.verdict   REQUIRED  "denied" | "would-deny" | "allowed"
//       egress.reason    REQUIRED unless verdict is "allowed": one of DENIAL_REASONS
//       egress.listener  REQUIRED  the listener's name (e.g. "egress_tproxy")
//       egress.chain     optional  the filter chain name (or route name on HTTP)
//       egress.policy    optional  the policy (or policies, comma-separated) the
//                                  verdict comes from: the audit policy that let a
//                                  would-deny through, the policy that allowed, or
//                                  for "forbidden-address" the policy that named it
//       egress.revision  optional  do NOT put the store revision in a literal tag
//                                  unless the listener changes anyway: it would
//                                  make every commit re-send every listener. When
//                                  absent, the server stamps the revision in force
//                                  when the record arrives (see `revision` below).
//     Unknown tags starting with "egress." are refused as bad input; other tags
//     are ignored (an operator may add their own).
//   * filter_state_objects_to_log: ["egress.sni"] where a set_filter_state
//     network filter (on_new_connection, factory_key "envoy.string") sets
//     egress.sni = %REQUESTED_SERVER_NAME% before tcp_proxy: Envoy's gRPC
//     access log fills tls_properties only when it terminates TLS itself,
//     which a passthrough listener never does. Serialized by Envoy as
//     google.protobuf.StringValue in common_properties.filter_state_objects.
//
// How a record is derived (decodeTcpEntry / decodeHttpEntry in src/als/decode.ts)
//   time         common_properties.start_time (the server's clock if absent)
//   node         identifier.node.id of the stream
//   source       common_properties.downstream_remote_address (socket ip:port)
//   destination  common_properties.downstream_local_address: after the
//                original_dst listener filter this is the address the guest
//                dialled (the original destination)
//   serverName   HTTP: request.authority (the Host header, port stripped);
//                TCP: filter_state_objects["egress.sni"], else
//                tls_properties.tls_sni_hostname, else absent
//   reason       tag egress.reason; except that an entry tagged "allowed"
//                whose response_flags say upstream_overflow, or whose
//                connection_termination_details names connection_limit, is
//                a "per-source-limit" denial (the connection_limit filter
//                closes it before tcp_proxy dials)
//   verdict      tag egress.verdict (with the rule above)
//   policy       tag egress.policy
//   listener     tag egress.listener
//   chain        tag egress.chain
//   revision     tag egress.revision, else the store revision whose state the
//                node had acknowledged when the record arrived (as GET
//                /v1/nodes says "acknowledged"), else the store's revision;
//                listenerVersion is the Listener version the node had
//                acknowledged then (the config actually in force)
//   http         HTTP entries only: method, path, response code
// ─────────────────────────────────────────────────────────────────────────

// The constants of the contract live with the listener side that emits them (one definition).
export { ALS_LOG_NAME, SNI_FILTER_STATE_KEY, TAG } from '../compile/accessLogContract.js';

export const DENIAL_REASONS = [
  /** No policy selecting this source allows the name (or the address). */
  'no-policy',
  /** The name is allowed but resolves to (or the guest dialled) a forbidden address: loopback, metadata, link-local, the host. */
  'forbidden-address',
  /** The source has reached its connection cap (--max-connections-per-source). */
  'per-source-limit',
  /** The connection would reach Envoy's own listener again. */
  'loop',
  /** Plain HTTP whose Host header no policy allows (403 on port 80). */
  'http-host',
  /** A DNS query for a name no policy allows (REFUSED/NXDOMAIN). */
  'dns-name',
  /** UDP to port 443 (QUIC) without a CIDR rule allowing it. */
  'quic',
  /** TLS without SNI, or a protocol the listener cannot name. */
  'no-server-name',
] as const;
export type DenialReason = (typeof DENIAL_REASONS)[number];

export const VERDICTS = ['denied', 'would-deny', 'allowed'] as const;
export type Verdict = (typeof VERDICTS)[number];

export const isDenialReason = (value: string): value is DenialReason => (DENIAL_REASONS as readonly string[]).includes(value);
export const isVerdict = (value: string): value is Verdict => (VERDICTS as readonly string[]).includes(value);

/** One logged connection (or HTTP request), as stored, served and written to the JSONL file. */
export interface DenialRecord {
  /** ISO 8601 time the connection started (Envoy's clock). */
  readonly time: string;
  /** The Envoy node id. */
  readonly node: string;
  /** The microVM's address, "ip:port" ("[v6]:port" for IPv6). */
  readonly source: string;
  /** The original destination, "ip:port". */
  readonly destination: string;
  /** SNI (TLS) or Host (plain HTTP), when there was one. */
  readonly serverName?: string;
  /** Why it was refused (absent for verdict "allowed"). */
  readonly reason?: DenialReason;
  readonly verdict: Verdict;
  /** The policy (or comma-separated policies) the verdict comes from, if any. */
  readonly policy?: string;
  /** The store revision in force when it happened (see the contract). */
  readonly revision?: string;
  /** The Listener version the node had acknowledged when the record arrived. */
  readonly listenerVersion?: string;
  readonly listener: string;
  readonly chain?: string;
  /** HTTP entries only. */
  readonly http?: { readonly method?: string; readonly path?: string; readonly status?: number };
}
