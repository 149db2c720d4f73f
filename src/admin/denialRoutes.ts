// GET /v1/denials (and ?follow=1, server-sent events), /v1/denials/summary,
// /v1/denials/suggest, and the web console at /. The denial log itself is
// src/denials; this turns requests into its queries and its records into
// JSON or an event stream.
import { readFileSync, existsSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isIP } from 'node:net';
import type { DenialLog } from '../denials/denialLog.js';
import { denialMatcher, parseDenialFilter, parseSince, MAX_LIMIT } from '../denials/query.js';
import { draftPolicy, newEntries } from '../denials/suggest.js';
import type { StoredDenial } from '../denials/buffer.js';
import type { Connection, Policy } from '../policy/model.js';
import type { CheckResult } from './controlPlaneView.js';
import { errorReply, json, type Reply } from './httpIo.js';
import type { Route } from './routes.js';

/** What the denial routes need of the running control plane. */
export interface DenialsView {
  readonly log: DenialLog;
  /** The policies that select the node now. */
  policiesFor(nodeId: string): readonly Policy[];
  /** Verdicts under the node's policies, plus `extra` when given (compiled and checked as Envoy would). */
  check(nodeId: string, connections: readonly Connection[], extra?: Policy): CheckResult[];
}

const HEARTBEAT_MS = 15_000;
/** A follower further behind than this many unsent bytes is dropped (it can reconnect with Last-Event-ID). */
const FOLLOW_BACKLOG_BYTES = 1024 * 1024;

const eventOf = (record: StoredDenial): string => `id: ${record.seq}\nevent: denial\ndata: ${JSON.stringify(record)}\n\n`;

function follow(log: DenialLog, query: URLSearchParams, lastEventId: string | undefined): Reply {
  const filter = parseDenialFilter(query, Date.now(), 0);
  if (!filter.ok) return errorReply(400, filter.error.message, filter.error.field);
  const after = lastEventId !== undefined && /^\d{1,15}$/.test(lastEventId) ? Number(lastEventId) : undefined;
  // The backlog: the last `limit` matches (or all since Last-Event-ID, up to MAX_LIMIT), oldest first.
  const backlog = after !== undefined
    ? log.query({ ...filter.value, limit: MAX_LIMIT }).filter((r) => r.seq > after)
    : log.query(filter.value);
  backlog.reverse();
  let res: ServerResponse | undefined;
  const matches = denialMatcher(filter.value);
  const added = log.follow({
    matches,
    push: (record) => {
      if (!res || res.destroyed) return true;
      res.write(eventOf(record));
      return res.writableLength < FOLLOW_BACKLOG_BYTES;
    },
    end: (why) => {
      if (!res || res.destroyed) return;
      res.end(why === 'slow' ? 'event: error\ndata: {"error":{"message":"too far behind: reconnect with Last-Event-ID"}}\n\n' : '');
    },
  });
  if (!added.ok) return errorReply(503, `at most ${added.max} live denial streams at once; retry later`, undefined, { 'retry-after': '5' });
  return {
    status: 200,
    stream: (response) => {
      res = response;
      response.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        'x-accel-buffering': 'no',
        connection: 'keep-alive',
      });
      response.write(`retry: 2000\n: egress-xds denials; ${log.buffer.size()} buffered\n\n`);
      for (const record of backlog) response.write(eventOf(record));
      const heartbeat = setInterval(() => response.write(': keepalive\n\n'), HEARTBEAT_MS);
      heartbeat.unref();
      response.on('close', () => {
        clearInterval(heartbeat);
        added.stop();
      });
    },
  };
}

