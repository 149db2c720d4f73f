// The HTTP/2 stream under a grpc-js server call. grpc-js offers no way to
// reset a call whose client stopped reading: ending it queues the status
// behind the very data the client does not read. Resetting the HTTP/2 stream
// (RST_STREAM) frees what is buffered at once. grpc-js 1.14 keeps that stream
// on the call it hands to the handler (`call.call.stream`); when a future
// version does not, this returns undefined and the caller falls back to
// destroying the call object (test/xds/hostile.test.ts pins the installed one).
// The same stream carries the responses written without grpc-js's copy
// (responseWriter.ts) and the requests read without its per-message path
// (requestReader.ts); every use falls back to the call when the stream or the
// state it checks is not where grpc-js 1.14 keeps it
// (test/xds/responseWriter.test.ts and requestReader.test.ts pin those paths).
import { constants, type ServerHttp2Stream } from 'node:http2';

function isHttp2Stream(value: unknown): value is ServerHttp2Stream {
  return typeof value === 'object' && value !== null && typeof (value as ServerHttp2Stream).close === 'function' && 'session' in value && 'rstCode' in value;
}

/** What grpc-js 1.14 keeps on the object under a server call (BaseServerInterceptingCall), as far as this file reads it. */
interface GrpcServerCallInternals {
  stream?: unknown;
  /** The request messages grpc-js has read and not yet handed over. */
  readQueue?: unknown;
  /** The request's grpc-encoding ('identity' when its messages are not compressed). */
  incomingEncoding?: unknown;
}

function callInternalsOf(call: object): GrpcServerCallInternals | undefined {
  const inner = (call as { call?: GrpcServerCallInternals & { nextCall?: GrpcServerCallInternals } }).call;
  return inner?.stream !== undefined ? inner : inner?.nextCall;
}

export function http2StreamOf(call: object): ServerHttp2Stream | undefined {
  const stream = callInternalsOf(call)?.stream;
  return isHttp2Stream(stream) ? stream : undefined;
}

/**
 * The HTTP/2 stream of a call whose request messages the caller will read
 * itself (src/xds/requestReader.ts), with grpc-js's reading of DATA removed:
 * only when the requests are not compressed, grpc-js has read none of them
 * yet (it pauses the stream until the call is first read), and its one data
 * listener is there to remove. Otherwise undefined, and nothing changed: the
 * call reads its requests as grpc-js does.
 */
export function takeRequestData(call: object): ServerHttp2Stream | undefined {
  const internals = callInternalsOf(call);
  const stream = internals?.stream;
  if (!internals || !isHttp2Stream(stream) || stream.destroyed || stream.readableEnded) return undefined;
  if (internals.incomingEncoding !== 'identity') return undefined;
  if (!Array.isArray(internals.readQueue) || internals.readQueue.length !== 0) return undefined;
  const listeners = stream.listeners('data');
  if (listeners.length !== 1) return undefined;
  stream.off('data', listeners[0] as (chunk: Buffer) => void);
  return stream;
}

/**
 * RST_STREAM with ENHANCE_YOUR_CALM (gRPC clients see RESOURCE_EXHAUSTED):
 * the client is being asked to behave. False when the stream was not reachable.
 */
export function resetCall(call: object & { destroy(error?: Error): void }): boolean {
  const stream = http2StreamOf(call);
  if (stream) {
    if (!stream.closed && !stream.destroyed) stream.close(constants.NGHTTP2_ENHANCE_YOUR_CALM);
    return true;
  }
  call.destroy();
  return false;
}


/**
 * Bytes written so far on the connection under the call (TLS included): it
 * grows whenever the peer takes data, so a stream whose connection's count
 * stands still is not being read. Envoy opens one ADS stream per connection.
 */
export function connectionBytesWritten(call: object): number {
  return http2StreamOf(call)?.session?.socket?.bytesWritten ?? 0;
}
