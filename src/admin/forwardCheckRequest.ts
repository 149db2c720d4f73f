// POST /v1/check's body for the forward proxy's listeners:
//   {"node", "source", "listener": "forward-http", "authority": "HOST[:PORT]", "method"?: "CONNECT", "innerSni"?: NAME | ""}
//   {"node", "source", "listener": "forward-tls", "sni"?: NAME}
// (without "listener", or with "transparent", the body is checkRequest.ts's.)
// Each listener's body has its own schema (the OpenAPI document's
// ForwardHttpCheckRequest / ForwardTlsCheckRequest); the source address's
// meaning is checked after it.
import { isIP } from 'node:net';
import type { Result } from '../policy/model.js';
import { compileSchema } from '../schema/validator.js';
import { checkNodeSchema, checkSniSchema } from './checkRequest.js';

export type ForwardCheckRequest =
  | { readonly listener: 'forward-http'; readonly nodeId: string; readonly sourceIp: string; readonly method: string; readonly authority: string; readonly innerSni?: string }
  | { readonly listener: 'forward-tls'; readonly nodeId: string; readonly sourceIp: string; readonly serverName?: string };

export const FORWARD_LISTENERS = ['forward-http', 'forward-tls'] as const;

const SOURCE_HINT = "must be an IPv4 or IPv6 address (the client's)";
const sourceSchema = { type: 'string', 'x-message': SOURCE_HINT, 'x-required': SOURCE_HINT, description: 'Source IP address (the client).' } as const;
const AUTHORITY_HINT = 'is required: the CONNECT target or Host, "HOST[:PORT]" (IPv6 as "[2001:db8::1]:443"), no spaces, path or user info';

export const forwardHttpCheckRequestSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['node', 'source', 'listener', 'authority'],
  description: 'A request on the forward proxy\'s HTTP listener (serve --forward-proxy): a CONNECT, or an absolute-form request.',
  'x-message': { additionalProperties: 'not used by the forward-http listener; expected {expected}' },
  properties: {
    node: checkNodeSchema,
    source: sourceSchema,
    listener: { const: 'forward-http' },
    authority: {
      type: 'string',
      minLength: 1,
      maxLength: 260,
      pattern: '^[^\\s/@?#]+$',
      'x-message': AUTHORITY_HINT,
      'x-required': AUTHORITY_HINT,
      description: 'The CONNECT target or the Host of an absolute-form request, "HOST[:PORT]" ("github.com:443", "10.1.2.3:8080", "[2001:db8::1]:443").',
    },
    method: {
      type: 'string',
      pattern: '^[A-Z]{1,20}$',
      'x-message': 'must be an HTTP method in capitals, e.g. "CONNECT" or "GET"',
      description: '"CONNECT" (default) or the method of an absolute-form request ("GET").',
    },
    innerSni: {
      type: 'string',
      maxLength: 253,
      pattern: '^\\S*$',
      'x-message': 'must be the server name the client sends inside the CONNECT tunnel ("" for none): no spaces, at most 253 characters',
      description:
        'CONNECT: the TLS server name the client sends inside the tunnel ("" for none); checked against the source\'s allowlist when serve runs with --forward-proxy-inspect-connect. Default: the authority\'s host.',
    },
  },
} as const;

export const forwardTlsCheckRequestSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['node', 'source', 'listener'],
  description: 'A connection on the forward proxy\'s TLS listener (serve --forward-proxy).',
  'x-message': { additionalProperties: 'not used by the forward-tls listener; expected {expected}' },
  properties: {
    node: checkNodeSchema,
    source: sourceSchema,
    listener: { const: 'forward-tls' },
    sni: checkSniSchema,
  },
} as const;

interface ForwardHttpBody {
  readonly node: string;
  readonly source: string;
  readonly listener: 'forward-http';
  readonly authority: string;
  readonly method?: string;
  readonly innerSni?: string;
}
interface ForwardTlsBody {
  readonly node: string;
  readonly source: string;
  readonly listener: 'forward-tls';
  readonly sni?: string;
}

export const forwardHttpShape = compileSchema<ForwardHttpBody>(forwardHttpCheckRequestSchema);
export const forwardTlsShape = compileSchema<ForwardTlsBody>(forwardTlsCheckRequestSchema);

const fail = (field: string, message: string): Result<never> => ({ ok: false, error: { field, message } });

/** True when the body asks about a forward-proxy listener (then this file validates it). */
export const isForwardCheck = (body: unknown): boolean =>
  typeof body === 'object' && body !== null && (FORWARD_LISTENERS as readonly unknown[]).includes((body as Record<string, unknown>)['listener']);

export function validateForwardCheckRequest(body: unknown): Result<ForwardCheckRequest> {
  const shape = (body as Record<string, unknown>)['listener'] === 'forward-http' ? forwardHttpShape : forwardTlsShape;
  if (!shape(body)) return { ok: false, error: shape.error(body) };
  if (isIP(body.source) === 0) return fail('source', SOURCE_HINT);
  if (body.listener === 'forward-http') {
    const { node, source, authority, method, innerSni } = body;
    return { ok: true, value: { listener: 'forward-http', nodeId: node, sourceIp: source, method: method ?? 'CONNECT', authority, ...(innerSni !== undefined && { innerSni }) } };
  }
  const { node, source, sni } = body;
  return { ok: true, value: { listener: 'forward-tls', nodeId: node, sourceIp: source, ...(sni !== undefined && { serverName: sni }) } };
}
