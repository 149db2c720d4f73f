// The bounds one ADS server keeps whatever its clients do. Each has a default
// that a fleet of 10,000 well-behaved Envoys never reaches, and a serve flag.

export interface XdsLimits {
  /** Open ADS streams on the whole server; more are shed with RESOURCE_EXHAUSTED (an Envoy retries with backoff). */
  readonly maxStreams: number;
  /** Concurrent HTTP/2 streams one connection may open (SETTINGS_MAX_CONCURRENT_STREAMS); Envoy uses one. */
  readonly maxStreamsPerConnection: number;
  /** Largest discovery request accepted, in bytes (gRPC refuses larger ones with RESOURCE_EXHAUSTED). */
  readonly maxRequestBytes: number;
  /** Longest node.id accepted, in UTF-8 bytes; longer is INVALID_ARGUMENT before anything looks at it. */
  readonly maxNodeIdBytes: number;
  /** A stream whose written response made no progress for this long (its client does not read) is reset. */
  readonly stuckWriteMs: number;
}

export const DEFAULT_XDS_LIMITS: XdsLimits = {
  maxStreams: 50_000,
  maxStreamsPerConnection: 100,
  maxRequestBytes: 4 * 1024 * 1024,
  maxNodeIdBytes: 1024,
  stuckWriteMs: 60_000,
};

/** The defaults with the given values; a value that is not a positive integer is an error naming it. */
export function xdsLimits(overrides: Partial<XdsLimits> = {}): XdsLimits {
  const limits = { ...DEFAULT_XDS_LIMITS, ...overrides };
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`xDS limit ${key} must be a positive integer, not ${String(value)}`);
  }
  return limits;
}
