// Names and defaults of the explicit forward proxy (seed 000): what Envoy, operators
// and `POST /v1/check` see. Kept beside names.ts rather than in it: one feature, one file.

export const FORWARD_HTTP_LISTENER_NAME = 'forward_http';
export const FORWARD_TLS_LISTENER_NAME = 'forward_tls';
/** Seed 000's ports: HTTP CONNECT / absolute-form on 10000, TLS by SNI on 10001. */
export const FORWARD_HTTP_PORT = 10000;
export const FORWARD_TLS_PORT = 10001;
export const FORWARD_ADDRESS = '0.0.0.0';

/** Ports a CONNECT to an allowed name may ask for, and ports plain HTTP to an allowed name may use. */
export const DEFAULT_NAME_CONNECT_PORTS: readonly number[] = [443];
export const DEFAULT_NAME_HTTP_PORTS: readonly number[] = [80];
/** The port sni_dynamic_forward_proxy dials an allowed SNI on (seed 000). */
export const FORWARD_TLS_UPSTREAM_PORT = 443;

/** "forward_http|SOURCE" / "forward_tls|SOURCE": one chain per source range, with its own connection cap. */
export const FORWARD_HTTP_CHAIN_PREFIX = 'forward_http';
export const FORWARD_TLS_CHAIN_PREFIX = 'forward_tls';
/** The TLS listener's refusal: no SNI, or one no policy selecting the source allows. */
export const FORWARD_TLS_REJECT_CHAIN = 'forward_tls_reject';
/** Audit: "forward_tls_would_deny|SOURCE" forwards an SNI no policy allows and logs it as would-deny. */
export const FORWARD_TLS_AUDIT_CHAIN_PREFIX = 'forward_tls_would_deny';
export const FORWARD_TLS_AUDIT_STAT_PREFIX = 'forward_tls_would_deny';
export const FORWARD_TLS_REJECTED_STAT_PREFIX = 'forward_tls_rejected';
export const FORWARD_TLS_STAT_PREFIX = 'forward_tls';
export const FORWARD_HTTP_STAT_PREFIX = 'forward_http';
/** Every per-source route configuration has this name (inline, so it only shows in config dumps). */
export const FORWARD_ROUTE_CONFIG_NAME = 'forward_http';

export const HTTP_CONNECTION_MANAGER_FILTER = 'envoy.filters.network.http_connection_manager';
export const HTTP_DYNAMIC_FORWARD_PROXY_FILTER = 'envoy.filters.http.dynamic_forward_proxy';
export const HTTP_ROUTER_FILTER = 'envoy.filters.http.router';

/**
 * --forward-proxy-inspect-connect (forwardInspect.ts): an allowed CONNECT to a name is
 * carried into the internal listener "forward_inspect|ID" (ID: a digest of the allowlist and port),
 * reached through the static cluster of the same name; its chains "forward_inspect|ID|allowed"
 * and "forward_inspect|ID|reject".
 */
export const FORWARD_INSPECT_PREFIX = 'forward_inspect';
/** The port a tunnel is dialled on when the CONNECT named none (never: such a CONNECT is refused). */
export const FORWARD_INSPECT_PORT = 443;
export const FORWARD_INSPECT_STAT_PREFIX = 'forward_inspect';
export const FORWARD_INSPECT_REJECTED_STAT_PREFIX = 'forward_inspect_rejected';
/** Envoy's bootstrap extension that internal listeners need (Envoy ≥ 1.25). */
export const INTERNAL_LISTENER_BOOTSTRAP_EXTENSION = 'envoy.bootstrap.internal_listener';
