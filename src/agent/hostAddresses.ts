// The host's own addresses, read with `ip -j addr`, so traffic from microVMs to
// services on the host (the TAP gateway, a DNS cache) is not sent to Envoy.
import { type IpAddress, parseIp } from '../net/ip.js';
import { CommandFailedError } from './errors.js';
import { type Runner, command } from './runner.js';

interface AddrInfo {
  local?: string;
  scope?: string;
}

export async function readHostAddresses(runner: Runner): Promise<IpAddress[]> {
  const list = command('ip', '-j', 'addr', 'show');
  const result = await runner.run(list);
  if (result.exitCode !== 0) throw new CommandFailedError(list, result);
  return parseIpAddrJson(result.stdout);
}

/** Loopback-scope addresses (127.0.0.1, ::1) are left out: a microVM's packet to them is martian anyway. */
export function parseIpAddrJson(text: string): IpAddress[] {
  const links = JSON.parse(text.trim() === '' ? '[]' : text) as { addr_info?: AddrInfo[] }[];
  const addresses: IpAddress[] = [];
  for (const link of links) {
    for (const info of link.addr_info ?? []) {
      if (info.scope === 'host' || info.local === undefined) continue;
      const address = parseIp(info.local);
      if (address) addresses.push(address);
    }
  }
  return addresses;
}
