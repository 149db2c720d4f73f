// envoy.service.discovery.v3.AggregatedDiscoveryService for grpc-js. Requests
// arrive decoded; responses leave as the bytes src/xds/wire.ts assembled.
import type { ServiceDefinition } from '@grpc/grpc-js';
import type { DeltaDiscoveryRequest, DiscoveryRequest } from '../gen/envoy/service/discovery/v3/discovery_pb.js';
import { decodeDeltaDiscoveryRequest, decodeDiscoveryRequest } from './wire.js';

const SERVICE = '/envoy.service.discovery.v3.AggregatedDiscoveryService';
const passBytes = (bytes: Buffer): Buffer => bytes;

export const aggregatedDiscoveryService = {
  streamAggregatedResources: {
    path: `${SERVICE}/StreamAggregatedResources`,
    requestStream: true,
    responseStream: true,
    requestSerialize: (): Buffer => {
      throw new Error('server-side definition: requests are never serialized here');
    },
    requestDeserialize: (bytes: Buffer): DiscoveryRequest => decodeDiscoveryRequest(bytes),
    responseSerialize: passBytes,
    responseDeserialize: passBytes,
  },
  deltaAggregatedResources: {
    path: `${SERVICE}/DeltaAggregatedResources`,
    requestStream: true,
    responseStream: true,
    requestSerialize: (): Buffer => {
      throw new Error('server-side definition: requests are never serialized here');
    },
    requestDeserialize: (bytes: Buffer): DeltaDiscoveryRequest => decodeDeltaDiscoveryRequest(bytes),
    responseSerialize: passBytes,
    responseDeserialize: passBytes,
  },
} satisfies ServiceDefinition;
