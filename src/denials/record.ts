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
//       egress.verdict   "denied" | "would-deny" | "allowed"; absent: "denied" when
//                        egress.reason is there, else (TCP only) derived, see below
//       egress.reason    REQUIRED when the verdict is "denied" or "would-deny" by tag:
//                        one of DENIAL_REASONS
//       egress.listener  the listener's name; absent: "egress_tproxy" (the compiler
//                        leaves it out only on the transparent listener of that name)
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
//       egress.cap       optional  "host" on a forwarding chain's logger when the
//                                  chain has no connection_limit (serve
//                                  --max-connections-per-source 0: the host agent's
//                                  kernel cap is the only one); such entries are never
//                                  classified "per-source-limit"
//     Unknown tags starting with "egress." are refused as bad input; other tags
//     are ignored (an operator may add their own).
//   * No filter state: Envoy >= 1.24 (envoyproxy/envoy#22523) fills
//     tls_properties.tls_sni_hostname from the requested server name also when
//     it does not terminate TLS. (Listeners of earlier versions of egress-xds set
//     filter state "egress.sni" with set_filter_state and logged it; such
//     entries are still read.)
//   * A forwarding chain (name|S, original_dst|S, forward_tls|S) without a
//     "log": "all" policy has ONE logger, tagged with the chain only, whose
//     filter passes connections without an upstream host or with a response
//     flag. The server classifies each entry (classifyForwardEntry in
//     src/compile/accessLogContract.ts): no upstream host and no flag is
//     "per-source-limit" (unless the logger carries egress.cap "host"); UF of
//     dynamic_forward_proxy_cluster to a special address is
//     "forbidden-address"; anything else is not a denial and is
//     not recorded (counted in egress_xds_als_records_total{type="not-a-denial"}).
//     With "log": "all" the one logger has no filter and is tagged "allowed";
//     the same classification turns its refusals into denials.
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
//   reason       tag egress.reason; else the classification above; and an
//                entry tagged "allowed" that the classification calls a
//                refusal (or whose response_flags say upstream_overflow, or
//                whose connection_termination_details names connection_limit)
//                is that denial
//   verdict      tag egress.verdict, else derived (the rules above)
//   policy       tag egress.policy
//   listener     tag egress.listener, else "egress_tproxy"
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
