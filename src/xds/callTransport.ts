// The HTTP/2 stream under a grpc-js server call. grpc-js offers no way to
// reset a call whose client stopped reading: ending it queues the status
// behind the very data the client does not read. Resetting the HTTP/2 stream
// (RST_STREAM) frees what is buffered at once. grpc-js 1.14 keeps that stream
// on the call it hands to the handler (`call.call.stream`); when a future
// version does not, this returns undefined and the caller falls back to
// destroying the call object (test/xds/hostile.test.ts pins the installed one).
import { constants, type ServerHttp2Stream } from 'node:http2';

function isHttp2Stream(value: unknown): value is ServerHttp2Stream {
  return typeof value === 'object' && value !== null && typeof (value as ServerHttp2Stream).close === 'function' && 'session' in value && 'rstCode' in value;
}

export function http2StreamOf(call: object): ServerHttp2Stream | undefined {
  const inner = (call as { call?: { stream?: unknown; nextCall?: { stream?: unknown } } }).call;
  const stream = inner?.stream ?? inner?.nextCall?.stream;
  return isHttp2Stream(stream) ? stream : undefined;
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
