// The admin API's routes: a template, and a handler per method. Handlers turn
// a request into a Reply; the store's refusals become 404 / 409 / 412.
import type { IncomingMessage } from 'node:http';
import { validatePolicyName, validatePolicySpec } from '../policy/validate.js';
import type { Metrics } from '../metrics/metrics.js';
import type { PolicyStore, StoreRefusalCode, WriteOptions, WriteResult } from '../store/policyStore.js';
import { validateBatchRequest } from './batchRequest.js';
import { validateCheckRequest } from './checkRequest.js';
import { isForwardCheck, validateForwardCheckRequest } from './forwardCheckRequest.js';
import type { ControlPlaneView } from './controlPlaneView.js';
import { errorReply, json, type Reply } from './httpIo.js';
import { openApiDocument } from './openapi.js';
import { denialRoutes, type DenialsView } from './denialRoutes.js';

/** POST /v1/check's answer (the forward proxy's adds its listener and loggers around it). */
function checkAnswer(result: ReturnType<ControlPlaneView['check']>): Record<string, unknown> {
  return {
    verdict: result.verdict,
    policy: result.policy ?? null,
    filterChain: result.filterChain,
    path: result.path ?? [],
    upstream: result.upstream ?? null,
    ...(result.route !== undefined && { route: result.route }),
    ...(result.status !== undefined && { status: result.status }),
    ...(result.body !== undefined && { body: result.body }),
  };
}

export type Method = 'GET' | 'PUT' | 'POST' | 'DELETE';

export interface RequestContext {
  readonly req: IncomingMessage;
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  /** Who is asking, for the history: address, token fingerprint, user agent. */
  readonly client: string;
  /** The JSON body, or the 415 / 413 / 400 reply to send instead. */
  body(): Promise<{ ok: true; value: unknown } | { ok: false; reply: Reply }>;
}

export type Handler = (context: RequestContext) => Promise<Reply> | Reply;

export interface Route {
  /** As in the OpenAPI document: "/v1/policies/{name}". */
  readonly template: string;
  readonly pattern: RegExp;
  /** Probes answer without a token. */
  readonly public?: boolean;
  readonly handlers: Readonly<Partial<Record<Method, Handler>>>;
}

export interface RouteDependencies {
  readonly store: PolicyStore;
  readonly view: ControlPlaneView;
  readonly metrics: Metrics;
  /** The denial log and what suggest needs (absent: its routes answer 503). */
  readonly denials?: DenialsView;
}

const refusalStatus: Record<StoreRefusalCode, number> = { not_found: 404, conflict: 409, precondition_failed: 412 };
const etag = (revision: number): Record<string, string> => ({ etag: `"${revision}"` });

type Precondition = { ok: true; value: Pick<WriteOptions, 'ifMatch' | 'ifNoneMatch'> } | { ok: false; reply: Reply };

/** If-Match: "REVISION" (the ETag as sent, or bare), or *; If-None-Match: * (create only). */
function preconditions(req: IncomingMessage, allowNoneMatch: boolean): Precondition {
  const result: { ifMatch?: number | '*'; ifNoneMatch?: '*' } = {};
  const ifMatch = req.headers['if-match']?.trim();
  if (ifMatch !== undefined) {
    const match = /^(?:"(\d{1,15})"|(\d{1,15})|(\*))$/.exec(ifMatch);
    if (!match) return { ok: false, reply: errorReply(400, 'must be one policy revision, e.g. "3" (from the ETag), or *', 'If-Match') };
    result.ifMatch = match[3] ? '*' : Number(match[1] ?? match[2]);
  }
  const ifNoneMatch = req.headers['if-none-match']?.trim();
  if (ifNoneMatch !== undefined) {
    if (!allowNoneMatch || ifNoneMatch !== '*') {
      return { ok: false, reply: errorReply(400, 'only "If-None-Match: *" (create, never replace) is supported, on PUT', 'If-None-Match') };
    }
    result.ifNoneMatch = '*';
  }
  return { ok: true, value: result };
}

function writeReply(result: WriteResult): Reply {
  if (!result.ok) return errorReply(refusalStatus[result.error.code], result.error.message);
  const { name, revision, changed } = result.value;
  return json(200, { name, revision, changed }, etag(revision));
}

function nonNegativeInteger(query: URLSearchParams, key: string, min: number, max: number): { ok: true; value?: number } | { ok: false; reply: Reply } {
  const text = query.get(key);
  if (text === null) return { ok: true };
  if (!/^\d{1,15}$/.test(text) || Number(text) < min || Number(text) > max) {
    return { ok: false, reply: errorReply(400, `must be an integer ${min} to ${max}`, key) };
  }
  return { ok: true, value: Number(text) };
}

