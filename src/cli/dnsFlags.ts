// serve's flags for the DNS listener (src/compile/dns.ts): --dns-port (default 15053, 0 turns
// it off) and --dns-answer-address (what names allowed by name resolve to).
import { isIPv4 } from 'node:net';
import { DEFAULT_DNS_ANSWER_ADDRESS, DEFAULT_DNS_PORT, type DnsListenerOptions } from '../compile/dns.js';
import { UsageError } from './flags.js';

export const DNS_FLAGS = {
  'dns-port': { type: 'string', default: String(DEFAULT_DNS_PORT) },
  'dns-answer-address': { type: 'string', default: DEFAULT_DNS_ANSWER_ADDRESS },
} as const;

export const DNS_USAGE = `  --dns-port N         Envoy's DNS listener (UDP, default ${DEFAULT_DNS_PORT}; 0 turns it off): answers only
                       the names the node's policies allow, NXDOMAIN otherwise; the agent's
                       --udp-port sends the microVMs' DNS there
  --dns-answer-address IP
                       the IPv4 address names allowed by name resolve to (default ${DEFAULT_DNS_ANSWER_ADDRESS});
                       Envoy dials those connections by name, so it is never dialled itself`;

export function parseDnsFlags(values: { 'dns-port'?: string; 'dns-answer-address'?: string }): { dns: DnsListenerOptions } {
  const portText = values['dns-port'] ?? String(DEFAULT_DNS_PORT);
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 0 && port <= 65535)) throw new UsageError(`--dns-port must be a port 1 to 65535, or 0 for no DNS listener, got "${portText}"`);
  const answer = values['dns-answer-address'] ?? DEFAULT_DNS_ANSWER_ADDRESS;
  if (!isIPv4(answer)) throw new UsageError(`--dns-answer-address must be an IPv4 address, got "${answer}"`);
  return { dns: { port, answerAddress: answer } };
}
