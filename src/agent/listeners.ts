// Is anything listening on the TPROXY port? Read from /proc/net/{tcp,udp}{,6} of
// the runner's network namespace; no ss needed. Each address family on its own:
// IPv4 TPROXY needs a socket in /proc/net/tcp (or a dual-stack [::] one), IPv6
// one in /proc/net/tcp6.
import type { IpFamily } from '../net/ip.js';
import type { Runner } from './runner.js';

export interface ListenerStatus {
  readonly family: IpFamily;
  readonly protocol: 'tcp' | 'udp';
  readonly port: number;
  readonly listening: boolean;
  readonly detail?: string;
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

/** Local ports bound to the unspecified address (:: in tcp6/udp6), which may also serve IPv4 when dual-stack. */
export function parseWildcardPorts(text: string, protocol: 'tcp' | 'udp'): Set<number> {
  const ports = new Set<number>();
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    const local = fields[1];
    if (local === undefined || fields[3] === undefined) continue;
    if (protocol === 'tcp' && fields[3] !== TCP_LISTEN) continue;
    const [address, port] = local.split(':');
    if (address !== undefined && /^0+$/.test(address) && port !== undefined) ports.add(parseInt(port, 16));
  }
  return ports;
}

/** Whether a socket of this family listens on port; an IPv4 check also accepts a [::] socket, said in detail. */
export async function familyListener(runner: Runner, family: IpFamily, protocol: 'tcp' | 'udp', port: number): Promise<ListenerStatus> {
  const own = await runner.readFile(`/proc/net/${protocol}${family === 6 ? '6' : ''}`);
  if (own !== undefined && parseProcNet(own, protocol).has(port)) return { family, protocol, port, listening: true };
  if (family === 4) {
    const v6 = await runner.readFile(`/proc/net/${protocol}6`);
    if (v6 !== undefined && parseWildcardPorts(v6, protocol).has(port)) {
      return { family, protocol, port, listening: true, detail: 'only a [::] socket: IPv4 reaches it only if it is dual-stack (Envoy: ipv4_compat: true)' };
    }
  }
  return { family, protocol, port, listening: false };
}

export async function isListening(runner: Runner, protocol: 'tcp' | 'udp', port: number): Promise<boolean> {
  for (const file of [`/proc/net/${protocol}`, `/proc/net/${protocol}6`]) {
    const text = await runner.readFile(file);
    if (text !== undefined && parseProcNet(text, protocol).has(port)) return true;
  }
  return false;
}
