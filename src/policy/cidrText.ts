// A CIDR as an admin writes it, checked and put in canonical form. Host bits set
// ("10.1.2.3/8") are refused rather than silently widened: the writer most
// likely meant one host or mistyped the prefix, and the reason names the
// canonical network so the fix is one copy-paste away.
import { type Cidr, formatCidr, parseCidr, parseIp } from '../net/ip.js';

export type CidrCheck = { ok: true; cidr: Cidr; text: string } | { ok: false; reason: string };

export function checkCidr(input: string): CidrCheck {
  const parsed = parseCidr(input);
  if (!parsed.ok) return { ok: false, reason: parsed.reason };
  const slash = input.indexOf('/');
  const address = parseIp(slash < 0 ? input : input.slice(0, slash))!;
  const canonical = formatCidr(parsed.cidr);
  if (address.value !== parsed.cidr.network) {
    return {
      ok: false,
      reason: `has host bits set; the network is "${canonical}" (or write "${input.slice(0, slash)}/${address.family === 4 ? 32 : 128}" for one host)`,
    };
  }
  // A bare address is one host: "10.0.0.1" becomes "10.0.0.1/32".
  return { ok: true, cidr: parsed.cidr, text: canonical };
}
