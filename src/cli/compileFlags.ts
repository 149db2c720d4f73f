// serve's flags for the egress listener's layout and guards: --profile,
// --max-connections-per-source, --upstream-mark. A bad value is a usage error naming it.
import { COMPILE_PROFILES, DEFAULT_MAX_CONNECTIONS_PER_SOURCE, DEFAULT_UPSTREAM_MARK, checkUpstreamMark, type CompileOptions, type CompileProfile } from '../compile/index.js';
import { UsageError } from './flags.js';

export const COMPILE_FLAGS = {
  profile: { type: 'string', default: 'hardened' },
  'max-connections-per-source': { type: 'string', default: String(DEFAULT_MAX_CONNECTIONS_PER_SOURCE) },
  'upstream-mark': { type: 'string', default: `0x${DEFAULT_UPSTREAM_MARK.toString(16)}` },
} as const;

export const COMPILE_USAGE = `  --profile            hardened (default): filter_chain_matcher, names dialled by name,
                       a connection cap per source; seed: seed 002's filter chains to
                       the original destination (with the loop guard)
  --max-connections-per-source N
                       concurrent connections per source range and forwarding chain (default ${DEFAULT_MAX_CONNECTIONS_PER_SOURCE});
                       0: Envoy caps no source (no connection_limit; the sources share
                       their forwarding chains, a smaller listener): use it only with
                       the host agent's cap (agent install --max-connections-per-source)
  --upstream-mark N    SO_MARK of sockets that dial a name (default 0x${DEFAULT_UPSTREAM_MARK.toString(16)}, 0 disables);
                       the agent refuses marked connections to special addresses`;

export function parseCompileFlags(values: { profile?: string; 'max-connections-per-source'?: string; 'upstream-mark'?: string }): Pick<CompileOptions, 'profile' | 'maxConnectionsPerSource' | 'upstreamMark'> {
  const profile = values.profile ?? 'hardened';
  if (!(COMPILE_PROFILES as readonly string[]).includes(profile)) {
    throw new UsageError(`--profile must be one of ${COMPILE_PROFILES.join(', ')}, got "${profile}"`);
  }
  const maxText = values['max-connections-per-source'] ?? String(DEFAULT_MAX_CONNECTIONS_PER_SOURCE);
  const max = /^\d{1,9}$/.test(maxText) ? Number(maxText) : NaN;
  // 0: no Envoy-side cap (the host agent's kernel cap instead; chainSources.ts).
  if (!(max >= 0 && max <= 100_000_000)) throw new UsageError(`--max-connections-per-source must be a whole number from 0 (no Envoy-side cap) to 100000000, got "${maxText}"`);
  const markText = values['upstream-mark'] ?? String(DEFAULT_UPSTREAM_MARK);
  const mark = /^0x[0-9a-f]{1,8}$/i.test(markText) ? Number.parseInt(markText.slice(2), 16) : /^\d{1,10}$/.test(markText) ? Number(markText) : NaN;
  const problem = Number.isNaN(mark) ? 'must be a decimal or 0x-hex number' : checkUpstreamMark(mark);
  if (problem !== undefined) throw new UsageError(`--upstream-mark ${problem}, got "${markText}"`);
  return { profile: profile as CompileProfile, maxConnectionsPerSource: max, upstreamMark: mark };
}