function suggest(view: DenialsView, query: URLSearchParams): Reply {
  for (const key of query.keys()) {
    if (!['node', 'source', 'since'].includes(key)) return errorReply(400, 'unknown query parameter; expected node, source, since', key);
  }
  const node = query.get('node');
  if (!node) return errorReply(400, 'is required: the node whose denials to draft from', 'node');
  const source = query.get('source');
  if (!source || !isIP(source)) return errorReply(400, 'is required: the source IP (the microVM) to draft a policy for', 'source');
  const sinceText = query.get('since') ?? '1h';
  const sinceMs = parseSince(sinceText, Date.now());
  if (sinceMs === undefined) return errorReply(400, `must be an ISO 8601 time or a duration such as 15m, 1h, 2d; got "${sinceText}"`, 'since');
  const records = view.log.query({ node, source, sinceMs, verdicts: ['denied', 'would-deny'], limit: MAX_LIMIT });
  const draft = draftPolicy(records, { node, source });
  const inForce = view.policiesFor(node);
  const policy: Policy = { name: draft.name, ...draft.spec };
  const connections = draft.connections.map((c) => c.connection);
  const before = connections.length > 0 ? view.check(node, connections) : [];
  const after = connections.length > 0 ? view.check(node, connections, policy) : [];
  const verdictOf = (r: CheckResult | undefined) => ({ verdict: r?.verdict ?? 'deny', ...(r?.policy ? { policy: r.policy } : {}) });
  const effects = draft.connections.map((c, i) => ({ ...c, before: verdictOf(before[i]), after: verdictOf(after[i]) }));
  return json(200, {
    node,
    source,
    since: new Date(sinceMs).toISOString(),
    name: draft.name,
    policy: draft.spec,
    records: draft.used,
    leftOut: draft.leftOut,
    inForce: inForce.map((p) => p.name),
    adds: newEntries(draft.spec, inForce),
    effects,
    newlyAllowed: effects.filter((e) => e.before.verdict === 'deny' && e.after.verdict === 'allow').length,
    stillDenied: effects.filter((e) => e.after.verdict === 'deny').length,
  });
}

let consoleHtml: string | undefined;

/** web/console.html at the repository (or package) root, found from this module wherever it was built to. */
function loadConsole(): string {
  if (consoleHtml !== undefined) return consoleHtml;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'web', 'console.html');
    if (existsSync(candidate)) return (consoleHtml = readFileSync(candidate, 'utf8'));
    dir = dirname(dir);
  }
  throw new Error('web/console.html is missing from the installation');
}

const CONSOLE_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'referrer-policy': 'no-referrer',
};

export function denialRoutes(view: DenialsView | undefined): Route[] {
  const off = () => errorReply(503, 'the denial log is not running in this server');
  return [
    {
      template: '/v1/denials',
      pattern: /^\/v1\/denials$/,
      handlers: {
        GET: ({ query, req }) => {
          if (!view) return off();
          const followText = query.get('follow');
          if (followText !== null && followText !== '1' && followText !== '0') return errorReply(400, 'must be 1 (a live stream) or 0', 'follow');
          if (followText === '1') {
            const last = req.headers['last-event-id'];
            return follow(view.log, query, typeof last === 'string' ? last : undefined);
          }
          const filter = parseDenialFilter(query, Date.now());
          if (!filter.ok) return errorReply(400, filter.error.message, filter.error.field);
          return json(200, { denials: view.log.query(filter.value), buffered: view.log.buffer.size() });
        },
      },
    },
    {
      template: '/v1/denials/summary',
      pattern: /^\/v1\/denials\/summary$/,
      handlers: {
        GET: ({ query }) => {
          if (!view) return off();
          if (query.has('follow') || query.has('limit')) return errorReply(400, 'the summary takes node, source, destination, since, verdict', query.has('follow') ? 'follow' : 'limit');
          const filter = parseDenialFilter(query, Date.now());
          if (!filter.ok) return errorReply(400, filter.error.message, filter.error.field);
          return json(200, { sources: view.log.summary(filter.value) });
        },
      },
    },
    {
      template: '/v1/denials/suggest',
      pattern: /^\/v1\/denials\/suggest$/,
      handlers: { GET: ({ query }) => (view ? suggest(view, query) : off()) },
    },
    {
      template: '/',
      pattern: /^\/$/,
      // The page holds no data: it asks for the token and sends it on every API call (browsers cannot add a bearer header to a navigation).
      public: true,
      handlers: { GET: () => ({ status: 200, text: { contentType: 'text/html; charset=utf-8', content: loadConsole() }, headers: CONSOLE_HEADERS }) },
    },
  ];
}
