// How a stream's requests arrive. Through grpc-js, each request message costs
// a trace string, a pause of the HTTP/2 stream, an async decompression step (a
// promise and a microtask, for identity too), a queue entry, the object-mode
// push and 'data' event of the call's Readable, and a resume of the HTTP/2
// stream on a later tick. A push is answered by one ACK per stream, so at 1,000
// streams that path was the largest part of a push's main-thread CPU
// (BENCHMARKS.md, "Fan-out: the request path").
//
// So, like responses (src/xds/responseWriter.ts), requests skip it where they
// can: when the HTTP/2 stream is reachable, its messages are not compressed
// (grpc-encoding identity, as Envoy sends them) and grpc-js has read none of
// them yet, the reader takes the stream's DATA itself (callTransport.ts
// removes grpc-js's data listener), splits the gRPC frames (the same 5-byte
// prefix, the same size bound) and hands each message over in the same turn.
// grpc-js keeps the rest of the call: headers, status and trailers, deadlines,
// cancellation, keepalive. Otherwise the requests come through the call.
import { type ServerDuplexStream, status as GrpcStatus } from '@grpc/grpc-js';
import { takeRequestData } from './callTransport.js';
import { GRPC_FRAME_HEADER_BYTES as PREFIX_BYTES } from './wire.js';

export interface RequestHandlers {
  /**
   * One request message. A view into a buffer of the reader's or of Node's that
   * is never written again: it may be kept.
   */
  message(bytes: Buffer): void;
  /** The client half-closed the stream: no more requests. */
  end(): void;
  /** A request the reader refuses; none are handed over after it. The caller ends the call with this status. */
  refuse(reason: 'request_size' | 'malformed', code: GrpcStatus, details: string): void;
}

/**
 * gRPC's length-prefixed messages out of the DATA chunks of a stream, however
 * the chunks cut them: a message inside one chunk is handed over as a view of
 * it (an ACK fits in one DATA frame); one that spans chunks is gathered into a
 * buffer of its own, allocated once its length is known and within the bound.
 */
export class GrpcMessageSplitter {
  private readonly prefix = Buffer.alloc(PREFIX_BYTES);
  private prefixFilled = 0;
  private body: Buffer | undefined;
  private bodyFilled = 0;
  private bodyCompressed = false;

  constructor(private readonly maxMessageBytes: number) {}

  /**
   * Hands every message the chunk completes to onMessage (with its compressed
   * flag). Returns the declared length of a message beyond the bound, which is
   * not read (and nothing after it should be fed), else undefined.
   */
  write(chunk: Buffer, onMessage: (message: Buffer, compressed: boolean) => void): number | undefined {
    const end = chunk.length;
    let at = 0;
    while (at < end) {
      const body = this.body;
      if (body !== undefined) {
        const take = Math.min(body.length - this.bodyFilled, end - at);
        chunk.copy(body, this.bodyFilled, at, at + take);
        this.bodyFilled += take;
        at += take;
        if (this.bodyFilled === body.length) {
          this.body = undefined;
          onMessage(body, this.bodyCompressed);
        }
        continue;
      }
      let length: number;
      let compressed: boolean;
      if (this.prefixFilled === 0 && end - at >= PREFIX_BYTES) {
        compressed = chunk[at] !== 0;
        length = chunk.readUInt32BE(at + 1);
        at += PREFIX_BYTES;
        if (length > this.maxMessageBytes) return length;
        if (end - at >= length) {
          onMessage(chunk.subarray(at, at + length), compressed);
          at += length;
          continue;
        }
      } else {
        const take = Math.min(PREFIX_BYTES - this.prefixFilled, end - at);
        chunk.copy(this.prefix, this.prefixFilled, at, at + take);
        this.prefixFilled += take;
        at += take;
        if (this.prefixFilled < PREFIX_BYTES) return undefined;
        this.prefixFilled = 0;
        compressed = this.prefix[0] !== 0;
        length = this.prefix.readUInt32BE(1);
        if (length > this.maxMessageBytes) return length;
        if (length === 0) {
          onMessage(Buffer.alloc(0), compressed);
          continue;
        }
      }
      this.body = Buffer.allocUnsafe(length);
      this.bodyFilled = 0;
      this.bodyCompressed = compressed;
    }
    return undefined;
  }
}

/**
 * Starts delivering the call's request messages to the handlers; says which way
 * they come ('direct' from the HTTP/2 stream, or through the grpc-js 'call').
 * Call once, from the method handler, before anything reads the call.
 */
export function readRequests(call: ServerDuplexStream<Buffer, unknown>, maxMessageBytes: number, handlers: RequestHandlers): 'direct' | 'call' {
  const http2 = takeRequestData(call);
  if (!http2) {
    call.on('data', (bytes: Buffer) => handlers.message(bytes));
    call.on('end', () => handlers.end());
    return 'call';
  }
  const splitter = new GrpcMessageSplitter(maxMessageBytes);
  let refused = false;
  const onMessage = (message: Buffer, compressed: boolean): void => {
    if (refused) return;
    if (compressed) {
      // The gRPC protocol: a compressed flag with no grpc-encoding is a protocol error.
      refused = true;
      handlers.refuse('malformed', GrpcStatus.INTERNAL, 'a request message is flagged compressed, but the stream declared no grpc-encoding');
      return;
    }
    handlers.message(message);
  };
  http2.on('data', (chunk: Buffer) => {
    if (refused) return;
    const tooLarge = splitter.write(chunk, onMessage);
    if (tooLarge !== undefined && !refused) {
      refused = true;
      handlers.refuse('request_size', GrpcStatus.RESOURCE_EXHAUSTED, `a discovery request of ${tooLarge} bytes; at most ${maxMessageBytes} are accepted`);
    }
  });
  http2.on('end', () => {
    if (!refused) handlers.end();
  });
  // grpc-js paused the stream until the call is first read; nothing reads the call now.
  http2.resume();
  return 'direct';
}
