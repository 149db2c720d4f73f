// The OpenAPI description of the denial routes and the console
// (src/admin/denialRoutes.ts), spread into src/admin/openapi.ts.
import { DENIAL_REASONS, VERDICTS } from '../denials/record.js';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const jsonContent = (schema: unknown) => ({ 'application/json': { schema } });
const errorResponse = (description: string) => ({ description, content: jsonContent(ref('Error')) });
const common = {
  '401': errorResponse('Missing or wrong bearer token (when a token is configured).'),
  '500': errorResponse('Internal error.'),
  '503': errorResponse('The denial log is not running in this server.'),
};
const query = (name: string, description: string, schema: unknown = { type: 'string' }) => ({ name, in: 'query', required: false, description, schema });
const filters = [
  query('node', 'Only this Envoy node id.'),
  query('source', 'Only this source: an IP, IP:PORT, or a CIDR.'),
  query('destination', 'Only this destination: an IP, IP:PORT, or a server name (SNI / Host).'),
  query('since', 'Only records from this time on: ISO 8601, or a duration back from now (30s, 15m, 1h, 2d).'),
  query('verdict', 'Comma-separated verdicts (default denied,would-deny).', { type: 'string', examples: ['denied,would-deny', 'allowed'] }),
];

export const denialPaths = {
  '/v1/denials': {
    get: {
      operationId: 'listDenials',
      summary:
        'Connections Envoy refused (or, for audit policies, would have refused), newest first, from the in-memory buffer. ' +
        'With follow=1: a live stream (text/event-stream), one "denial" event per record, id = seq; Last-Event-ID resumes.',
      parameters: [
        ...filters,
        query('limit', 'At most this many records (default 100; with follow=1, the backlog sent first, default 0).', { type: 'integer', minimum: 0, maximum: 10000 }),
        query('follow', '1: a live stream of server-sent events.', { type: 'string', enum: ['0', '1'] }),
      ],
      responses: {
        '200': {
          description: 'The records; or, with follow=1, an event stream whose events carry one DenialRecord each.',
          content: {
            ...jsonContent(ref('DenialPage')),
            'text/event-stream': { schema: { type: 'string', description: 'id: SEQ\\nevent: denial\\ndata: DenialRecord JSON\\n\\n, and ": keepalive" comments' } },
          },
        },
        '400': errorResponse('Invalid query parameter; "field" names it.'),
        ...common,
      },
    },
  },
  '/v1/denials/summary': {
    get: {
      operationId: 'denialSummary',
      summary: 'Per node and source IP: each destination it was refused, how often, first and last seen. Busiest first.',
      parameters: filters,
      responses: {
        '200': { description: 'The summary.', content: jsonContent({ type: 'object', required: ['sources'], properties: { sources: { type: 'array', items: ref('SourceSummary') } } }) },
        '400': errorResponse('Invalid query parameter.'),
        ...common,
      },
    },
  },
  '/v1/denials/suggest': {
    get: {
      operationId: 'suggestPolicy',
      summary:
        'Learn: a ready-to-apply policy drafted from what one source was refused (exact names; "*.parent" where several subdomains of one parent appear; ' +
        'addresses without a name as /32 CIDR rules), and what it would change against the policies in force, checked on the compiled listener.',
      parameters: [
        { ...query('node', 'The node whose denials to draft from.'), required: true },
        { ...query('source', 'The source IP (the microVM).'), required: true },
        query('since', 'Records from this time on (default 1h): ISO 8601 or a duration.'),
      ],
      responses: {
        '200': { description: 'The draft; PUT it to /v1/policies/{name}.', content: jsonContent(ref('PolicySuggestion')) },
        '400': errorResponse('Missing or invalid node, source or since.'),
        ...common,
      },
    },
  },
  '/': {
    get: {
      operationId: 'console',
      summary:
        'The web console (one HTML page, no data in it): nodes with ACK/NACK state and revision, policies, the live denial feed, and the suggested policy per source. ' +
        'It asks for the bearer token when the API needs one and sends it on every call. No token needed for the page itself.',
      security: [],
      responses: { '200': { description: 'The page.', content: { 'text/html': { schema: { type: 'string' } } } } },
    },
  },
};