export function createRoutes({ store, view, metrics, denials }: RouteDependencies): Route[] {
  const policyByName: Route['handlers'] = {
    GET: ({ params }) => {
      const name = validatePolicyName(params.name);
      if (!name.ok) return errorReply(400, name.error.message, name.error.field);
      const policy = store.get(name.value);
      return policy ? json(200, policy, etag(policy.revision)) : errorReply(404, `policy "${name.value}" does not exist`);
    },
    PUT: async ({ req, params, client, body }) => {
      const name = validatePolicyName(params.name);
      if (!name.ok) return errorReply(400, name.error.message, name.error.field);
      const conditions = preconditions(req, true);
      if (!conditions.ok) return conditions.reply;
      const parsed = await body();
      if (!parsed.ok) return parsed.reply;
      const spec = validatePolicySpec(parsed.value);
      if (!spec.ok) return errorReply(400, spec.error.message, spec.error.field || 'body');
      return writeReply(await store.put(name.value, spec.value, { client, ...conditions.value }));
    },
    DELETE: async ({ req, params, client }) => {
      const name = validatePolicyName(params.name);
      if (!name.ok) return errorReply(400, name.error.message, name.error.field);
      const conditions = preconditions(req, false);
      if (!conditions.ok) return conditions.reply;
      return writeReply(await store.delete(name.value, { client, ...conditions.value }));
    },
  };

  return [
    { template: '/v1/policies', pattern: /^\/v1\/policies$/, handlers: { GET: () => json(200, store.list(), etag(store.revision)) } },
    {
      template: '/v1/policies:batch',
      pattern: /^\/v1\/policies:batch$/,
      handlers: {
        POST: async ({ client, body }) => {
          const parsed = await body();
          if (!parsed.ok) return parsed.reply;
          const request = validateBatchRequest(parsed.value);
          if (!request.ok) return errorReply(400, request.error.message, request.error.field);
          const result = await store.batch(request.value, { client });
          if (!result.ok) return errorReply(refusalStatus[result.error.code], `${result.error.message}; nothing in the batch was applied`, result.error.name);
          return json(200, { storeRevision: result.value.storeRevision, changed: result.value.changed }, etag(result.value.storeRevision));
        },
      },
    },
    { template: '/v1/policies/{name}', pattern: /^\/v1\/policies\/(?<name>[^/]+)$/, handlers: policyByName },
    { template: '/v1/nodes', pattern: /^\/v1\/nodes$/, handlers: { GET: () => json(200, view.nodes()) } },
    {
      template: '/v1/check',
      pattern: /^\/v1\/check$/,
      handlers: {
        POST: async ({ body }) => {
          const parsed = await body();
          if (!parsed.ok) return parsed.reply;
          if (isForwardCheck(parsed.value)) {
            const forward = validateForwardCheckRequest(parsed.value);
            if (!forward.ok) return errorReply(400, forward.error.message, forward.error.field);
            if (!view.checkForward) return errorReply(400, 'this control plane does not compile the forward proxy', 'listener');
            const result = view.checkForward(forward.value);
            return json(200, {
              listener: result.listener,
              ...checkAnswer(result),
              ...(result.logs !== undefined && { logs: result.logs }),
            });
          }
          const request = validateCheckRequest(parsed.value);
          if (!request.ok) return errorReply(400, request.error.message, request.error.field);
          return json(200, checkAnswer(view.check(request.value.nodeId, request.value.connection)));
        },
      },
    },
    {
      template: '/v1/history',
      pattern: /^\/v1\/history$/,
      handlers: {
        GET: async ({ query }) => {
          const limit = nonNegativeInteger(query, 'limit', 1, 1000);
          if (!limit.ok) return limit.reply;
          const since = nonNegativeInteger(query, 'since', 0, Number.MAX_SAFE_INTEGER);
          if (!since.ok) return since.reply;
          const before = nonNegativeInteger(query, 'before', 1, Number.MAX_SAFE_INTEGER);
          if (!before.ok) return before.reply;
          const unknown = [...query.keys()].find((key) => key !== 'limit' && key !== 'since' && key !== 'before');
          if (unknown !== undefined) return errorReply(400, 'unknown query parameter; expected limit, since, before', unknown);
          const revision = store.revision;
          const page = await store.history({
            ...(limit.value !== undefined ? { limit: limit.value } : {}),
            ...(since.value !== undefined ? { since: since.value } : {}),
            ...(before.value !== undefined ? { before: before.value } : {}),
          });
          return json(200, page, etag(revision));
        },
      },
    },
    ...denialRoutes(denials),
    { template: '/healthz', pattern: /^\/healthz$/, public: true, handlers: { GET: () => json(200, { status: 'ok' }) } },
    {
      template: '/readyz',
      pattern: /^\/readyz$/,
      public: true,
      handlers: {
        GET: () => {
          if (view.ready()) return json(200, { ready: true });
          const reason = view.notReadyReason?.();
          return json(503, { ready: false, ...(reason ? { reason } : {}) });
        },
      },
    },
    {
      template: '/metrics',
      pattern: /^\/metrics$/,
      handlers: {
        GET: async () => ({
          status: 200,
          text: { contentType: metrics.registry.contentType, content: await metrics.registry.metrics() },
        }),
      },
    },
    { template: '/openapi.json', pattern: /^\/openapi\.json$/, handlers: { GET: () => json(200, openApiDocument) } },
  ];
}
