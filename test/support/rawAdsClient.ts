// An ADS client on a bare HTTP/2 stream, for clients grpc-js will not be:
// one that never reads what it is sent (its stream is paused, so HTTP/2 flow
// control stops the server's writes), several streams on one connection, and
// requests written as fast as the socket takes them. Requests are encoded
// with the generated schemas and framed as gRPC messages by hand.
import { connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { create, toBinary } from '@bufbuild/protobuf';
import {
  DeltaDiscoveryRequestSchema,
  DiscoveryRequestSchema,
  type DeltaDiscoveryRequest,
  type DiscoveryRequest,
} from '../../src/gen/envoy/service/discovery/v3/discovery_pb.js';
import type { MessageInitShape } from '@bufbuild/protobuf';

const SERVICE = '/envoy.service.discovery.v3.AggregatedDiscoveryService';

export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

export const sotwRequest = (init: MessageInitShape<typeof DiscoveryRequestSchema>): Buffer =>
  grpcFrame(toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, init) as DiscoveryRequest));

export const deltaRequest = (init: MessageInitShape<typeof DeltaDiscoveryRequestSchema>): Buffer =>
  grpcFrame(toBinary(DeltaDiscoveryRequestSchema, create(DeltaDiscoveryRequestSchema, init) as DeltaDiscoveryRequest));

export interface RawStream {
  readonly stream: ClientHttp2Stream;
  /** grpc-status from the trailers (or the response headers of a trailers-only answer), once known. */
  status(): number | undefined;
  /** Bytes received (0 while the stream is paused and never read). */
  received(): number;
  /** Complete gRPC messages received. */
  messages(): number;
  /** Resolves when the server closed or reset the stream. */
  readonly ended: Promise<void>;
}

export class RawAdsConnection {
  readonly session: ClientHttp2Session;

  constructor(address: string) {
    this.session = connect(`http://${address}`);
    this.session.on('error', () => {});
  }

  /** Opens a stream; read: false leaves it paused forever (the client that does not read). */
  open(variant: 'sotw' | 'delta', options: { read: boolean }): RawStream {
    const stream = this.session.request({
      ':method': 'POST',
      ':path': `${SERVICE}/${variant === 'sotw' ? 'StreamAggregatedResources' : 'DeltaAggregatedResources'}`,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    let status: number | undefined;
    let received = 0;
    let messages = 0;
    let pending = Buffer.alloc(0);
    const count = (chunk: Buffer) => {
      received += chunk.length;
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
        pending = pending.subarray(5 + pending.readUInt32BE(1));
        messages += 1;
      }
    };
    const takeStatus = (headers: Record<string, unknown>) => {
      if (headers['grpc-status'] !== undefined) status = Number(headers['grpc-status']);
    };
    stream.on('response', takeStatus);
    stream.on('trailers', takeStatus);
    stream.on('error', () => {});
    if (options.read) stream.on('data', count);
    else stream.pause();
    const ended = new Promise<void>((resolve) => stream.once('close', () => resolve()));
    return { stream, status: () => status, received: () => received, messages: () => messages, ended };
  }

  close(): void {
    this.session.destroy();
  }
}
