// The gRPC server that serves ADS: both variants on one port.
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import type { DeltaDiscoveryRequest, DiscoveryRequest } from '../gen/envoy/service/discovery/v3/discovery_pb.js';
import { aggregatedDiscoveryService } from './adsService.js';
import type { XdsDependencies } from './adsStream.js';
import { DeltaStream } from './deltaStream.js';
import { SotwStream } from './sotwStream.js';

/** PEM material for serving ADS over TLS; with clientCa, Envoys must present a certificate it signed (mTLS). */
export interface XdsTls {
  readonly certChain: Buffer;
  readonly privateKey: Buffer;
  readonly clientCa?: Buffer;
}

export interface XdsServer {
  /** The bound port (useful when asked for port 0). */
  readonly port: number;
  close(): Promise<void>;
}

export async function startXdsServer(deps: XdsDependencies, address: string, tls?: XdsTls): Promise<XdsServer> {
  const server = new Server({
    // Envoy keeps ADS streams open for days; let keepalives find dead peers.
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 10_000,
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
  });
  server.addService(aggregatedDiscoveryService, {
    streamAggregatedResources: (call: ServerDuplexStream<DiscoveryRequest, Buffer>) => new SotwStream(deps, call, 'sotw').start(),
    deltaAggregatedResources: (call: ServerDuplexStream<DeltaDiscoveryRequest, Buffer>) => new DeltaStream(deps, call, 'delta').start(),
  });
  const port = await new Promise<number>((resolve, reject) => {
    const credentials = tls
      ? ServerCredentials.createSsl(tls.clientCa ?? null, [{ cert_chain: tls.certChain, private_key: tls.privateKey }], tls.clientCa !== undefined)
      : ServerCredentials.createInsecure();
    server.bindAsync(address, credentials, (error, boundPort) => (error ? reject(error) : resolve(boundPort)));
  });
  return {
    port,
    // ADS streams never end by themselves, so waiting for them would wait forever;
    // Envoy reconnects and is sent the current state at once.
    close: async () => server.forceShutdown(),
  };
}
