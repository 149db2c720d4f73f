// A child process that floods a server's Access Log Service with denial records,
// the way many Envoys would: NODES streams, TOTAL records in batches of BATCH,
// each stream waiting for its buffer to drain as Envoy's bounded gRPC logger does.
// Run apart from the server so that a test measures the server's memory alone.
// Usage: node alsFlood.js TARGET NODES TOTAL BATCH; prints {"errors":[...]} and exits.
import { openAlsStream, type TcpEntry } from './alsClient.js';
import { TAG } from '../../src/denials/record.js';

const [target, nodesText, totalText, batchText] = process.argv.slice(2);
const NODES = Number(nodesText);
const TOTAL = Number(totalText);
const BATCH = Number(batchText);
const tags = { [TAG.verdict]: 'denied', [TAG.reason]: 'no-policy', [TAG.listener]: 'egress_tproxy' };

const streams = Array.from({ length: NODES }, (_, n) => openAlsStream(target!, `flood-${n}`));
for (let sent = 0, b = 0; sent < TOTAL; sent += BATCH, b++) {
  const entries: TcpEntry[] = Array.from({ length: BATCH }, (_, i) => ({ source: `172.31.0.${(sent + i) % 250}:${1024 + ((sent + i) % 60000)}`, destination: '93.184.216.34:443', sni: `h${sent + i}.example.com`, tags }));
  const stream = streams[b % NODES]!;
  if (!stream.sendTcp(entries)) await stream.drained();
}
const errors = await Promise.all(streams.map((s) => s.finish()));
process.stdout.write(JSON.stringify({ errors: errors.map((e) => (e ? e.message : null)) }) + '\n');
