// serve's flags for the store's history and the admin API's accepted names.
// Durations are a whole number with a unit: 90s, 30m, 12h, 30d.
import { UsageError } from './flags.js';

export interface StoreFlagValues {
  readonly historyRetentionMs?: number;
  readonly historyMaxBytes?: number;
  readonly compactIntervalMs?: number;
  readonly adminAllowedHosts?: readonly string[];
}

export const STORE_FLAGS = {
  'history-retention': { type: 'string' },
  'history-max-mb': { type: 'string' },
  'history-compact-interval': { type: 'string' },
  'admin-allowed-host': { type: 'string', multiple: true },
} as const;

export const STORE_USAGE = `  --history-retention DURATION  keep the change history at least this long (default 30d; 90s, 30m, 12h, 30d)
  --history-max-mb N   and at most about this much of it on disk, oldest dropped first (default 1024)
  --history-compact-interval DURATION  how often the store checkpoints and drops expired history (default 1h)
  --admin-allowed-host NAME  a Host name the admin API also answers to (a proxy's, a DNS name);
                       repeatable; "*" turns the DNS rebinding check off`;

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(flag: string, text: string): number {
  const match = /^(\d{1,9})(s|m|h|d)$/.exec(text.trim());
  const ms = match ? Number(match[1]) * UNITS[match[2]!]! : NaN;
  if (!(ms > 0)) throw new UsageError(`--${flag} must be a positive duration such as 90s, 30m, 12h or 30d, got "${text}"`);
  return ms;
}

export function parseStoreFlags(values: {
  'history-retention'?: string | undefined;
  'history-max-mb'?: string | undefined;
  'history-compact-interval'?: string | undefined;
  'admin-allowed-host'?: string[] | undefined;
}): StoreFlagValues {
  const result: { -readonly [K in keyof StoreFlagValues]: StoreFlagValues[K] } = {};
  if (values['history-retention'] !== undefined) result.historyRetentionMs = parseDuration('history-retention', values['history-retention']);
  if (values['history-compact-interval'] !== undefined) result.compactIntervalMs = parseDuration('history-compact-interval', values['history-compact-interval']);
  const mb = values['history-max-mb'];
  if (mb !== undefined) {
    if (!/^\d{1,7}$/.test(mb) || Number(mb) < 1) throw new UsageError(`--history-max-mb must be a whole number of megabytes, at least 1, got "${mb}"`);
    result.historyMaxBytes = Number(mb) * 1024 * 1024;
  }
  const hosts = values['admin-allowed-host'];
  if (hosts !== undefined) {
    for (const host of hosts) {
      if (host !== '*' && !/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+|[0-9a-fA-F:.]+)$/.test(host)) {
        throw new UsageError(`--admin-allowed-host must be a host name or address without scheme or path (e.g. admin.internal), got "${host}"`);
      }
    }
    result.adminAllowedHosts = hosts;
  }
  return result;
}
