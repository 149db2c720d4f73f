// The policy model: what an admin states, after validation and normalisation.
// Deep code (compile, snapshot, check) trusts these shapes; only
// src/policy/validate.ts builds them from untrusted input.

/** A destination range allowed without SNI (plain TCP or TLS), optionally on some ports only. */
export interface CidrAllow {
  /** Canonical CIDR, host bits zero ("10.0.0.0/8", "2001:db8::/32"). */
  readonly cidr: string;
  /** Sorted, unique destination ports; absent means every port. */
  readonly ports?: readonly number[];
}

export interface Allowlist {
  /** Lower-case DNS names, or "*." + a DNS name for any subdomain at any depth. Sorted, unique. */
  readonly sni: readonly string[];
  /** Sorted by CIDR, unique. */
  readonly cidrs?: readonly CidrAllow[];
}

/** What PUT /v1/policies/{name} and the policy file carry. */
export interface PolicySpec {
  /** Canonical source CIDRs; absent means every source that reaches the listener. */
  readonly sources?: readonly string[];
  /** Globs ("*" for any run of characters, "?" for exactly one) on the Envoy node id; absent means every node. */
  readonly nodes?: readonly string[];
  /**
   * Where a connection allowed by server name goes: "name" (the default, stored
   * absent) dials the name, resolved by Envoy, whatever address the guest chose;
   * "original-destination" forwards to the address the guest dialled (seed 002 §6.6).
   */
  readonly upstream?: PolicyUpstream;
  /**
   * "enforce" (the default, stored absent) refuses what the allowlist does not allow;
   * "audit" forwards it and logs it as would-deny, for the sources this policy selects.
   */
  readonly mode?: PolicyMode;
  /**
   * "denied" (the default, stored absent): Envoy logs refused (and would-deny) connections
   * only; "all": also every connection allowed for the sources this policy selects.
   */
  readonly log?: PolicyLog;
  readonly allow: Allowlist;
}

export type PolicyUpstream = 'name' | 'original-destination';
export type PolicyMode = 'enforce' | 'audit';
export type PolicyLog = 'denied' | 'all';

export interface Policy extends PolicySpec {
  readonly name: string;
}

/** A policy as the store holds it. */
export interface StoredPolicy extends Policy {
  /** Increases by one on every change of this policy; the If-Match token. */
  readonly revision: number;
  readonly updatedAt: string;
  /**
   * Who manages it: "api" (the admin API, the default when absent) or
   * "file:/abs/path" (a --policy file, which then owns it: API writes get 409).
   */
  readonly source?: string;
}

/** One connection as Envoy sees it after original_dst and tls_inspector. */
export interface Connection {
  readonly sourceIp: string;
  readonly destinationIp: string;
  readonly destinationPort: number;
  /** TLS SNI; absent for plain TCP or a ClientHello without SNI. */
  readonly serverName?: string;
}

/** A field-level error at the edge (API body, policy file, flags). */
export interface FieldError {
  /** JSON-path-like location, e.g. "allow.sni[2]". */
  readonly field: string;
  readonly message: string;
}

export type Result<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: FieldError };
