// POST /v1/check's body for the forward proxy's listeners:
//   {"node", "source", "listener": "forward-http", "authority": "HOST[:PORT]", "method"?: "CONNECT", "innerSni"?: NAME | ""}
//   {"node", "source", "listener": "forward-tls", "sni"?: NAME}
// (without "listener", or with "transparent", the body is checkRequest.ts's.)
import { isIP } from 'node:net';
import type { Result } from '../policy/model.js';

export type ForwardCheckRequest =
  | { readonly listener: 'forward-http'; readonly nodeId: string; readonly sourceIp: string; readonly method: string; readonly authority: string; readonly innerSni?: string }
  | { readonly listener: 'forward-tls'; readonly nodeId: string; readonly sourceIp: string; readonly serverName?: string };

export const FORWARD_LISTENERS = ['forward-http', 'forward-tls'] as const;

const fail = (field: string, message: string): Result<never> => ({ ok: false, error: { field, message } });

/** True when the body asks about a forward-proxy listener (then this file validates it). */
export const isForwardCheck = (body: unknown): boolean =>
  typeof body === 'object' && body !== null && (FORWARD_LISTENERS as readonly unknown[]).includes((body as Record<string, unknown>)['listener']);

export function validateForwardCheckRequest(body: unknown): Result<ForwardCheckRequest> {
  const record = body as Record<string, unknown>;
  const listener = record['listener'] as ForwardCheckRequest['listener'];
  const fields = listener === 'forward-http' ? ['node', 'source', 'listener', 'authority', 'method', 'innerSni'] : ['node', 'source', 'listener', 'sni'];
  const unknown = Object.keys(record).find((key) => !fields.includes(key));
  if (unknown !== undefined) return fail(unknown, `not used by the ${listener} listener; expected ${fields.join(', ')}`);
  const { node, source } = record;
  if (typeof node !== 'string' || node === '') return fail('node', 'is required: the Envoy node id');
  if (typeof source !== 'string' || isIP(source) === 0) return fail('source', "must be an IPv4 or IPv6 address (the client's)");
  if (listener === 'forward-http') {
    const { authority, method } = record;
    if (typeof authority !== 'string' || authority === '' || authority.length > 260 || /[\s/@?#]/.test(authority)) {
      return fail('authority', 'is required: the CONNECT target or Host, "HOST[:PORT]" (IPv6 as "[2001:db8::1]:443"), no spaces, path or user info');
    }
    if (method !== undefined && (typeof method !== 'string' || !/^[A-Z]{1,20}$/.test(method))) return fail('method', 'must be an HTTP method in capitals, e.g. "CONNECT" or "GET"');
    // The SNI inside the CONNECT tunnel ("" for a ClientHello without one), checked with --forward-proxy-inspect-connect.
    const { innerSni } = record;
    if (innerSni !== undefined && (typeof innerSni !== 'string' || /\s/.test(innerSni) || innerSni.length > 253)) {
      return fail('innerSni', 'must be the server name the client sends inside the CONNECT tunnel ("" for none): no spaces, at most 253 characters');
    }
    return {
      ok: true,
      value: { listener, nodeId: node, sourceIp: source, method: (method as string | undefined) ?? 'CONNECT', authority, ...(innerSni !== undefined && { innerSni: innerSni as string }) },
    };
  }
  const { sni } = record;
  if (sni !== undefined && (typeof sni !== 'string' || sni === '' || /\s/.test(sni) || sni.length > 253)) {
    return fail('sni', 'must be the server name a client sends: non-empty, no spaces, at most 253 characters');
  }
  return { ok: true, value: { listener, nodeId: node, sourceIp: source, ...(sni !== undefined && { serverName: sni as string }) } };
}
