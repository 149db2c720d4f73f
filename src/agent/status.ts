// What `agent status` reports: each expected piece present or missing, and
// whether anything listens on the TPROXY port(s).
import { formatCidr } from '../net/ip.js';
import { type CapRefusals, readCapRefusals } from './capCounters.js';
import { type Backend, formatMark } from './config.js';
import type { AgentContext } from './context.js';
import { type ListenerStatus, familyListener } from './listeners.js';
import { installParts } from './parts/index.js';
import type { PieceStatus } from './parts/part.js';
import type { Plan } from './plan.js';

export interface StatusReport {
  readonly backend: Backend;
  /** Every piece present and every listener up. */
  readonly ok: boolean;
  readonly pieces: readonly PieceStatus[];
  readonly listeners: readonly ListenerStatus[];
  /** What microVMs may reach on the host itself: the --allow-host-port list; "all" with --no-exclude-host-addresses (Envoy decides). */
  readonly hostPorts: readonly number[] | 'all';
  /** Where microVMs may send QUIC (UDP/443); rejected elsewhere. */
  readonly quicAllowed: readonly string[];
  /** Envoy's marked upstream connections to special addresses are rejected (0: not guarded). */
  readonly upstreamMark: string;
  /** --max-connections-per-source (0: no cap), and per family how many connections it refused. */
  readonly connectionCap: { readonly perSource: number; readonly families: readonly CapRefusals[] };
}

/** Exit codes: 0 all present and listening; 1 a piece missing; 3 all present, nothing listening. */
export const STATUS_EXIT = { ok: 0, missing: 1, notListening: 3 } as const;

export async function status(plan: Plan, context: AgentContext): Promise<StatusReport> {
  const pieces: PieceStatus[] = [];
  for (const part of installParts(plan)) pieces.push(...(await part.observe(context)).pieces);
  const listeners: ListenerStatus[] = [];
  // nft-dnat sends to an address that may be in another namespace (a container): nothing to look at here.
  if (plan.config.redirect === 'tproxy') {
    for (const family of plan.families) {
      for (const [protocol, port] of [['tcp', plan.config.port], ['udp', plan.config.udpPort]] as const) {
        if (port !== undefined) listeners.push(await familyListener(context.runner, family, protocol, port));
      }
    }
  }
  const { config } = plan;
  const refusals = await readCapRefusals(plan, context.runner);
  return {
    backend: config.backend,
    ok: pieces.every((p) => p.present) && listeners.every((l) => l.listening),
    pieces,
    listeners,
    hostPorts: config.excludeHostAddresses ? config.allowHostPorts : 'all',
    quicAllowed: config.allowQuic.map(formatCidr),
    upstreamMark: formatMark(config.upstreamMark),
    connectionCap: { perSource: config.maxConnectionsPerSource, families: refusals },
  };
}

export function statusExitCode(report: StatusReport): number {
  if (!report.pieces.every((p) => p.present)) return STATUS_EXIT.missing;
  if (!report.listeners.every((l) => l.listening)) return STATUS_EXIT.notListening;
  return STATUS_EXIT.ok;
}

export function formatStatus(report: StatusReport): string {
  const lines = [`egress-xds agent status (backend ${report.backend})`];
  for (const piece of report.pieces) {
    lines.push(`  ${piece.present ? 'present' : 'MISSING'}  ${piece.description}${piece.detail ? ` (${piece.detail})` : ''}`);
  }
  for (const l of report.listeners) {
    const what = `an IPv${l.family} ${l.protocol} listener on port ${l.port}`;
    lines.push(`  ${l.listening ? 'present' : 'MISSING'}  ${what}${l.detail ? ` (${l.detail})` : l.listening ? '' : ' (is Envoy running?)'}`);
  }
  if (report.listeners.length > 0) {
    lines.push(
      `  host ports open to microVMs: ${report.hostPorts === 'all' ? 'not guarded (--no-exclude-host-addresses: Envoy decides)' : report.hostPorts.length === 0 ? 'none' : report.hostPorts.join(', ')}`,
      `  QUIC (UDP/443) from microVMs: ${report.quicAllowed.length === 0 ? 'rejected' : `only to ${report.quicAllowed.join(', ')}`}`,
      `  Envoy's upstream sockets marked ${report.upstreamMark}: ${report.upstreamMark === '0x0' ? 'not guarded' : 'refused to special addresses and the host'}`,
    );
  }
  const cap = report.connectionCap;
  lines.push(
    cap.perSource === 0
      ? '  connections to Envoy per source address: no cap (--max-connections-per-source 0)'
      : `  connections to Envoy per source address: at most ${cap.perSource}; refused since install: ${cap.families.map((f) => `IPv${f.family} ${f.refused ?? 'unknown (rule missing)'}`).join(', ')}`,
  );
  const missing = report.pieces.filter((p) => !p.present).length;
  const silent = report.listeners.filter((l) => !l.listening).length;
  if (missing > 0) lines.push(`${missing} of ${report.pieces.length} pieces missing: run "egress-xds agent install" with the same flags`);
  else if (silent > 0) lines.push('all rules present, but nothing listens on the TPROXY port: start Envoy (redirected traffic is dropped meanwhile)');
  else lines.push('all present');
  return `${lines.join('\n')}\n`;
}
