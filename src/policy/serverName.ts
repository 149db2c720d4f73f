// SNI allowlist entries: DNS host names (RFC 1123 letters-digits-hyphen labels)
// or "*." + a host name. Envoy's server_names compares exact lower-case names,
// and a leading "*." matches any subdomain; nothing else is a pattern there, so
// anything Envoy would silently treat differently is refused here with a reason.
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';

export type NameCheck = { ok: true; name: string } | { ok: false; reason: string };

const MAX_NAME = 253;
const MAX_LABEL = 63;
const LABEL = /^[a-z0-9-]+$/;

/** Normalises (lower case, no trailing dot) and checks one SNI entry. */
export function checkServerNamePattern(input: string): NameCheck {
  if (input === '') return { ok: false, reason: 'must not be empty' };
  if (/\s/.test(input)) return { ok: false, reason: 'must not contain spaces' };
  if (/[^\x21-\x7e]/.test(input)) {
    const ascii = domainToASCII(input.toLowerCase());
    const hint = ascii === '' ? '' : ` ("${ascii}")`;
    return { ok: false, reason: `must be ASCII; write internationalised names in their IDNA xn-- form${hint}` };
  }
  const unbracketed = input.startsWith('[') && input.endsWith(']') ? input.slice(1, -1) : input;
  if (isIP(unbracketed)) return { ok: false, reason: 'is an IP address, not a DNS name; allow addresses with allow.cidrs' };
  if (input === '*') return { ok: false, reason: 'a lone "*" would allow every name; use "*.example.com" for the subdomains of a name' };

  let name = input.toLowerCase();
  if (name.endsWith('.') && !name.endsWith('..')) name = name.slice(0, -1);
  const wildcard = name.startsWith('*.');
  const host = wildcard ? name.slice(2) : name;
  if (host.includes('*')) {
    return {
      ok: false,
      reason: 'a wildcard is only allowed as a whole leading label ("*.example.com"); partial or inner wildcards are not supported by Envoy',
    };
  }
  if (name.length > MAX_NAME) return { ok: false, reason: `is ${name.length} characters; a DNS name has at most ${MAX_NAME}` };
  const labels = host.split('.');
  for (const label of labels) {
    if (label === '') return { ok: false, reason: 'has an empty label (leading dot or "..")' };
    if (label.length > MAX_LABEL) {
      return { ok: false, reason: `label "${label.slice(0, 20)}…" is ${label.length} characters; a label has at most ${MAX_LABEL}` };
    }
    if (!LABEL.test(label)) return { ok: false, reason: `label "${label}" may hold only letters, digits and "-"` };
    if (label.startsWith('-') || label.endsWith('-')) return { ok: false, reason: `label "${label}" must not start or end with "-"` };
  }
  // A numeric top-level label is how an address in disguise (10.0.0.300, 1.2.3) shows itself.
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) {
    return { ok: false, reason: 'the last label is all digits: not a DNS name (for addresses use allow.cidrs)' };
  }
  return { ok: true, name };
}
