// What `agent status` reports: each expected piece present or missing, and
// whether anything listens on the TPROXY port(s).
import type { Backend } from './config.js';
import type { AgentContext } from './context.js';
import { type ListenerStatus, isListening } from './listeners.js';
import { installParts } from './parts/index.js';
import type { PieceStatus } from './parts/part.js';
import type { Plan } from './plan.js';

export interface StatusReport {
  readonly backend: Backend;
  /** Every piece present and every listener up. */
  readonly ok: boolean;
  readonly pieces: readonly PieceStatus[];
  readonly listeners: readonly ListenerStatus[];
}

/** Exit codes: 0 all present and listening; 1 a piece missing; 3 all present, nothing listening. */
export const STATUS_EXIT = { ok: 0, missing: 1, notListening: 3 } as const;

export async function status(plan: Plan, context: AgentContext): Promise<StatusReport> {
  const pieces: PieceStatus[] = [];
  for (const part of installParts(plan)) pieces.push(...(await part.observe(context)).pieces);
  const listeners: ListenerStatus[] = [];
  for (const [protocol, port] of [['tcp', plan.config.port], ['udp', plan.config.udpPort]] as const) {
    if (port !== undefined) listeners.push({ protocol, port, listening: await isListening(context.runner, protocol, port) });
  }
  return {
    backend: plan.config.backend,
    ok: pieces.every((p) => p.present) && listeners.every((l) => l.listening),
    pieces,
    listeners,
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
    lines.push(`  ${l.listening ? 'present' : 'MISSING'}  a ${l.protocol} listener on port ${l.port}${l.listening ? '' : ' (is Envoy running?)'}`);
  }
  const missing = report.pieces.filter((p) => !p.present).length;
  const silent = report.listeners.filter((l) => !l.listening).length;
  if (missing > 0) lines.push(`${missing} of ${report.pieces.length} pieces missing: run "egress-xds agent install" with the same flags`);
  else if (silent > 0) lines.push('all rules present, but nothing listens on the TPROXY port: start Envoy (redirected traffic is dropped meanwhile)');
  else lines.push('all present');
  return `${lines.join('\n')}\n`;
}
