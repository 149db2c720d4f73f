// POST /v1/check's body: which node, and one connection as Envoy would see it.
// {"node": ID, "source": IP, "destination": "IP:PORT" | "[IPv6]:PORT", "sni"?: NAME, "host"?: HOST}
// "host": the Host header of a plain-HTTP request on the connection (port 80's HTTP path).
import { isIP } from 'node:net';
import type { CheckConnection } from '../compile/check.js';
import type { Result } from '../policy/model.js';

export interface CheckRequest {
  readonly nodeId: string;
  readonly connection: CheckConnection;
}

const fail = (field: string, message: string): Result<never> => ({ ok: false, error: { field, message } });

/** "10.0.0.1:443" or "[2001:db8::1]:443" -> address and port. */
export function parseDestination(text: string): { ip: string; port: number } | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const ip = match[1] ?? match[2]!;
  const port = Number(match[3]);
  const family = isIP(ip);
  // An IPv6 address must be bracketed, an IPv4 one must not.
  if (family === 0 || (family === 6) !== (match[1] !== undefined) || port < 1 || port > 65535) return undefined;
  return { ip, port };
}

export function validateCheckRequest(body: unknown): Result<CheckRequest> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return fail('body', 'must be a JSON object');
  const record = body as Record<string, unknown>;
  const unknown = Object.keys(record).find((key) => !['node', 'source', 'destination', 'sni', 'host', 'listener'].includes(key));
  if (unknown !== undefined) return fail(unknown, 'unknown field; expected node, source, destination, sni, host, listener');
  // forwardCheckRequest.ts takes the forward-proxy listeners' bodies.
  if (record['listener'] !== undefined && record['listener'] !== 'transparent') return fail('listener', 'must be "transparent" (the default), "forward-http" or "forward-tls"');
  const { node, source, destination, sni, host } = record;
  if (typeof node !== 'string' || node === '') return fail('node', 'is required: the Envoy node id');
  if (typeof source !== 'string' || isIP(source) === 0) return fail('source', 'must be an IPv4 or IPv6 address (the microVM\'s)');
  if (typeof destination !== 'string') return fail('destination', 'is required: "IP:PORT", IPv6 as "[::1]:443"');
  const parsed = parseDestination(destination);
  if (!parsed) return fail('destination', `"${destination}" must be "IP:PORT" with a port 1 to 65535, IPv6 as "[2001:db8::1]:443"`);
  if (sni !== undefined) {
    if (typeof sni !== 'string' || sni === '' || /\s/.test(sni) || sni.length > 253) {
      return fail('sni', 'must be the server name a client sends: non-empty, no spaces, at most 253 characters');
    }
  }
  if (host !== undefined) {
    if (typeof host !== 'string' || host === '' || /[\s/@]/.test(host) || host.length > 261) {
      return fail('host', 'must be the Host header of a plain-HTTP request: "NAME" or "NAME:PORT", no spaces, at most 261 characters');
    }
    if (sni !== undefined) return fail('host', 'is for plain HTTP (no TLS); a TLS connection is checked by its sni');
  }
  return {
    ok: true,
    value: {
      nodeId: node,
      connection: {
        sourceIp: source,
        destinationIp: parsed.ip,
        destinationPort: parsed.port,
        ...(sni !== undefined ? { serverName: (sni as string).toLowerCase() } : {}),
        ...(host !== undefined ? { httpHost: host as string } : {}),
      },
    },
  };
}
