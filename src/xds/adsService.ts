// envoy.service.discovery.v3.AggregatedDiscoveryService for grpc-js. Requests
// arrive as bytes, decoded by their stream (src/xds/adsStream.ts: a request
// that repeats the previous one byte for byte is dropped before any decoding);
// responses leave as the bytes src/xds/wire.ts assembled.
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';

const SERVICE = '/envoy.service.discovery.v3.AggregatedDiscoveryService';
const passBytes = (bytes: Buffer): Buffer => bytes;

function bidiStreamingMethod(name: string): MethodDefinition<Buffer, Buffer> {
  return {
    path: `${SERVICE}/${name}`,
    requestStream: true,
    responseStream: true,
    requestSerialize: () => {
      throw new Error('server-side definition: requests are never serialized here');
    },
    requestDeserialize: passBytes,
    responseSerialize: passBytes,
    responseDeserialize: passBytes,
  };
}

export const aggregatedDiscoveryService = {
  streamAggregatedResources: bidiStreamingMethod('StreamAggregatedResources'),
  deltaAggregatedResources: bidiStreamingMethod('DeltaAggregatedResources'),
} satisfies ServiceDefinition;
