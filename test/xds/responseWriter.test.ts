// The response writer under a real grpc-js server and a real grpc-js client:
// responses written as pre-framed bytes straight to the HTTP/2 stream arrive
// whole and in order, a stream's status still comes after them, one framed
// buffer serves many streams, and a write after the end is refused without an
// error event nobody listens for. It also pins that the installed grpc-js lets
// the writer take the direct path (the fan-out figures depend on it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { responseWriter, type ResponseWriter } from '../../src/xds/responseWriter.js';
import { grpcFramed } from '../../src/xds/wire.js';

const pass = (b: Buffer) => b;
const method = { path: '/test.Echo/Stream', requestStream: true, responseStream: true, requestSerialize: pass, requestDeserialize: pass, responseSerialize: pass, responseDeserialize: pass };

async function withServer(
  handler: (call: grpc.ServerDuplexStream<Buffer, Buffer>, writer: ResponseWriter) => void,
  run: (client: grpc.Client) => Promise<void>,
): Promise<void> {
  const server = new grpc.Server();
  server.addService({ stream: method }, { stream: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => handler(call, responseWriter(call)) });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    await run(client);
  } finally {
    client.close();
    server.forceShutdown();
  }
}

/** Opens a stream, sends one request, collects the messages until the status. */
function exchange(client: grpc.Client): Promise<{ messages: Buffer[]; status: grpc.StatusObject }> {
  return new Promise((resolve, reject) => {
    const call = client.makeBidiStreamRequest(method.path, pass, pass);
    const messages: Buffer[] = [];
    const timer = setTimeout(() => reject(new Error('no status within 10 s')), 10_000);
    call.on('data', (m: Buffer) => messages.push(m));
    call.on('error', () => {});
    call.on('status', (status: grpc.StatusObject) => {
      clearTimeout(timer);
      resolve({ messages, status });
    });
    call.write(Buffer.from('go'));
    call.end();
  });
}

test('pre-framed responses reach a grpc-js client whole, in order, before the status; one buffer serves every stream', async () => {
  const shared = grpcFramed(Buffer.from('shared response'));
  const paths: (string | undefined)[] = [];
  await withServer(
    (call, writer) => {
      call.once('data', () => {
        // Framed by the caller (shared), then framed by the writer, then a large one.
        writer.write(shared.subarray(5), shared, () => {});
        writer.write(Buffer.from('second'), undefined, () => {});
        writer.write(Buffer.alloc(300_000, 7), undefined, (error) => {
          paths.push(writer.path);
          assert.ifError(error);
          call.end();
        });
      });
      call.on('end', () => {});
    },
    async (client) => {
      const results = await Promise.all([exchange(client), exchange(client), exchange(client)]);
      for (const { messages, status } of results) {
        assert.equal(status.code, grpc.status.OK);
        assert.deepEqual(
          messages.map((m) => (m.length > 1000 ? `${m.length} bytes of ${m[0]}` : m.toString())),
          ['shared response', 'second', '300000 bytes of 7'],
        );
      }
    },
  );
  assert.deepEqual(paths, ['direct', 'direct', 'direct'], 'the installed grpc-js keeps the HTTP/2 stream where src/xds/callTransport.ts finds it');
});

test('an error status after direct writes still reaches the client, and a write after the end is refused quietly', async () => {
  const refused: (Error | null | undefined)[] = [];
  await withServer(
    (call, writer) => {
      call.once('data', () => {
        writer.write(Buffer.from('one'), undefined, () => {
          call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'enough' });
          writer.write(Buffer.from('too late'), undefined, (error) => refused.push(error));
        });
      });
    },
    async (client) => {
      const { messages, status } = await exchange(client);
      assert.deepEqual(messages.map(String), ['one']);
      assert.equal(status.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.equal(status.details, 'enough');
    },
  );
  assert.equal(refused.length, 1);
  assert.match(String(refused[0]?.message), /closed/);
});
