// serve's flags for the ADS server's bounds (src/xds/limits.ts): each a
// positive integer, named in the error otherwise; absent means the default.
import { DEFAULT_XDS_LIMITS, type XdsLimits } from '../xds/limits.js';
import { UsageError } from './flags.js';

/** Flag → limit, and the factor from the flag's unit to the limit's. */
const FLAGS = {
  'xds-max-streams': ['maxStreams', 1],
  'xds-max-streams-per-connection': ['maxStreamsPerConnection', 1],
  'xds-max-request-bytes': ['maxRequestBytes', 1],
  'xds-max-node-id-bytes': ['maxNodeIdBytes', 1],
  'xds-stuck-seconds': ['stuckWriteMs', 1000],
} as const satisfies Record<string, readonly [keyof XdsLimits, number]>;

export const XDS_LIMIT_FLAG_OPTIONS = Object.fromEntries(Object.keys(FLAGS).map((flag) => [flag, { type: 'string' as const }])) as Record<
  keyof typeof FLAGS,
  { type: 'string' }
>;

export const XDS_LIMIT_USAGE = `  --xds-max-streams N  ADS streams served at once; more are refused with RESOURCE_EXHAUSTED (default ${DEFAULT_XDS_LIMITS.maxStreams})
  --xds-max-streams-per-connection N  HTTP/2 streams one connection may open (default ${DEFAULT_XDS_LIMITS.maxStreamsPerConnection})
  --xds-max-request-bytes N  largest discovery request accepted (default ${DEFAULT_XDS_LIMITS.maxRequestBytes})
  --xds-max-node-id-bytes N  longest node.id accepted; longer is INVALID_ARGUMENT (default ${DEFAULT_XDS_LIMITS.maxNodeIdBytes})
  --xds-stuck-seconds N  reset a stream whose client has not read a response for this long (default ${DEFAULT_XDS_LIMITS.stuckWriteMs / 1000})`;

export function parseXdsLimitFlags(values: Partial<Record<keyof typeof FLAGS, string | undefined>>): Partial<XdsLimits> {
  const limits: { -readonly [K in keyof XdsLimits]?: number } = {};
  for (const [flag, [key, unit]] of Object.entries(FLAGS) as [keyof typeof FLAGS, (typeof FLAGS)[keyof typeof FLAGS]][]) {
    const text = values[flag];
    if (text === undefined) continue;
    const value = /^\d{1,12}$/.test(text) ? Number(text) : NaN;
    if (!(value > 0)) throw new UsageError(`--${flag} must be a positive whole number, got "${text}"`);
    limits[key] = value * unit;
  }
  return limits;
}
