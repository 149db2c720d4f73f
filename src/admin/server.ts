// The admin HTTP server (node:http, no framework). Per request, in order:
// probes skip auth; otherwise a missing or wrong token is 401 before anything
// is read; unknown path 404; wrong method 405 with Allow; then the handler.
// Every request is counted in egress_xds_admin_requests_total by route
// template (never the raw path: bounded label values) and status.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import type { PolicyStore } from '../store/policyStore.js';
import { StoreError } from '../store/storeError.js';
import { createTokenCheck, requireTokenUnlessLoopback } from './auth.js';
import { createHostCheck, type HostCheck } from './hostCheck.js';
import type { ControlPlaneView } from './controlPlaneView.js';
import type { DenialsView } from './denialRoutes.js';
import { DEFAULT_BODY_LIMIT, errorReply, readJsonBody, send, type Reply } from './httpIo.js';
import { createRoutes, type Method, type Route } from './routes.js';

export interface AdminServerOptions {
  readonly store: PolicyStore;
  readonly view: ControlPlaneView;
  readonly metrics: Metrics;
  /** The bearer token; required to listen on a non-loopback address. */
  readonly token?: string;
  readonly logger: Logger;
  /** The denial log (src/denials) behind /v1/denials and the console. */
  readonly denials?: DenialsView;
  /** Largest request body accepted (default 1 MiB). */
  readonly bodyLimit?: number;
  /** Host names accepted besides the listen address (--admin-allowed-host); "*" accepts any. */
  readonly allowedHosts?: readonly string[];
}

export interface AdminServer {
  /** Starts listening; port 0 picks a free port. Refuses a non-loopback host without a token. */
  listen(host: string, port: number): Promise<AddressInfo>;
  /** Stops accepting, lets in-flight requests finish (up to 5 s), then closes. */
  close(): Promise<void>;
  /** What the server serves, for the OpenAPI coverage test. */
  readonly routes: ReadonlyArray<{ readonly template: string; readonly methods: readonly Method[]; readonly public: boolean }>;
}

const METHODS: readonly string[] = ['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS'];
/** Probes and scrapes are frequent; they log at debug. */
const QUIET = new Set(['/healthz', '/readyz', '/metrics']);

/** The first route whose pattern matches, without trying the rest. */
function matchRoute(routes: readonly Route[], path: string): { r: Route; match: RegExpExecArray } | undefined {
  for (const r of routes) {
    const match = r.pattern.exec(path);
    if (match) return { r, match };
  }
  return undefined;
}

function clientOf(req: IncomingMessage, identity: string | undefined): string {
  const parts = [req.socket.remoteAddress ?? 'unknown'];
  if (identity) parts.push(identity);
  const agent = req.headers['user-agent'];
  if (agent) parts.push(`agent:${JSON.stringify(agent.slice(0, 200))}`);
  return parts.join(' ');
}

