// The admin API described as OpenAPI 3.1, served at /openapi.json. Written by
// hand as data, except the request bodies: their schemas are the very objects
// the server compiles (ajv) to validate them (policySchema.ts, batchRequest.ts,
// checkRequest.ts, forwardCheckRequest.ts), so the document cannot drift from
// what the server accepts. test/admin/openapi.test.ts checks that it and the
// server's route table name the same paths and methods, and that each request
// body's schema is the one its route validates with.

import { allowlistSchema, cidrAllowSchema, policyNameSchema, policySpecSchema } from '../policy/policySchema.js';
import { batchRequestSchema } from './batchRequest.js';
import { checkRequestSchema } from './checkRequest.js';
import { denialPaths, denialSchemas } from './denialsOpenApi.js';
import { forwardHttpCheckRequestSchema, forwardTlsCheckRequestSchema } from './forwardCheckRequest.js';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const jsonContent = (schema: unknown) => ({ 'application/json': { schema } });
const errorResponse = (description: string) => ({ description, content: jsonContent(ref('Error')) });

const revisionHeader = {
  ETag: { description: 'The revision, quoted ("3"); send it back in If-Match.', schema: { type: 'string' } },
};
const common = {
  '401': errorResponse('Missing or wrong bearer token (when a token is configured). Nothing changed.'),
  '500': errorResponse('Internal error.'),
};
const nameParameter = {
  name: 'name',
  in: 'path',
  required: true,
  description: policyNameSchema.description,
  schema: ref('PolicyName'),
};
const ifMatch = {
  name: 'If-Match',
  in: 'header',
  required: false,
  description: 'Only if the policy is at this revision ("3", from the ETag) or exists at all (*). Otherwise 412.',
  schema: { type: 'string' },
};

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'egress-xds admin API',
    version: '1',
    description:
      'Manage the egress allowlist policies an egress-xds control plane serves to Envoy, see connected nodes, ' +
      'and ask what verdict a connection would get. Errors are {"error":{"message","field"?}}.',
  },
  security: [{ bearer: [] }],
  paths: {
    '/v1/policies': {
      get: {
        operationId: 'listPolicies',
        summary: 'Every policy, sorted by name.',
        responses: {
          '200': { description: 'The policies.', headers: { ETag: { description: 'The store revision.', schema: { type: 'string' } } }, content: jsonContent({ type: 'array', items: ref('StoredPolicy') }) },
          ...common,
        },
      },
    },
    '/v1/policies/{name}': {
      parameters: [nameParameter],
      get: {
        operationId: 'getPolicy',
        summary: 'One policy.',
        responses: {
          '200': { description: 'The policy.', headers: revisionHeader, content: jsonContent(ref('StoredPolicy')) },
          '400': errorResponse('Invalid policy name (field "name").'),
          '404': errorResponse('No such policy.'),
          ...common,
        },
      },
      put: {
        operationId: 'putPolicy',
        summary: 'Create or replace a policy. Putting the spec already stored changes nothing (same revision, changed=false).',
        parameters: [
          ifMatch,
          { name: 'If-None-Match', in: 'header', required: false, description: '"*": create only, never replace (412 if it exists).', schema: { type: 'string', const: '*' } },
        ],
        requestBody: { required: true, content: jsonContent(ref('PolicySpec')) },
        responses: {
          '200': { description: 'Stored durably.', headers: revisionHeader, content: jsonContent(ref('WriteResult')) },
          '400': errorResponse('Invalid body, name or header; "field" says where (e.g. "allow.sni[1]"). Nothing changed.'),
          '409': errorResponse('The policy is managed by the policy file (serve --policy); change it there.'),
          '412': errorResponse('If-Match / If-None-Match did not hold.'),
          '413': errorResponse('Body larger than 1 MiB.'),
          '415': errorResponse('Content-Type is not application/json.'),
          '503': errorResponse('The store cannot write.'),
          ...common,
        },
      },
      delete: {
        operationId: 'deletePolicy',
        summary: 'Delete a policy.',
        parameters: [ifMatch],
        responses: {
          '200': { description: 'Deleted durably; revision is the one the deletion got.', headers: revisionHeader, content: jsonContent(ref('WriteResult')) },
          '400': errorResponse('Invalid policy name or header.'),
          '404': errorResponse('No such policy.'),
          '409': errorResponse('The policy is managed by the policy file.'),
          '412': errorResponse('If-Match did not hold (also when the policy does not exist).'),
          '503': errorResponse('The store cannot write.'),
          ...common,
        },
      },
    },
    '/v1/policies:batch': {
      post: {
        operationId: 'batchPolicies',
        summary: 'Many puts and deletes as one atomic commit: all are applied at one store revision, or none (the first refusal names its policy).',
        requestBody: { required: true, content: jsonContent(ref('BatchRequest')) },
        responses: {
          '200': { description: 'Committed durably.', headers: { ETag: { description: 'The store revision of the commit.', schema: { type: 'string' } } }, content: jsonContent(ref('BatchResult')) },
          '400': errorResponse('Invalid body; "field" says where ("put.NAME.allow.sni[0]", "delete[2]"). Nothing changed.'),
          '404': errorResponse('A deleted policy does not exist ("field" is its name). Nothing changed.'),
          '409': errorResponse('A policy is managed by the policy file. Nothing changed.'),
          '412': errorResponse('An ifMatch did not hold ("field" is its name). Nothing changed.'),
          '413': errorResponse('Body larger than 1 MiB.'),
          '415': errorResponse('Content-Type is not application/json.'),
          '503': errorResponse('The store cannot write.'),
          ...common,
        },
      },
    },
    '/v1/nodes': {
      get: {
        operationId: 'listNodes',
        summary: 'Envoy nodes connected over ADS, and what each acknowledged.',
        responses: { '200': { description: 'The nodes.', content: jsonContent({ type: 'array', items: ref('NodeStatus') }) }, ...common },
      },
    },
    '/v1/check': {
      post: {
        operationId: 'check',
        summary: 'The verdict Envoy would give one connection from a node, as the resources that node receives decide it.',
        requestBody: {
          required: true,
          description: 'Selected by "listener": absent or "transparent", "forward-http", "forward-tls".',
          content: jsonContent({ oneOf: [ref('CheckRequest'), ref('ForwardHttpCheckRequest'), ref('ForwardTlsCheckRequest')] }),
        },
        responses: {
          '200': { description: 'The verdict.', content: jsonContent(ref('CheckResult')) },
          '400': errorResponse('Invalid body; "field" says where.'),
          '413': errorResponse('Body larger than 1 MiB.'),
          '415': errorResponse('Content-Type is not application/json.'),
          ...common,
        },
      },
    },
    '/v1/history': {
      get: {
        operationId: 'history',
        summary: 'The audit history of policy changes, oldest first.',
        parameters: [
          { name: 'limit', in: 'query', required: false, description: 'At most this many entries (default 100).', schema: { type: 'integer', minimum: 1, maximum: 1000 } },
          { name: 'since', in: 'query', required: false, description: 'Only changes after this store revision (pages forward); without it, the newest entries.', schema: { type: 'integer', minimum: 0 } },
          { name: 'before', in: 'query', required: false, description: 'Only changes before this store revision: a page\'s "next", for older entries.', schema: { type: 'integer', minimum: 1 } },
        ],
        responses: {
          '200': { description: 'One page of entries, oldest first. A page never splits a commit.', content: jsonContent(ref('HistoryPage')) },
          '400': errorResponse('Invalid query parameter.'),
          ...common,
        },
      },
    },
    ...denialPaths,
    '/healthz': {
      get: {
        operationId: 'healthz',
        summary: 'Liveness: the process answers. No token needed.',
        security: [],
        responses: { '200': { description: 'Alive.', content: jsonContent({ type: 'object', properties: { status: { const: 'ok' } } }) } },
      },
    },
    '/readyz': {
      get: {
        operationId: 'readyz',
        summary: 'Readiness: the served configuration reflects the store. No token needed.',
        security: [],
        responses: {
          '200': { description: 'Ready.', content: jsonContent({ type: 'object', properties: { ready: { const: true } } }) },
          '503': {
            description: 'Not ready: starting, or (with --store etcd://) etcd does not answer; Envoys are still served the last state.',
            content: jsonContent({ type: 'object', properties: { ready: { const: false }, reason: { type: 'string' } } }),
          },
        },
      },
    },
    '/metrics': {
      get: {
        operationId: 'metrics',
        summary: 'Prometheus metrics (text exposition format).',
        responses: { '200': { description: 'Metrics.', content: { 'text/plain': { schema: { type: 'string' } } } }, ...common },
      },
    },
    '/openapi.json': {
      get: {
        operationId: 'openapi',
        summary: 'This document.',
        responses: { '200': { description: 'OpenAPI 3.1 document.', content: jsonContent({ type: 'object' }) }, ...common },
      },
    },
  },
  components: {
    securitySchemes: {
      bearer: {
        type: 'http',
        scheme: 'bearer',
        description: 'Set with serve --admin-token-file FILE or EGRESS_XDS_ADMIN_TOKEN; required when the admin address is not loopback.',
      },
    },
    schemas: {
      ...denialSchemas,
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['message'],
            properties: {
              message: { type: 'string' },
              field: { type: 'string', description: 'Where the problem is: "allow.sni[2]", "name", "If-Match", "Content-Type", "body".' },
            },
          },
        },
      },
      PolicyName: policyNameSchema,
      PolicySpec: policySpecSchema,
      Allowlist: allowlistSchema,
      CidrAllow: cidrAllowSchema,
      StoredPolicy: {
        allOf: [
          ref('PolicySpec'),
          {
            type: 'object',
            required: ['name', 'revision', 'updatedAt'],
            properties: {
              name: { type: 'string' },
              revision: { type: 'integer', description: 'Increases by one on every change of this policy.' },
              updatedAt: { type: 'string', format: 'date-time' },
              source: { type: 'string', description: '"api", or "file:PATH" when a policy file manages it.' },
            },
          },
        ],
      },
      BatchRequest: batchRequestSchema,
      BatchResult: {
        type: 'object',
        required: ['storeRevision', 'changed'],
        properties: {
          storeRevision: { type: 'integer', description: 'The store revision of the commit (unchanged when nothing changed).' },
          changed: { type: 'array', items: { type: 'string' }, description: 'The policies the commit changed (puts of the stored spec drop out).' },
        },
      },
      WriteResult: {
        type: 'object',
        required: ['name', 'revision'],
        properties: { name: { type: 'string' }, revision: { type: 'integer' }, changed: { type: 'boolean' } },
      },
      NodeStatus: {
        type: 'object',
        required: ['id', 'cluster', 'connectedAt', 'resources'],
        properties: {
          id: { type: 'string' },
          cluster: { type: 'string' },
          connectedAt: { type: 'string', format: 'date-time' },
          streams: { type: 'integer' },
          replica: { type: 'string', description: 'With --store etcd://: the replica this node is connected to (every replica lists the whole fleet).' },
          upToDate: { type: 'boolean', description: 'The newest stream acknowledged the latest version of every type this node is served.' },
          revision: {
            type: 'object',
            required: ['latest', 'served', 'acknowledged'],
            description: 'Store revisions: whether the latest change has reached this node and been acknowledged.',
            properties: {
              latest: { type: 'integer', description: 'The latest committed store revision.' },
              served: { type: 'integer', description: 'The store revision whose state this node is served now; below latest while a change is coalesced or compiled.' },
              acknowledged: { type: ['integer', 'null'], description: 'The store revision whose state this node acknowledged whole; equal to latest when the latest change is in force at the node.' },
            },
          },
          resources: {
            type: 'object',
            description: 'By type URL.',
            additionalProperties: {
              type: 'object',
              properties: {
                sent: { type: 'string' },
                acked: { type: 'string' },
                nack: { type: 'object', properties: { version: { type: 'string' }, message: { type: 'string' }, at: { type: 'string' }, superseded: { type: 'boolean' } } },
                latest: { type: 'string', description: 'The version the node should end up acknowledging.' },
                upToDate: { type: 'boolean' },
              },
            },
          },
        },
      },
      CheckRequest: checkRequestSchema,
      ForwardHttpCheckRequest: forwardHttpCheckRequestSchema,
      ForwardTlsCheckRequest: forwardTlsCheckRequestSchema,
      CheckResult: {
        type: 'object',
        required: ['verdict', 'policy', 'filterChain'],
        properties: {
          verdict: { enum: ['allow', 'deny'] },
          policy: { type: ['string', 'null'], description: 'The policy that allows it; null on deny.' },
          filterChain: { type: 'string', description: 'The filter chain Envoy would select.' },
          listener: { enum: ['forward-http', 'forward-tls'], description: 'Present when the request asked about a forward-proxy listener.' },
          route: { type: 'string', description: 'forward-http, or transparent with host: the virtual host and route taken, "VIRTUAL HOST / ROUTE".' },
          status: { type: 'integer', description: 'forward-http, or transparent with host: the status Envoy answers itself with (403 refused; 404 no route).' },
          body: { type: 'string', description: 'forward-http, or transparent with host: that answer\'s body, naming the host and the policy field that would allow it.' },
          logs: {
            type: 'array',
            items: { type: 'object', additionalProperties: { type: 'string' } },
            description: 'Forward-proxy listeners: the access-log entries Envoy would send for it, as the literal tags of each logger that fires (egress.verdict, egress.reason, egress.listener, egress.chain, egress.policy; egress.cap "host" on a chain without connection_limit); empty when nothing is logged.',
          },
          path: {
            type: 'array',
            items: { type: 'string' },
            description: 'How Envoy gets there: the filter_chain_matcher branches taken (profile hardened), or the filter chain match (profile seed).',
          },
          upstream: {
            oneOf: [
              { type: 'null' },
              {
                type: 'object',
                required: ['kind', 'address'],
                properties: {
                  kind: { enum: ['name', 'original-destination'], description: '"name": dialled by the server name, resolved by Envoy; "original-destination": to the address the client dialled.' },
                  address: { type: 'string', description: '"github.com:443", or "140.82.112.3:443" ("[2001:db8::1]:443").' },
                },
              },
            ],
            description: 'Where an allowed connection goes; null on deny.',
          },
        },
      },
      HistoryPage: {
        type: 'object',
        required: ['entries'],
        properties: {
          entries: { type: 'array', items: ref('HistoryEntry') },
          next: { type: 'integer', description: 'Present when older entries are kept: pass as before= to get them.' },
        },
      },
      HistoryEntry: {
        type: 'object',
        required: ['storeRevision', 'at', 'action', 'name', 'revision', 'client', 'source'],
        properties: {
          storeRevision: { type: 'integer' },
          at: { type: 'string', format: 'date-time' },
          action: { enum: ['put', 'delete'] },
          name: { type: 'string' },
          revision: { type: 'integer', description: 'The policy revision after the change.' },
          client: { type: 'string', description: 'Remote address, token fingerprint, user agent; or policy-file:PATH.' },
          source: { type: 'string' },
          spec: ref('PolicySpec'),
        },
      },
    },
  },
} as const;
