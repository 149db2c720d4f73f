// The contract between the access loggers the compiler generates and the control plane's
// Access Log Service (src/denials/record.ts says what each field becomes in a record). One
// definition for both sides, so the listener and the decoder cannot drift apart.

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
} as const;

/** The filter state key holding the requested server name (set by set_filter_state). */
export const SNI_FILTER_STATE_KEY = 'egress.sni';