export function createAdminServer(options: AdminServerOptions): AdminServer {
  const { store, view, metrics, token } = options;
  const logger = options.logger.child({ component: 'admin' });
  const bodyLimit = options.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const tokenCheck = createTokenCheck(token);
  const routes = createRoutes({ store, view, metrics, ...(options.denials ? { denials: options.denials } : {}) });
  // Set by listen(): the check needs the address served.
  let hostCheck: HostCheck | undefined;

  // Keep the gauges on the store, whoever writes to it (API or policy file).
  metrics.policyCount.set(store.count());
  metrics.configRevision.set(store.revision);
  // The store's group-commit totals, as counters: increments since the last look.
  let synced = { commits: 0, fsyncs: 0 };
  const syncGroupCommit = () => {
    const now = store.groupCommit?.();
    if (!now) return;
    metrics.storeCommits.inc(now.commits - synced.commits);
    metrics.storeFsyncs.inc(now.fsyncs - synced.fsyncs);
    synced = now;
  };
  syncGroupCommit();
  // Taken once per burst of commits, not per commit.
  let countPending: NodeJS.Immediate | undefined;
  const unsubscribe = store.onChange((change) => {
    metrics.configRevision.set(change.revision);
    countPending ??= setImmediate(() => {
      countPending = undefined;
      metrics.policyCount.set(store.count());
      syncGroupCommit();
    });
  });
  const stopWatching = () => {
    unsubscribe();
    if (countPending) clearImmediate(countPending);
  };

  async function route(req: IncomingMessage, path: string, query: URLSearchParams): Promise<{ template: string; reply: Reply }> {
    const method = req.method ?? 'GET';
    const found = matchRoute(routes, path);
    const misdirected = hostCheck?.refuse(req.headers.host, req.headers.origin);
    if (misdirected) return { template: found?.r.template ?? 'unmatched', reply: misdirected };
    if (!found?.r.public && !tokenCheck.allows(req.headers.authorization)) {
      return {
        template: found?.r.template ?? 'unmatched',
        reply: errorReply(401, 'a valid "Authorization: Bearer TOKEN" header is required', undefined, { 'www-authenticate': 'Bearer realm="egress-xds"' }),
      };
    }
    if (!found) return { template: 'unmatched', reply: errorReply(404, `no route for ${path}; see /openapi.json`) };
    const { r, match } = found;
    const handler = r.handlers[(method === 'HEAD' ? 'GET' : method) as Method];
    if (!handler) {
      const allow = Object.keys(r.handlers).flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m])).join(', ');
      return { template: r.template, reply: errorReply(405, `${method} is not allowed on ${r.template}; allowed: ${allow}`, undefined, { allow }) };
    }
    const params: Record<string, string> = {};
    for (const [key, value] of Object.entries(match.groups ?? {})) {
      try {
        params[key] = decodeURIComponent(value);
      } catch {
        return { template: r.template, reply: errorReply(400, 'is not valid percent-encoding', key) };
      }
    }
    const reply = await handler({
      req,
      params,
      query,
      client: clientOf(req, tokenCheck.identity),
      body: () => readJsonBody(req, bodyLimit),
    });
    return { template: r.template, reply };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const method = METHODS.includes(req.method ?? '') ? req.method! : 'OTHER';
    let template = 'unmatched';
    let reply: Reply;
    try {
      // Split by hand: new URL() would read "//x/v1/..." as host "x".
      const target = req.url ?? '/';
      const question = target.indexOf('?');
      const path = question < 0 ? target : target.slice(0, question);
      const query = new URLSearchParams(question < 0 ? '' : target.slice(question + 1));
      const routed = await route(req, path, query);
      template = routed.template;
      reply = routed.reply;
    } catch (error) {
      if (error instanceof StoreError) {
        logger.error('admin: store unavailable', { method, route: template, error });
        reply = errorReply(503, `the policy store is unavailable: ${error.message}`);
      } else {
        logger.error('admin: request failed', { method, route: template, error });
        reply = errorReply(500, 'internal error; see the server log');
      }
    }
    send(res, reply);
    metrics.adminRequests.inc({ route: template, method, status: String(reply.status) });
    const fields = {
      method,
      route: template,
      status: reply.status,
      ms: Number(process.hrtime.bigint() - started) / 1e6,
      remote: req.socket.remoteAddress,
    };
    if (QUIET.has(template) && reply.status < 400) logger.debug('admin request', fields);
    else logger.info('admin request', fields);
  }

  const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => {
    void handle(req, res);
  });
  server.keepAliveTimeout = 5_000;

  return {
    routes: routes.map((r) => ({ template: r.template, methods: Object.keys(r.handlers) as Method[], public: r.public === true })),
    listen(host, port) {
      const allowed = requireTokenUnlessLoopback(host, token);
      if (!allowed.ok) return Promise.reject(new Error(allowed.error.message));
      hostCheck = createHostCheck(host, options.allowedHosts);
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const address = server.address() as AddressInfo;
          logger.info('admin API listening', { address: address.address, port: address.port, auth: token ? 'bearer token' : 'none (loopback)' });
          resolve(address);
        });
      });
    },
    async close() {
      stopWatching();
      if (!server.listening) return;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), 5_000);
      await closed;
      clearTimeout(timer);
    },
  };
}
