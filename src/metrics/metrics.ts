// The Prometheus registry: every metric egress-xds exports, in one place.
// A registry per server instance (not prom-client's global) so tests can run
// several servers in one process.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { denialMetrics } from './denialMetrics.js';

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * How often the event-loop delay histogram behind the default `nodejs_eventloop_lag_*`
 * metrics samples, in ms. prom-client's default, 10 ms, is a libuv timer waking the main
 * thread 100 times a second: on this Firecracker VM ~11 ms of CPU a second for an idle
 * server (75-100 µs a wake-up), a third of what a push to 1,000 streams costs the server
 * over its window (BENCHMARKS.md, "Fan-out: the fixed CPU of a push"). At 100 ms it is
 * 10 wake-ups a second; a block of B ms still shows as a lag of at least B - 100 ms (a
 * block is seen in full when it delays a sample, and every block longer than 100 ms does).
 */
export const EVENT_LOOP_SAMPLE_MS = 100;

export function createMetrics(options: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'egress_xds_', eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  const registers = [registry];
  return {
    registry,
    connectedStreams: new Gauge({
      name: 'egress_xds_connected_streams',
      help: 'ADS streams currently open, by protocol variant',
      labelNames: ['variant'] as const,
      registers,
    }),
    responsesSent: new Counter({
      name: 'egress_xds_responses_sent_total',
      help: 'Discovery responses written to Envoy, by resource type',
      labelNames: ['type'] as const,
      registers,
    }),
    acks: new Counter({
      name: 'egress_xds_acks_total',
      help: 'Discovery requests that acknowledged a response, by resource type',
      labelNames: ['type'] as const,
      registers,
    }),
    nacks: new Counter({
      name: 'egress_xds_nacks_total',
      help: 'Discovery requests that rejected a response (error_detail set), by resource type',
      labelNames: ['type'] as const,
      registers,
    }),
    pushLatency: new Histogram({
      name: 'egress_xds_push_latency_seconds',
      help: 'Time from a policy change being committed to the response carrying it being written to a stream',
      labelNames: ['type'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    repeatedRequests: new Counter({
      name: 'egress_xds_repeated_requests_total',
      help: 'SotW discovery requests dropped undecoded: byte for byte the previous request of their stream, which changes nothing (a client repeating itself)',
      registers,
    }),
    streamsRefused: new Counter({
      name: 'egress_xds_streams_refused_total',
      help: 'ADS streams the server refused or reset: capacity (too many streams), node_id (missing or too long), identity (node id not in the client certificate), stuck (the client did not read), malformed (a request that does not decode), request_size (a request beyond the size bound)',
      labelNames: ['reason'] as const,
      registers,
    }),
    streamsRead: new Counter({
      name: 'egress_xds_streams_read_total',
      help: 'ADS streams by how their requests were read: direct (off the HTTP/2 stream, src/xds/requestReader.ts) or call (through grpc-js: compressed requests, or a grpc-js that does not keep its state where the reader looks)',
      labelNames: ['path'] as const,
      registers,
    }),
    configRevision: new Gauge({
      name: 'egress_xds_config_revision',
      help: 'Revision of the policy set currently served (increases on every committed change)',
      registers,
    }),
    policyCount: new Gauge({ name: 'egress_xds_policies', help: 'Policies currently stored', registers }),
    // Group commit at work (file store): commits_total / fsyncs_total is the mean number of commits per fsync.
    storeCommits: new Counter({ name: 'egress_xds_store_commits_total', help: 'Commits the file store made durable', registers }),
    storeFsyncs: new Counter({ name: 'egress_xds_store_fsyncs_total', help: 'Appends + fdatasyncs of the file store log (one per group of commits)', registers }),
    storeReady: new Gauge({
      name: 'egress_xds_store_ready',
      help: '1 when the policy store takes writes and its view is current (with etcd: etcd answers and the watch runs), else 0',
      registers,
    }),
    adminRequests: new Counter({
      name: 'egress_xds_admin_requests_total',
      help: 'Admin API requests, by route and status code',
      labelNames: ['route', 'method', 'status'] as const,
      registers,
    }),
    ...denialMetrics(registers),
  };
}

/** Short label for a type URL: "Listener", "Cluster". */
export const typeLabel = (typeUrl: string): string => typeUrl.slice(typeUrl.lastIndexOf('.') + 1);
