// The JSON Schemas of a policy as an admin writes it: the single description
// of its shape. src/policy/validate.ts compiles them (ajv) to check PUT bodies,
// batch items and policy files; src/admin/openapi.ts lists these same objects in
// components.schemas. What a schema cannot say (a CIDR's meaning, DNS name
// syntax, canonical form) is checked in validate.ts after the shape is right.
//
// The nested schemas are the same objects inline (PolicySpec.properties.allow
// IS Allowlist), not $refs: each one then compiles on its own, and the OpenAPI
// document still names every one of them.

/** Policy names: 1–63 of a-z 0-9 . _ -, starting and ending with a letter or digit. */
export const POLICY_NAME_PATTERN = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;
/** Node globs: "*" any run of characters, "?" exactly one. */
export const NODE_GLOB_PATTERN = /^[A-Za-z0-9._:*?-]+$/;

export const policyNameSchema = {
  type: 'string',
  minLength: 1,
  maxLength: 63,
  pattern: POLICY_NAME_PATTERN.source,
  description: 'Policy name: 1–63 of a-z 0-9 . _ -, starting and ending with a letter or digit.',
  'x-message': {
    type: 'a policy name is required',
    minLength: 'a policy name is required',
    pattern: 'must be lower-case letters, digits, ".", "_" or "-", starting and ending with a letter or digit',
  },
} as const;

const portSchema = {
  type: 'integer',
  minimum: 1,
  maximum: 65535,
  'x-message': 'must be an integer port 1 to 65535, got {value}',
} as const;

export const cidrAllowSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['cidr'],
  properties: {
    cidr: {
      type: 'string',
      description: 'A destination CIDR in network form (host bits zero), or a bare address for one host. Stored canonical.',
    },
    ports: {
      type: 'array',
      minItems: 1,
      items: portSchema,
      'x-absent': 'every port',
      description: 'Destination ports. Absent: every port. Stored sorted, unique.',
    },
  },
} as const;

export const allowlistSchema = {
  type: 'object',
  additionalProperties: false,
  // A policy's "allow" is required (an empty one allows nothing, on purpose).
  'x-required': 'is required: {"sni": [NAME], "cidrs": [{"cidr": CIDR, "ports": [PORT]}]}',
  properties: {
    sni: {
      type: 'array',
      items: { type: 'string' },
      description: 'DNS names, or "*." + a DNS name for any subdomain. Stored lower case, without a trailing dot, sorted, unique.',
    },
    cidrs: { type: 'array', items: cidrAllowSchema, description: 'Destinations allowed by address (plain TCP or TLS). Stored sorted, equal CIDRs merged.' },
  },
} as const;

export const policySpecSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['allow'],
  description: 'What PUT /v1/policies/{name} carries, and what a policy file declares under each name.',
  properties: {
    sources: {
      type: 'array',
      minItems: 1,
      items: { type: 'string' },
      'x-absent': 'every source',
      description: 'Source CIDRs (network form: host bits zero; a bare address is one host). Absent: every source.',
    },
    nodes: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'string',
        minLength: 1,
        maxLength: 253,
        pattern: NODE_GLOB_PATTERN.source,
        'x-message': {
          pattern: '{value} may hold only letters, digits, ".", "_", ":", "-", "*" (any run of characters) and "?" (exactly one character)',
        },
      },
      'x-absent': 'every node',
      description: 'Globs on the Envoy node id ("*" is any run of characters, "?" exactly one). Absent: every node.',
    },
    upstream: {
      type: 'string',
      enum: ['name', 'original-destination'],
      description:
        'Where a connection allowed by server name goes: "name" (default) dials the name, resolved by Envoy; "original-destination" forwards to the address the guest dialled.',
    },
    mode: {
      type: 'string',
      enum: ['enforce', 'audit'],
      description: '"enforce" (default) refuses what the allowlist does not allow; "audit" forwards it and logs it as would-deny.',
    },
    log: {
      type: 'string',
      enum: ['denied', 'all'],
      description:
        '"denied" (default): Envoy logs refused and would-deny connections to the control plane; "all": also every allowed connection of the sources this policy selects.',
    },
    allow: allowlistSchema,
  },
} as const;

/** A body with policySpecSchema's shape: what validate.ts checks the meaning of. */
export interface PolicySpecBody {
  readonly sources?: readonly string[];
  readonly nodes?: readonly string[];
  readonly upstream?: 'name' | 'original-destination';
  readonly mode?: 'enforce' | 'audit';
  readonly log?: 'denied' | 'all';
  readonly allow: {
    readonly sni?: readonly string[];
    readonly cidrs?: ReadonlyArray<{ readonly cidr: string; readonly ports?: readonly number[] }>;
  };
}
