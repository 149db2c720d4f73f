// The request reader: gRPC messages split out of any cut of the DATA chunks,
// under a real grpc-js server and real clients (grpc-js, and bare HTTP/2 for
// what grpc-js will not send). It pins that the installed grpc-js lets ADS
// streams read their requests directly (the fan-out figures depend on it),
// that compressed calls still come through grpc-js, and that the size bound
// and the compressed flag are refused with a status that names them.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { GrpcMessageSplitter, readRequests, type RequestHandlers } from '../../src/xds/requestReader.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { policy, startHarness } from './harness.js';
import { RawAdsConnection, grpcFrame, sotwRequest, type RawStream } from '../support/rawAdsClient.js';

/** A small deterministic generator (mulberry32), so a failing case can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('GrpcMessageSplitter', () => {
  test('any cut of any sequence of messages gives back the same messages, flags included', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const next = random(seed);
      const messages = Array.from({ length: 1 + Math.floor(next() * 6) }, () => {
        // Empty messages, one-byte ones, and ones longer than a chunk.
        const length = [0, 1, 4, 5, 6, 300, 3000][Math.floor(next() * 7)]!;
        return { bytes: Buffer.from(Array.from({ length }, () => Math.floor(next() * 256))), compressed: next() < 0.2 };
      });
      const wire = Buffer.concat(
        messages.map((m) => {
          const framed = grpcFrame(m.bytes);
          framed[0] = m.compressed ? 1 : 0;
          return framed;
        }),
      );
      const splitter = new GrpcMessageSplitter(4096);
      const got: { bytes: Buffer; compressed: boolean }[] = [];
      let at = 0;
      while (at < wire.length) {
        // Chunks of 1 byte up to the whole rest: prefixes and bodies cut everywhere.
        const size = next() < 0.3 ? 1 : 1 + Math.floor(next() * (wire.length - at));
        const tooLarge = splitter.write(wire.subarray(at, at + size), (bytes, compressed) => got.push({ bytes: Buffer.from(bytes), compressed }));
        assert.equal(tooLarge, undefined, `seed ${seed}`);
        at += size;
      }
      assert.deepEqual(got, messages, `seed ${seed}`);
    }
  });

  test('a message declared beyond the bound is reported by its length, and neither it nor anything after it is handed over', () => {
    const splitter = new GrpcMessageSplitter(100);
    const got: Buffer[] = [];
    const wire = Buffer.concat([grpcFrame(Buffer.from('first')), grpcFrame(Buffer.alloc(101)), grpcFrame(Buffer.from('after'))]);
    // The oversized prefix arrives cut in two: the bound is checked once the length is whole.
    assert.equal(splitter.write(wire.subarray(0, 12), (m) => got.push(m)), undefined);
    assert.equal(splitter.write(wire.subarray(12), (m) => got.push(m)), 101);
    assert.deepEqual(got.map(String), ['first']);
  });

  test('a message handed over is never written again by the splitter (it may be kept)', () => {
    const splitter = new GrpcMessageSplitter(1000);
    const kept: Buffer[] = [];
    const a = grpcFrame(Buffer.alloc(50, 1));
    const b = grpcFrame(Buffer.alloc(50, 2));
    // Each body spans two chunks, so both are gathered in a buffer of the splitter's.
    splitter.write(a.subarray(0, 20), (m) => kept.push(m));
    splitter.write(Buffer.concat([a.subarray(20), b.subarray(0, 20)]), (m) => kept.push(m));
    splitter.write(b.subarray(20), (m) => kept.push(m));
    assert.deepEqual(kept, [Buffer.alloc(50, 1), Buffer.alloc(50, 2)]);
  });
});

const pass = (b: Buffer) => b;
const method = { path: '/test.Echo/Stream', requestStream: true, responseStream: true, requestSerialize: pass, requestDeserialize: pass, responseSerialize: pass, responseDeserialize: pass };

/** A grpc-js server whose handler reads with readRequests and answers each request with its length; returns what it saw. */
interface Seen {
  paths: string[];
  ends: number;
  refusals: string[];
}