export const denialSchemas = {
  DenialRecord: {
    type: 'object',
    required: ['seq', 'time', 'node', 'source', 'destination', 'verdict', 'listener'],
    properties: {
      seq: { type: 'integer', description: 'Order of arrival in this server process; the SSE event id.' },
      time: { type: 'string', format: 'date-time', description: 'When the connection started (Envoy).' },
      node: { type: 'string' },
      source: { type: 'string', description: 'The microVM, ip:port ([v6]:port).' },
      destination: { type: 'string', description: 'The original destination, ip:port.' },
      serverName: { type: 'string', description: 'SNI (TLS) or Host (plain HTTP).' },
      reason: { type: 'string', enum: [...DENIAL_REASONS] },
      verdict: { type: 'string', enum: [...VERDICTS] },
      policy: { type: 'string', description: 'The policy the verdict comes from (comma-separated when several).' },
      revision: { type: 'string', description: 'The store revision in force.' },
      listenerVersion: { type: 'string', description: 'The Listener version the node had acknowledged.' },
      listener: { type: 'string' },
      chain: { type: 'string' },
      http: { type: 'object', properties: { method: { type: 'string' }, path: { type: 'string' }, status: { type: 'integer' } } },
    },
  },
  DenialPage: {
    type: 'object',
    required: ['denials', 'buffered'],
    properties: { denials: { type: 'array', items: ref('DenialRecord') }, buffered: { type: 'integer', description: 'Records held in memory now.' } },
  },
  SourceSummary: {
    type: 'object',
    required: ['source', 'node', 'count', 'destinations'],
    properties: {
      source: { type: 'string' },
      node: { type: 'string' },
      count: { type: 'integer' },
      destinations: {
        type: 'array',
        items: {
          type: 'object',
          required: ['destination', 'addresses', 'count', 'firstSeen', 'lastSeen', 'reasons', 'verdicts'],
          properties: {
            destination: { type: 'string', description: 'The server name, or ip:port without one.' },
            serverName: { type: 'string' },
            addresses: { type: 'array', items: { type: 'string' } },
            count: { type: 'integer' },
            firstSeen: { type: 'string', format: 'date-time' },
            lastSeen: { type: 'string', format: 'date-time' },
            reasons: { type: 'array', items: { type: 'string' } },
            verdicts: { type: 'array', items: { type: 'string' } },
          },
        },
      },
    },
  },
  PolicySuggestion: {
    type: 'object',
    required: ['node', 'source', 'since', 'name', 'policy', 'records', 'leftOut', 'inForce', 'adds', 'effects', 'newlyAllowed', 'stillDenied'],
    properties: {
      node: { type: 'string' },
      source: { type: 'string' },
      since: { type: 'string', format: 'date-time' },
      name: { type: 'string', description: 'A policy name for it ("learned-" and the source).' },
      policy: ref('PolicySpec'),
      records: { type: 'integer', description: 'Records drafted from.' },
      leftOut: { type: 'object', additionalProperties: { type: 'integer' }, description: 'Records no allowlist entry would cure, by reason.' },
      inForce: { type: 'array', items: { type: 'string' }, description: 'The policies selecting the node now.' },
      adds: {
        type: 'object',
        properties: { sni: { type: 'array', items: { type: 'string' } }, cidrs: { type: 'array', items: { type: 'object' } } },
        description: 'Entries no policy in force has yet.',
      },
      effects: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            connection: {
              type: 'object',
              properties: { sourceIp: { type: 'string' }, destinationIp: { type: 'string' }, destinationPort: { type: 'integer' }, serverName: { type: 'string' } },
            },
            count: { type: 'integer' },
            before: { type: 'object', properties: { verdict: { enum: ['allow', 'deny'] }, policy: { type: 'string' } } },
            after: { type: 'object', properties: { verdict: { enum: ['allow', 'deny'] }, policy: { type: 'string' } } },
          },
        },
      },
      newlyAllowed: { type: 'integer' },
      stillDenied: { type: 'integer' },
    },
  },
};
