// serve's flags for the denial log (src/denials): the in-memory bounds, the
// optional JSONL file and its rotation, the metric's node label cap. A bad
// value is a usage error naming the flag.
import { DEFAULT_DENIAL_BUFFER } from '../denials/buffer.js';
import { DEFAULT_METRIC_NODES, type DenialLogOptions } from '../denials/denialLog.js';
import { UsageError } from './flags.js';

const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
const DEFAULT_FILES = 5;

export const DENIAL_FLAGS = {
  'denials-log': { type: 'string' },
  'denials-log-max-bytes': { type: 'string', default: String(DEFAULT_MAX_BYTES) },
  'denials-log-files': { type: 'string', default: String(DEFAULT_FILES) },
  'denials-buffer': { type: 'string', default: String(DEFAULT_DENIAL_BUFFER.total) },
  'denials-per-node': { type: 'string', default: String(DEFAULT_DENIAL_BUFFER.perNode) },
  'denials-metric-nodes': { type: 'string', default: String(DEFAULT_METRIC_NODES) },
} as const;

export const DENIAL_USAGE = `  --denials-log FILE   also append every access log record Envoy sends to FILE (JSON lines)
  --denials-log-max-bytes N  rotate FILE past N bytes (default ${DEFAULT_MAX_BYTES})
  --denials-log-files K      rotated files kept: FILE.1 … FILE.K (default ${DEFAULT_FILES})
  --denials-buffer N   records kept in memory in all (default ${DEFAULT_DENIAL_BUFFER.total})
  --denials-per-node N records kept in memory per node (default ${DEFAULT_DENIAL_BUFFER.perNode})
  --denials-metric-nodes N   node label values on egress_xds_denials_total; the rest are "other" (default ${DEFAULT_METRIC_NODES})`;

type DenialFlagValues = { [K in keyof typeof DENIAL_FLAGS]?: string };

function whole(flag: string, text: string | undefined, fallback: number, min: number, max: number): number {
  const value = text === undefined ? fallback : /^\d{1,15}$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max)) throw new UsageError(`--${flag} must be a whole number from ${min} to ${max}, got "${text}"`);
  return value;
}

export function parseDenialFlags(values: DenialFlagValues): Pick<DenialLogOptions, 'buffer' | 'file' | 'metricNodes'> {
  const total = whole('denials-buffer', values['denials-buffer'], DEFAULT_DENIAL_BUFFER.total, 1, 10_000_000);
  const perNode = whole('denials-per-node', values['denials-per-node'], DEFAULT_DENIAL_BUFFER.perNode, 1, 10_000_000);
  if (perNode > total) throw new UsageError(`--denials-per-node (${perNode}) must not exceed --denials-buffer (${total})`);
  const metricNodes = whole('denials-metric-nodes', values['denials-metric-nodes'], DEFAULT_METRIC_NODES, 0, 10_000);
  const maxBytes = whole('denials-log-max-bytes', values['denials-log-max-bytes'], DEFAULT_MAX_BYTES, 1024, Number.MAX_SAFE_INTEGER);
  const files = whole('denials-log-files', values['denials-log-files'], DEFAULT_FILES, 0, 100);
  const path = values['denials-log'];
  if (path === '') throw new UsageError('--denials-log must name a file');
  return { buffer: { total, perNode }, metricNodes, ...(path !== undefined ? { file: { path, maxBytes, files } } : {}) };
}
