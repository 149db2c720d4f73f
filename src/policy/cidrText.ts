// A CIDR as an admin writes it, checked and put in canonical form. Host bits set
// ("10.1.2.3/8") are refused rather than silently widened: the writer most
// likely meant one host or mistyped the prefix, and the reason names the
// canonical network so the fix is one copy-paste away.
import { type Cidr, familyBits, formatCidr, parseCidr } from '../net/ip.js';

export type CidrCheck = { ok: true; cidr: Cidr; text: string } | { ok: false; reason: string };

export function checkCidr(input: string): CidrCheck {
  const parsed = parseCidr(input);
  if (!parsed.ok) return { ok: false, reason: parsed.reason };
  const canonical = formatCidr(parsed.cidr);
  if (parsed.hostBitsSet) {
    // Only a prefixed CIDR can have host bits set, so there is a slash.
    const address = input.slice(0, input.indexOf('/'));
    return {
      ok: false,
      reason: `has host bits set; the network is "${canonical}" (or write "${address}/${familyBits(parsed.cidr.family)}" for one host)`,
    };
  }
  // A bare address is one host: "10.0.0.1" becomes "10.0.0.1/32".
  return { ok: true, cidr: parsed.cidr, text: canonical };
}