async function echoServer(maxBytes: number): Promise<{ port: number; seen: Seen; server: grpc.Server }> {
  const seen: Seen = { paths: [], ends: 0, refusals: [] };
  const server = new grpc.Server();
  server.addService(
    { stream: method },
    {
      stream: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        const handlers: RequestHandlers = {
          message: (bytes) => call.write(Buffer.from(`${bytes.length}:${bytes.subarray(0, 8).toString('hex')}`)),
          end: () => {
            seen.ends += 1;
            call.end();
          },
          refuse: (reason, code, details) => {
            seen.refusals.push(reason);
            call.emit('error', { code, details });
          },
        };
        seen.paths.push(readRequests(call, maxBytes, handlers));
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return { port, server, seen };
}

function exchange(client: grpc.Client, requests: Buffer[]): Promise<{ answers: string[]; status: grpc.StatusObject }> {
  return new Promise((resolve, reject) => {
    const call = client.makeBidiStreamRequest(method.path, pass, pass);
    const answers: string[] = [];
    const timer = setTimeout(() => reject(new Error('no status within 10 s')), 10_000);
    call.on('data', (m: Buffer) => answers.push(m.toString()));
    call.on('error', () => {});
    call.on('status', (status: grpc.StatusObject) => {
      clearTimeout(timer);
      resolve({ answers, status });
    });
    for (const request of requests) call.write(request);
    call.end();
  });
}

const expected = (bytes: Buffer) => `${bytes.length}:${bytes.subarray(0, 8).toString('hex')}`;

describe('readRequests under grpc-js', () => {
  test('the installed grpc-js lets a call read its requests directly: every message whole and in order, then the half-close', async () => {
    const echo = await echoServer(1024 * 1024);
    const client = new grpc.Client(`127.0.0.1:${echo.port}`, grpc.credentials.createInsecure());
    try {
      // An empty one, a small one, one of many DATA frames (300 KB), and another after it.
      const requests = [Buffer.alloc(0), Buffer.from('hello'), Buffer.alloc(300_000, 9), Buffer.from('last one')];
      const { answers, status } = await exchange(client, requests);
      assert.equal(status.code, grpc.status.OK, status.details);
      assert.deepEqual(answers, requests.map(expected));
      assert.deepEqual(echo.seen.paths, ['direct'], 'the installed grpc-js keeps the HTTP/2 stream and its data listener where src/xds/callTransport.ts finds them');
      assert.equal(echo.seen.ends, 1);
    } finally {
      client.close();
      echo.server.forceShutdown();
    }
  });

  test('a compressed call (grpc-encoding gzip) is read through grpc-js, which decompresses it', async () => {
    const echo = await echoServer(1024 * 1024);
    // 2: gzip (grpc-js's CompressionAlgorithms).
    const client = new grpc.Client(`127.0.0.1:${echo.port}`, grpc.credentials.createInsecure(), { 'grpc.default_compression_algorithm': 2 });
    try {
      const requests = [Buffer.from('compressed'), Buffer.alloc(100_000, 3)];
      const { answers, status } = await exchange(client, requests);
      assert.equal(status.code, grpc.status.OK, status.details);
      assert.deepEqual(answers, requests.map(expected));
      assert.deepEqual(echo.seen.paths, ['call']);
    } finally {
      client.close();
      echo.server.forceShutdown();
    }
  });
});

/** Until the server's status arrives (a trailers-only answer; the client's side stays open). */
async function statusOf(stream: RawStream): Promise<number | undefined> {
  for (let i = 0; i < 400 && stream.status() === undefined; i++) await new Promise((r) => setTimeout(r, 25));
  return stream.status();
}

describe('ADS requests read directly', () => {
  test('a request beyond the size bound is refused with RESOURCE_EXHAUSTED, counted, and other streams go on', async () => {
    const harness = await startHarness([policy('github', ['github.com'])], { limits: { maxRequestBytes: 1024 } });
    const connection = new RawAdsConnection(harness.address);
    try {
      const big = connection.open('sotw', { read: true });
      // Only the prefix of a 5 MB message: the bound is checked before any of it is buffered.
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(5 * 1024 * 1024, 1);
      big.stream.write(prefix);
      await statusOf(big);
      assert.equal(big.status(), grpc.status.RESOURCE_EXHAUSTED);
      assert.match(await harness.metrics.registry.metrics(), /egress_xds_streams_refused_total\{reason="request_size"\} 1/);

      // A well-formed request written a byte at a time is answered.
      const good = connection.open('sotw', { read: true });
      const request = sotwRequest({ node: { id: 'host-1' }, typeUrl: TypeUrl.Cluster });
      for (const byte of request) await new Promise<void>((resolve) => good.stream.write(Buffer.from([byte]), () => resolve()));
      for (let i = 0; i < 200 && good.messages() === 0; i++) await new Promise((r) => setTimeout(r, 25));
      assert.equal(good.messages(), 1, 'the Clusters were sent');
      // Both streams' requests were read off the HTTP/2 stream, none through grpc-js.
      const metrics = await harness.metrics.registry.metrics();
      assert.match(metrics, /egress_xds_streams_read_total\{path="direct"\} 2/);
      assert.doesNotMatch(metrics, /egress_xds_streams_read_total\{path="call"\}/);
    } finally {
      connection.close();
      await harness.close();
    }
  });

  test('a message flagged compressed on a stream with no grpc-encoding is refused as malformed', async () => {
    const harness = await startHarness([policy('github', ['github.com'])]);
    const connection = new RawAdsConnection(harness.address);
    try {
      const stream = connection.open('sotw', { read: true });
      const request = sotwRequest({ node: { id: 'host-1' }, typeUrl: TypeUrl.Cluster });
      request[0] = 1;
      stream.stream.write(request);
      await statusOf(stream);
      assert.equal(stream.status(), grpc.status.INTERNAL);
      assert.match(await harness.metrics.registry.metrics(), /egress_xds_streams_refused_total\{reason="malformed"\} 1/);
      assert.equal(harness.registry.list().length, 0, 'the node was never registered');
    } finally {
      connection.close();
      await harness.close();
    }
  });
});
