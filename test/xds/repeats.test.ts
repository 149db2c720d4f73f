// A SotW client repeating a request byte for byte: every repeat is dropped
// before it is decoded (counted, nothing sent, nothing recorded), and what
// follows is handled as before. A request that does not decode is refused with
// INVALID_ARGUMENT saying so. Real grpc-js Envoy, raw HTTP/2 for the bytes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { FakeEnvoy, settle } from '../support/fakeEnvoy.js';
import { RawAdsConnection, grpcFrame } from '../support/rawAdsClient.js';
import { policy, startHarness, type Harness } from './harness.js';

const CDS = TypeUrl.Cluster;
const LDS = TypeUrl.Listener;

let harness: Harness;
const envoys: FakeEnvoy[] = [];
const connections: RawAdsConnection[] = [];

before(async () => {
  harness = await startHarness([policy('p1', ['a.example'])]);
});
after(async () => {
  for (const e of envoys) e.close();
  for (const c of connections) c.close();
  await harness.close();
});

const repeated = async () => (await harness.metrics.repeatedRequests.get()).values[0]?.value ?? 0;
const acks = async () => (await harness.metrics.acks.get()).values.reduce((sum, v) => sum + v.value, 0);

test('1,500 identical SotW requests: 1,499 dropped undecoded, none answered; the stream then works as before', async () => {
  const e = new FakeEnvoy(harness.address, { nodeId: 'repeater' }).connect();
  envoys.push(e);
  await e.waitFor('configured', () => e.configured());
  await settle(200); // its last ACK is in
  const responses = e.responses.length;
  const before = await repeated();
  const acksBefore = await acks();
  for (let i = 0; i < 1500; i++) e.send({ node: { id: 'repeater', cluster: 'test-cluster' }, type_url: CDS, version_info: '', resource_names: [], response_nonce: '' });
  let dropped = 0;
  for (let i = 0; i < 400 && dropped < 1499; i++) {
    dropped = (await repeated()) - before;
    await settle(50);
  }
  await settle(200);
  assert.equal((await repeated()) - before, 1499, 'every repeat after the first dropped');
  assert.equal(e.responses.length, responses, 'no response to the repeated request (the cluster set did not change)');
  assert.equal(await acks(), acksBefore);

  // The stream still follows changes, and its answers (no longer identical to the previous request) are handled.
  harness.cache.setPolicies([policy('p1', ['a.example', 'b.example'])]);
  await e.waitFor('the change', () => JSON.stringify(e.state.get(LDS)?.get('egress_tproxy') ?? null).includes('b.example'));
  await settle(200);
  assert.ok((await acks()) > acksBefore, 'the ACKs of the change were counted');
  assert.equal(e.errors.length, 0);
});

test('an ACK repeated is dropped, and counted as an ACK once', async () => {
  const e = new FakeEnvoy(harness.address, { nodeId: 'double-ack' }).connect();
  envoys.push(e);
  await e.waitFor('configured', () => e.configured());
  await settle(200);
  const last = e.responsesOf(LDS).at(-1)!;
  const acksBefore = await acks();
  const before = await repeated();
  const ack = { node: { id: 'double-ack', cluster: 'test-cluster' }, type_url: LDS, version_info: last.version, resource_names: [], response_nonce: last.nonce };
  e.send(ack);
  e.send(ack);
  for (let i = 0; i < 200 && (await repeated()) - before < 2; i++) await settle(20);
  await settle(100);
  // Both repeat the Envoy's own last request, its ACK of the listener (already counted).
  assert.equal((await repeated()) - before, 2);
  assert.equal(await acks(), acksBefore);
});

test('a request that does not decode is refused with INVALID_ARGUMENT saying so', async () => {
  const connection = new RawAdsConnection(harness.address);
  connections.push(connection);
  const s = connection.open('sotw', { read: true });
  // Field 1 (version_info) as a length-delimited string of 16 bytes, but only 2 follow.
  s.stream.write(grpcFrame(Uint8Array.from([0x0a, 0x10, 0x61, 0x62])));
  // Bounded: the status arrives in trailers (the stream stays half open, this client never ends its side).
  for (let i = 0; i < 400 && s.status() === undefined; i++) await settle(25);
  assert.equal(s.status(), grpc.status.INVALID_ARGUMENT);
  assert.equal(((await harness.metrics.streamsRefused.get()).values.find((v) => v.labels.reason === 'malformed'))?.value, 1);
});
