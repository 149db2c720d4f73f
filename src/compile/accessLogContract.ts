// The contract between the access loggers the compiler generates and the control plane's
// Access Log Service (src/denials/record.ts says what each field becomes in a record). One
// definition for both sides, so the listener and the decoder cannot drift apart.

import { EGRESS_LISTENER_NAME, NAME_UPSTREAM_CLUSTER } from './names.js';
import { SPECIAL_RANGES } from './specialAddresses.js';
import { cidrContainsIp, mustParseCidr, parseIp } from '../net/ip.js';

/** CommonGrpcAccessLogConfig.log_name of every access logger egress-xds generates. */
export const ALS_LOG_NAME = 'egress-xds';

/** The literal custom tags the generated access loggers carry. */
export const TAG = {
  verdict: 'egress.verdict',
  reason: 'egress.reason',
  listener: 'egress.listener',
  chain: 'egress.chain',
  policy: 'egress.policy',
  /** Never set by the compiler (it would change every listener on every commit); the server stamps it. */
  revision: 'egress.revision',
  /**
   * On a forwarding chain's logger when the chain has no connection_limit (serve
   * --max-connections-per-source 0), value CAP_BY_HOST: Envoy caps no source there. Absent:
   * the chain has the cap (so the default layout's bytes carry nothing more).
   */
  cap: 'egress.cap',
} as const;

/** egress.cap's one value: the per-source cap is the host agent's (kernel), not the chain's. */
export const CAP_BY_HOST = 'host';

/**
 * The filter state key that held the requested server name (set by set_filter_state) in the
 * listeners of earlier versions; the decoder still reads it. The compiler no longer sets it:
 * tls_properties.tls_sni_hostname carries the name (Envoy >= 1.24).
 */
export const SNI_FILTER_STATE_KEY = 'egress.sni';

// ───────────── What the server derives instead of the listener carrying it ─────────────
// The listener's size is per chain (issue 7), so what every chain would repeat is derived on
// the server from the entry (src/als/decode.ts):
//   * egress.listener absent: the transparent listener's default name, DEFAULT_LOGGED_LISTENER
//     (the compiler omits the tag only there; other listeners keep it);
//   * egress.verdict absent with egress.reason present: "denied";
//   * both absent (a forwarding chain's one logger, TCP only): the reason comes from the
//     entry, classifyForwardEntry below; an entry it cannot classify (a DNS failure, a
//     refused public upstream) is not a denial and is not recorded.


/** The listener an entry without egress.listener comes from. */
export const DEFAULT_LOGGED_LISTENER = EGRESS_LISTENER_NAME;

/** What classifyForwardEntry reads of an entry (AccessLogCommon, decoded). */
export interface ForwardEntryFacts {
  /** upstream_remote_address's IP, when tcp_proxy chose an upstream host. */
  readonly upstreamIp?: string;
  /** upstream_cluster (set with the host). */
  readonly upstreamCluster?: string;
  /** Any response flag set. */
  readonly anyFlag: boolean;
  /** response_flags.upstream_connection_failure (UF). */
  readonly upstreamConnectionFailure: boolean;
  /** The chain has Envoy's per-source cap (connection_limit): no egress.cap tag. */
  readonly envoyCap: boolean;
}

const specialCidrs = SPECIAL_RANGES.map((r) => mustParseCidr(r.cidr));

/** The IP is in one of the ranges a name may never reach (specialAddresses.ts). */
export function isSpecialAddress(ip: string): boolean {
  const parsed = parseIp(ip);
  return parsed !== undefined && specialCidrs.some((cidr) => cidrContainsIp(cidr, parsed));
}

/**
 * Why Envoy refused a connection a forwarding chain let through, from its entry:
 *   per-source-limit   no upstream host and no response flag, on a chain with the cap:
 *                      connection_limit closed it before tcp_proxy could pick a host (it
 *                      sets neither). On a chain without it (egress.cap "host") the same
 *                      entry is a connection that ended before an upstream was chosen
 *                      (the guest gave up while the name resolved): not a denial;
 *   forbidden-address  an upstream connection failure (UF) of the name cluster to a special
 *                      address: the host refuses that cluster's marked sockets there, and a
 *                      policy can reach such a range only by address (original_dst_cluster);
 *   undefined          anything else (the connection went through, or failed for another reason).
 */
export function classifyForwardEntry(facts: ForwardEntryFacts): 'per-source-limit' | 'forbidden-address' | undefined {
  if (facts.upstreamIp === undefined) return facts.anyFlag || !facts.envoyCap ? undefined : 'per-source-limit';
  if (facts.upstreamConnectionFailure && facts.upstreamCluster === NAME_UPSTREAM_CLUSTER && isSpecialAddress(facts.upstreamIp)) return 'forbidden-address';
  return undefined;
}
