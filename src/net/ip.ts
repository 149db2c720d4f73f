// IP addresses and CIDR ranges as integers, so that containment and overlap are
// plain arithmetic. Pure; shared by the policy model, the compiler, Envoy's
// filter-chain matcher and the host agent.
import { isIPv4, isIPv6 } from 'node:net';

export type IpFamily = 4 | 6;

export interface IpAddress {
  readonly family: IpFamily;
  readonly value: bigint;
}

export interface Cidr {
  readonly family: IpFamily;
  /** Network address (host bits zeroed). */
  readonly network: bigint;
  readonly prefixLength: number;
}

export const familyBits = (family: IpFamily): number => (family === 4 ? 32 : 128);

export function parseIp(text: string): IpAddress | undefined {
  if (isIPv4(text)) {
    const value = text.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
    return { family: 4, value };
  }
  if (isIPv6(text)) return { family: 6, value: parseIpv6(text) };
  return undefined;
}

function parseIpv6(text: string): bigint {
  // Rewrite an embedded IPv4 tail (::ffff:1.2.3.4) as two hex groups first.
  let normalized = text;
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = parseIp(tail)!.value;
    normalized = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const groups = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const doubleColon = normalized.indexOf('::');
  let all: number[];
  if (doubleColon < 0) {
    all = groups(normalized);
  } else {
    const left = groups(normalized.slice(0, doubleColon));
    const right = groups(normalized.slice(doubleColon + 2));
    all = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  }
  return all.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

export function formatIp(address: IpAddress): string {
  if (address.family === 4) {
    const v = address.value;
    return [24n, 16n, 8n, 0n].map((shift) => String((v >> shift) & 0xffn)).join('.');
  }
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((address.value >> BigInt(i * 16)) & 0xffffn).toString(16));
  // RFC 5952: compress the longest run of two or more zero groups.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLength) { bestStart = i; bestLength = j - i; }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLength).join(':')}`;
}

const mask = (family: IpFamily, prefixLength: number): bigint => {
  const bits = BigInt(familyBits(family));
  const hostBits = bits - BigInt(prefixLength);
  return ((1n << bits) - 1n) ^ ((1n << hostBits) - 1n);
};

export type CidrParseResult =
  | {
      ok: true;
      cidr: Cidr;
      /** The text had bits set past the prefix ("10.1.2.3/8"); cidr.network has them cleared. */
      hostBitsSet: boolean;
    }
  | { ok: false; reason: string };

/** Parses "10.0.0.0/8", "2001:db8::/32", or a bare address (a host route). */
export function parseCidr(text: string): CidrParseResult {
  if (typeof text !== 'string' || text.trim() !== text || text === '') {
    return { ok: false, reason: 'must be a CIDR such as 10.0.0.0/8' };
  }
  const slash = text.indexOf('/');
  const addressText = slash < 0 ? text : text.slice(0, slash);
  const address = parseIp(addressText);
  if (!address) return { ok: false, reason: `"${addressText}" is not an IPv4 or IPv6 address` };
  const maxPrefix = familyBits(address.family);
  let prefixLength = maxPrefix;
  if (slash >= 0) {
    const prefixText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > maxPrefix) {
      return { ok: false, reason: `prefix length "${prefixText}" must be 0 to ${maxPrefix}` };
    }
    prefixLength = Number(prefixText);
  }
  const network = address.value & mask(address.family, prefixLength);
  return { ok: true, cidr: { family: address.family, network, prefixLength }, hostBitsSet: network !== address.value };
}

export function mustParseCidr(text: string): Cidr {
  const result = parseCidr(text);
  if (!result.ok) throw new Error(`invalid CIDR "${text}": ${result.reason}`);
  return result.cidr;
}

export const formatCidr = (cidr: Cidr): string =>
  `${formatIp({ family: cidr.family, value: cidr.network })}/${cidr.prefixLength}`;

export function cidrContainsIp(cidr: Cidr, ip: IpAddress): boolean {
  return cidr.family === ip.family && (ip.value & mask(cidr.family, cidr.prefixLength)) === cidr.network;
}

/** True when every address of inner is in outer. */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  return (
    outer.family === inner.family &&
    outer.prefixLength <= inner.prefixLength &&
    (inner.network & mask(outer.family, outer.prefixLength)) === outer.network
  );
}

export function compareCidrs(a: Cidr, b: Cidr): number {
  if (a.family !== b.family) return a.family - b.family;
  if (a.network !== b.network) return a.network < b.network ? -1 : 1;
  return a.prefixLength - b.prefixLength;
}
