// Is anything listening on the TPROXY port? Read from /proc/net/{tcp,udp}{,6} of
// the runner's network namespace; no ss needed.
import type { Runner } from './runner.js';

export interface ListenerStatus {
  readonly protocol: 'tcp' | 'udp';
  readonly port: number;
  readonly listening: boolean;
}

const TCP_LISTEN = '0A';

/** Local ports in the LISTEN state (tcp) or bound at all (udp), from one /proc/net table. */
export function parseProcNet(text: string, protocol: 'tcp' | 'udp'): Set<number> {
  const ports = new Set<number>();
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    const local = fields[1];
    const state = fields[3];
    if (local === undefined || state === undefined) continue;
    if (protocol === 'tcp' && state !== TCP_LISTEN) continue;
    const port = parseInt(local.slice(local.lastIndexOf(':') + 1), 16);
    if (Number.isInteger(port)) ports.add(port);
  }
  return ports;
}

export async function isListening(runner: Runner, protocol: 'tcp' | 'udp', port: number): Promise<boolean> {
  for (const file of [`/proc/net/${protocol}`, `/proc/net/${protocol}6`]) {
    const text = await runner.readFile(file);
    if (text !== undefined && parseProcNet(text, protocol).has(port)) return true;
  }
  return false;
}
