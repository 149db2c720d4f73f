// How a stream's responses reach the wire. grpc-js's call.write copies every
// message into a new buffer behind gRPC's 5-byte prefix (serializeMessage:
// allocUnsafe(5 + n), then a copy), and a push writes the same shared
// response to every stream of a group: at 10,000 streams that is 10,000
// allocations and copies of one listener per push, with the garbage collection
// they cause, the largest items of the push profile (BENCHMARKS.md, fan-out).
// Once grpc-js has sent a call's response headers, a gRPC message on its
// HTTP/2 stream is nothing but DATA carrying the prefixed bytes, so a response
// framed once (src/xds/wire.ts) is written to each HTTP/2 stream as is: Node
// queues the buffer itself, no copy. grpc-js still owns the call: the headers,
// the status and trailers when it ends (queued behind what was written here),
// resets, cancellation. All of a stream's responses go one way or the other,
// never both, so their order holds. Where the HTTP/2 stream is not reachable
// (a grpc-js that does not keep it where callTransport.ts looks) or grpc-js did
// not send the headers at once, every response goes through call.write.
import { Metadata, type ServerDuplexStream } from '@grpc/grpc-js';
import { http2StreamOf } from './callTransport.js';
import { grpcFramed } from './wire.js';

export type WriteDone = (error?: Error | null) => void;

export interface ResponseWriter {
  /**
   * message: the encoded DiscoveryResponse; framed: the same bytes behind the
   * gRPC prefix when the caller has them (shared responses), else framed here.
   * done runs once HTTP/2 took the bytes (flow control lets a client that does
   * not read hold them back), with an error when they will never be sent.
   */
  write(message: Buffer, framed: Buffer | undefined, done: WriteDone): void;
  /** 'direct' once responses go to the HTTP/2 stream, 'call' through call.write, undefined before the first. */
  readonly path: 'direct' | 'call' | undefined;
}

const notSent = (done: WriteDone) => process.nextTick(done, new Error('the stream is closed'));

export function responseWriter(call: ServerDuplexStream<unknown, Buffer>): ResponseWriter {
  let path: 'direct' | 'call' | undefined;
  const http2 = http2StreamOf(call);
  return {
    get path() {
      return path;
    },
    write(message, framed, done) {
      if (path === undefined) {
        // Decided at the first response, before any was written either way.
        if (http2 && !http2.destroyed && !http2.headersSent) call.sendMetadata(new Metadata());
        path = http2?.headersSent === true ? 'direct' : 'call';
      }
      if (path === 'call') {
        call.write(message, done);
        return;
      }
      // A write after end() would make the HTTP/2 stream emit an error nobody listens for.
      if (http2!.destroyed || http2!.writableEnded) {
        notSent(done);
        return;
      }
      http2!.write(framed ?? grpcFramed(message), done);
    },
  };
}
