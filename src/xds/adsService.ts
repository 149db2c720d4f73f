// envoy.service.discovery.v3.AggregatedDiscoveryService for grpc-js. Requests
// arrive decoded; responses leave as the bytes src/xds/wire.ts assembled.
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import type { DeltaDiscoveryRequest, DiscoveryRequest } from '../gen/envoy/service/discovery/v3/discovery_pb.js';
import { decodeDeltaDiscoveryRequest, decodeDiscoveryRequest } from './wire.js';

const SERVICE = '/envoy.service.discovery.v3.AggregatedDiscoveryService';
const passBytes = (bytes: Buffer): Buffer => bytes;

function bidiStreamingMethod<Request>(name: string, decode: (bytes: Buffer) => Request): MethodDefinition<Request, Buffer> {
  return {
    path: `${SERVICE}/${name}`,
    requestStream: true,
    responseStream: true,
    requestSerialize: () => {
      throw new Error('server-side definition: requests are never serialized here');
    },
    requestDeserialize: decode,
    responseSerialize: passBytes,
    responseDeserialize: passBytes,
  };
}

export const aggregatedDiscoveryService = {
  streamAggregatedResources: bidiStreamingMethod<DiscoveryRequest>('StreamAggregatedResources', decodeDiscoveryRequest),
  deltaAggregatedResources: bidiStreamingMethod<DeltaDiscoveryRequest>('DeltaAggregatedResources', decodeDeltaDiscoveryRequest),
} satisfies ServiceDefinition;
