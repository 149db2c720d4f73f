// Where a node's id must appear in its client certificate (serve --node-identity),
// so that under mTLS a host can only ever be served as itself: a fleet
// certificate alone does not let it read another node's allowlist or hide that
// node's NACKs. Pure functions over the peer certificate grpc-js reports.
import type { PeerCertificate } from 'node:tls';

export type NodeIdentityRule =
  | { readonly kind: 'none' }
  /** A URI SAN equal to prefix + node id, e.g. spiffe://fleet/node/ + host-1. */
  | { readonly kind: 'uri-san'; readonly prefix: string }
  /** A DNS SAN equal to the node id. */
  | { readonly kind: 'dns-san' }
  /** The subject's common name equal to the node id. */
  | { readonly kind: 'cn' };

export const NODE_IDENTITY_KINDS = ['uri-san', 'dns-san', 'cn', 'none'] as const;
export const DEFAULT_NODE_IDENTITY_PREFIX = 'spiffe://egress-xds/node/';

export interface SubjectAltName {
  readonly type: string;
  readonly value: string;
}

/**
 * Parses Node's subjectaltname text ("DNS:a, URI:spiffe://x/y, IP Address:1.2.3.4").
 * Node quotes a value holding a comma, quote or other special character as a
 * JSON string (since the CVE-2021-44533 fix), so a crafted SAN cannot pose as two.
 */
export function parseSubjectAltNames(text: string | undefined): SubjectAltName[] {
  const names: SubjectAltName[] = [];
  if (!text) return names;
  let at = 0;
  while (at < text.length) {
    const colon = text.indexOf(':', at);
    if (colon < 0) break;
    const type = text.slice(at, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      // Find the closing quote that is not escaped, then let JSON undo the escapes.
      let close = colon + 2;
      while (close < text.length && text[close] !== '"') close += text[close] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(text.slice(colon + 1, close + 1)) as string;
      } catch {
        break;
      }
      end = close + 1;
    } else {
      const comma = text.indexOf(', ', colon + 1);
      end = comma < 0 ? text.length : comma;
      value = text.slice(colon + 1, end);
    }
    names.push({ type, value });
    at = text.startsWith(', ', end) ? end + 2 : end + 1;
  }
  return names;
}

export type IdentityCheck = { readonly ok: true } | { readonly ok: false; readonly message: string };

/** Whether the certificate names this node id where the rule says; the message says what was expected. */
export function checkNodeIdentity(rule: NodeIdentityRule, certificate: PeerCertificate | undefined, nodeId: string): IdentityCheck {
  if (rule.kind === 'none') return { ok: true };
  if (!certificate) return { ok: false, message: `node.id "${nodeId}": no verified client certificate to check it against` };
  const sans = parseSubjectAltNames(certificate.subjectaltname);
  switch (rule.kind) {
    case 'uri-san': {
      const expected = rule.prefix + nodeId;
      if (sans.some((san) => san.type === 'URI' && san.value === expected)) return { ok: true };
      return { ok: false, message: `node.id "${nodeId}": the client certificate has no URI SAN ${expected}` };
    }
    case 'dns-san':
      if (sans.some((san) => san.type === 'DNS' && san.value.toLowerCase() === nodeId.toLowerCase())) return { ok: true };
      return { ok: false, message: `node.id "${nodeId}": the client certificate has no DNS SAN ${nodeId}` };
    case 'cn': {
      const cn = certificate.subject?.CN;
      const names = Array.isArray(cn) ? cn : cn === undefined ? [] : [cn];
      // Several CNs are ambiguous: refuse rather than pick one.
      if (names.length === 1 && names[0] === nodeId) return { ok: true };
      return { ok: false, message: `node.id "${nodeId}": the client certificate's subject CN is not ${nodeId}` };
    }
  }
}
