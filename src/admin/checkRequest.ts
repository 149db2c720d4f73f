// POST /v1/check's body: which node, and one connection as Envoy would see it.
// {"node": ID, "source": IP, "destination": "IP:PORT" | "[IPv6]:PORT", "sni"?: NAME, "host"?: HOST}
// "host": the Host header of a plain-HTTP request on the connection (port 80's HTTP path).
// Its shape is checkRequestSchema (the OpenAPI document's CheckRequest); the
// addresses' meaning is checked after it. forwardCheckRequest.ts takes the
// forward-proxy listeners' bodies.
import { isIP } from 'node:net';
import type { CheckConnection } from '../compile/check.js';
import type { Result } from '../policy/model.js';
import { compileSchema } from '../schema/validator.js';

export interface CheckRequest {
  readonly nodeId: string;
  readonly connection: CheckConnection;
}

const NODE_ID_HINT = 'is required: the Envoy node id';
/** The Envoy node id a check asks about (shared by the forward-proxy bodies). */
export const checkNodeSchema = { type: 'string', minLength: 1, 'x-message': NODE_ID_HINT, 'x-required': NODE_ID_HINT, description: 'Envoy node id.' } as const;
/** A TLS server name as a client sends it (shared by the forward-tls body). */
export const checkSniSchema = {
  type: 'string',
  minLength: 1,
  maxLength: 253,
  pattern: '^\\S+$',
  'x-message': 'must be the server name a client sends: non-empty, no spaces, at most 253 characters',
  description: 'TLS server name; absent for plain TCP / no SNI.',
} as const;
const SOURCE_HINT = "must be an IPv4 or IPv6 address (the microVM's)";
const DESTINATION_HINT = 'is required: "IP:PORT", IPv6 as "[::1]:443"';

export const checkRequestSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['node', 'source', 'destination'],
  description: 'A connection on the transparent listener, the default. "listener": "forward-http" / "forward-tls" ask about the forward proxy instead.',
  'x-message': { type: 'must be a JSON object' },
  properties: {
    node: checkNodeSchema,
    source: { type: 'string', 'x-message': SOURCE_HINT, 'x-required': SOURCE_HINT, description: 'Source IP address (the microVM).' },
    listener: {
      const: 'transparent',
      'x-message': 'must be "transparent" (the default), "forward-http" or "forward-tls"',
      description: 'Which listener to ask about; default "transparent".',
    },
    destination: { type: 'string', 'x-message': DESTINATION_HINT, 'x-required': DESTINATION_HINT, description: '"IP:PORT"; IPv6 as "[2001:db8::1]:443".' },
    sni: checkSniSchema,
    host: {
      type: 'string',
      minLength: 1,
      maxLength: 261,
      pattern: '^[^\\s/@]+$',
      'x-message': 'must be the Host header of a plain-HTTP request: "NAME" or "NAME:PORT", no spaces, at most 261 characters',
      description: 'The Host header of a plain-HTTP request on the connection ("github.com", "github.com:80"); the answer then follows the source\'s HTTP route table (RDS). Not with sni.',
    },
  },
} as const;

interface CheckBody {
  readonly node: string;
  readonly source: string;
  readonly destination: string;
  readonly sni?: string;
  readonly host?: string;
}

export const checkShape = compileSchema<CheckBody>(checkRequestSchema);

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
  // "listener" says which body this is, so it is judged first: with a listener
  // this server does not know, the fields missing for a transparent check are not the news.
  const listener = typeof body === 'object' && body !== null ? (body as Record<string, unknown>)['listener'] : undefined;
  if (listener !== undefined && listener !== checkRequestSchema.properties.listener.const) {
    return fail('listener', checkRequestSchema.properties.listener['x-message']);
  }
  if (!checkShape(body)) {
    const error = checkShape.error(body);
    return fail(error.field || 'body', error.message);
  }
  const { node, source, destination, sni, host } = body;
  if (isIP(source) === 0) return fail('source', SOURCE_HINT);
  const parsed = parseDestination(destination);
  if (!parsed) return fail('destination', `"${destination}" must be "IP:PORT" with a port 1 to 65535, IPv6 as "[2001:db8::1]:443"`);
  if (host !== undefined && sni !== undefined) return fail('host', 'is for plain HTTP (no TLS); a TLS connection is checked by its sni');
  return {
    ok: true,
    value: {
      nodeId: node,
      connection: {
        sourceIp: source,
        destinationIp: parsed.ip,
        destinationPort: parsed.port,
        ...(sni !== undefined ? { serverName: sni.toLowerCase() } : {}),
        ...(host !== undefined ? { httpHost: host } : {}),
      },
    },
  };
}
