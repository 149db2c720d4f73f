// The gRPC server that serves ADS: both variants on one port, within bounds
// (src/xds/limits.ts) that hold whatever the clients do.
import { Server, ServerCredentials, type ServerDuplexStream, type ServiceDefinition, type UntypedServiceImplementation, status as GrpcStatus } from '@grpc/grpc-js';
import { aggregatedDiscoveryService } from './adsService.js';
import type { StreamContext, XdsDependencies } from './adsStream.js';
import { DeltaStream } from './deltaStream.js';
import { xdsLimits, type XdsLimits } from './limits.js';
import type { NodeIdentityRule } from './nodeIdentity.js';
import { SotwStream } from './sotwStream.js';
import { StreamGuard } from './streamGuard.js';

/** PEM material for serving ADS over TLS; with clientCa, Envoys must present a certificate it signed (mTLS). */
export interface XdsTls {
  readonly certChain: Buffer;
  readonly privateKey: Buffer;
  readonly clientCa?: Buffer;
}

/** What another gRPC service served beside ADS learns of the server it joins. */
export interface ExtraServiceContext {
  readonly limits: XdsLimits;
  readonly nodeIdentity: NodeIdentityRule;
}

/**
 * A service served on the ADS port, with ADS's address and TLS (the Access Log
 * Service: Envoy reaches it through the cluster it already has for ADS).
 */
export interface ExtraService {
  readonly definition: ServiceDefinition;
  implementation(context: ExtraServiceContext): UntypedServiceImplementation;
}

export interface XdsServerOptions {
  /** Other services on the same server (src/als); they bring their own bounds. */
  readonly services?: readonly ExtraService[];
  readonly tls?: XdsTls;
  /** Defaults: DEFAULT_XDS_LIMITS. */
  readonly limits?: Partial<XdsLimits>;
  /** Where the node id must appear in the client certificate; only meaningful with tls.clientCa. Default: none. */
  readonly nodeIdentity?: NodeIdentityRule;
}

export interface XdsServer {
  /** The bound port (useful when asked for port 0). */
  readonly port: number;
  /** Streams open now (all variants). */
  openStreams(): number;
  close(): Promise<void>;
}

export async function startXdsServer(deps: XdsDependencies, address: string, options: XdsServerOptions = {}): Promise<XdsServer> {
  const limits = xdsLimits(options.limits);
  const { tls } = options;
  const nodeIdentity = options.nodeIdentity ?? { kind: 'none' };
  if (nodeIdentity.kind !== 'none' && !tls?.clientCa) {
    throw new Error(`node identity "${nodeIdentity.kind}" needs client certificates: give TLS with a client CA`);
  }
  const guard = new StreamGuard(limits.maxStreams, limits.stuckWriteMs);
  const context: StreamContext = { ...deps, limits, guard, nodeIdentity };
  const server = new Server({
    // Envoy keeps ADS streams open for days; let keepalives find dead peers.
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 10_000,
    'grpc.max_receive_message_length': limits.maxRequestBytes,
    'grpc.max_concurrent_streams': limits.maxStreamsPerConnection,
    // channelz stays on although nothing here serves it: with it off, grpc-js 1.14 does not
    // track sessions, and forceShutdown() then leaves connected clients connected.
  });
  // Shed before any state exists for the stream, as Consul does: the client backs off and retries.
  const admitted = (call: ServerDuplexStream<Buffer, Buffer>, make: () => { start(): void }) => {
    if (!guard.admit()) {
      deps.metrics.streamsRefused.inc({ reason: 'capacity' });
      call.emit('error', { code: GrpcStatus.RESOURCE_EXHAUSTED, details: `this control plane serves at most ${limits.maxStreams} ADS streams; retry later` });
      return;
    }
    make().start();
  };
  server.addService(aggregatedDiscoveryService, {
    streamAggregatedResources: (call: ServerDuplexStream<Buffer, Buffer>) =>
      admitted(call, () => new SotwStream(context, call, 'sotw')),
    deltaAggregatedResources: (call: ServerDuplexStream<Buffer, Buffer>) =>
      admitted(call, () => new DeltaStream(context, call, 'delta')),
  });
  for (const extra of options.services ?? []) server.addService(extra.definition, extra.implementation({ limits, nodeIdentity }));
  const port = await new Promise<number>((resolve, reject) => {
    const credentials = tls
      ? ServerCredentials.createSsl(tls.clientCa ?? null, [{ cert_chain: tls.certChain, private_key: tls.privateKey }], tls.clientCa !== undefined)
      : ServerCredentials.createInsecure();
    server.bindAsync(address, credentials, (error, boundPort) => (error ? reject(error) : resolve(boundPort)));
  });
  return {
    port,
    openStreams: () => guard.openStreams(),
    // ADS streams never end by themselves, so waiting for them would wait forever;
    // Envoy reconnects and is sent the current state at once.
    close: async () => {
      guard.stop();
      server.forceShutdown();
    },
  };
}
