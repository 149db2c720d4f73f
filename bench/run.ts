// npm run bench: prints the figures recorded in BENCHMARKS.md.
import { execFileSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { compileBenchmark } from './compile.js';
import { fanoutTable } from './fanout.js';
import { hostScenarioTable } from './hostScenario.js';
import { sharedChainsTables } from './sharedChains.js';
import { hostServerTable } from './hostServer.js';
import { editPathTable } from './editPath.js';
import { fleetTable } from './fleet.js';
import { hostileMixTable } from './hostileMix.js';
import { forwardTable } from './forward.js';
import { pushLatency } from './pushLatency.js';
import { storeBenchmarks } from './storeBench.js';
import { ms } from './stats.js';
import { alsIngestTable } from './denials.js';
import { rerunWithShippedEnv, shippedEnv, shippedEnvLine, shippedNodeFlags } from './shippedEnv.js';

// The in-process figures (compile, host scenarios) are measured under the allocator settings
// bin/egress-xds ships (EGRESS_XDS_MALLOC=system: glibc's defaults); server processes get them too.
rerunWithShippedEnv();

const cpu = cpus()[0]?.model ?? 'unknown CPU';
console.log(`machine: ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${process.platform}`);
console.log(shippedEnvLine(process.env));

console.log('\n## Compile + encode the listener of one node group');
console.log('| policies | filter chains | listener bytes | p50 | p99 |');
console.log('|---|---|---|---|---|');
for (const [count, rounds] of [[10, 50], [100, 20], [1000, 3]] as const) {
  const r = compileBenchmark(count, rounds);
  console.log(`| ${r.policies} | ${r.chains} | ${r.listenerBytes} | ${ms(r.time.p50)} | ${ms(r.time.p99)} |`);
}

console.log('\n## Host scenarios (issue 7): N microVMs × 20 names + one shared policy, profile hardened');
for (const line of await hostScenarioTable([50, 200, 1000], 8)) console.log(line);
console.log('\nthe same without access logs (accessLog: false):');
for (const line of await hostScenarioTable([50, 200, 1000], 8, { accessLog: false })) console.log(line);
console.log('\n--max-connections-per-source 0 beside the default (bench/sharedChains.ts):');
for (const line of await sharedChainsTables([50, 200, 1000], 8)) console.log(line);
console.log('\nthrough the server (compile workers, snapshot, ADS): the main thread\'s longest event-loop block:');
for (const line of await hostServerTable([1000], 3, undefined, ['at-once', 'after-warm-up', 'after-restart'])) console.log(line);
console.log('\none edit through the snapshot layer in process (cache, compile worker, shared response; no HTTP, store or gRPC):');
for (const line of await editPathTable(1000, 10)) console.log(line);

console.log('\n## Push latency: admin API 200 → new Listener received');
console.log('| Envoys | changes | p50 | p90 | p99 | max | all Envoys done, p99 | arrived before the 200 | server: commit → written, p99 ≤ | server RSS |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const nodes of [100, 1000]) {
  const r = await pushLatency({ nodes, changes: nodes >= 1000 ? 30 : 100, warmup: 5 });
  const l = r.latency;
  console.log(`| ${r.nodes} | ${r.changes} | ${ms(l.p50)} | ${ms(l.p90)} | ${ms(l.p99)} | ${ms(l.max)} | ${ms(r.allNodes.p99)} | ${(r.beforeOk * 100).toFixed(0)} % | ${r.serverP99BucketMs} ms | ${r.serverRssMiB.toFixed(0)} MiB |`);
}

console.log('\n## Fan-out: N streams of one node group, one Listener change per push, beside a floor server');
console.log('(floor: a minimal grpc-js server writing one pre-encoded response to every stream; median over 20 pushes; load client in its own process)');
{
  // Each server's memory after every push (RSS / V8 heap / external, MiB), CPU by thread and idle CPU: what "RSS flat" rests on.
  const details: string[] = [];
  const table = await fanoutTable([1000, 5000, 10000], 20, (line) => details.push(line));
  for (const line of table) console.log(line);
  console.log('');
  for (const line of details) console.log(`- ${line}`);
}
// In a process of its own: this one has run every in-process bench above, and its collector and
// timers would be counted as the control plane's.
console.log(`\n${execFileSync(process.execPath, [...shippedNodeFlags(), fileURLToPath(new URL('./idleWakeups.js', import.meta.url)), '3'], { env: shippedEnv(), encoding: 'utf8' }).trim()}`);

console.log('\n## Writes: the store, the admin API, start-up with a long history');
await storeBenchmarks({ policies: 10_000, oneByOne: 10_000, seconds: 5, concurrency: 256, historyCommits: [100_000, 400_000] }, (line) => console.log(line));
console.log('\n## Writes with a fleet connected: 10,000 hosts, each host\'s own policy created then updated over HTTP (issue 8 (c))');
for (const line of await (await import('./writes.js')).writesTable([{ hosts: 10_000, writers: 64, seconds: 10, killAfterSeconds: 1 }])) console.log(line);
console.log('\n## Fleet: N hosts, each with its own policy, plus one global policy');
console.log('(one SotW stream per host on its own connection; server, load client and driver in three processes)');
for (const line of await fleetTable([10000], 10, 2)) console.log(line);

console.log('\n## Hostile mix: healthy Envoys beside 100 stuck readers, request floods and toggles, 1,000 changes');
for (const line of await hostileMixTable()) console.log(line);
console.log('\n## ALS ingest: access log records through the Access Log Service into the denial buffer');
for (const line of await alsIngestTable([{ records: 200_000, batch: 50, bound: 100_000 }, { records: 200_000, batch: 50, bound: 10_000 }])) console.log(line);
console.log('\n## Forward proxy: compile + encode beside the transparent listener (microVMs with 20 names each)');
for (const line of forwardTable([200, 1000], 20, 3)) console.log(line);
console.log('\n## Replicas on etcd: admin write on replica A → ACK of the Envoys on replica C');
console.log('(each replica its own `serve --store etcd://` process, one local etcd member; beside one process on the file store)');
for (const line of await (await import('./replicaPush.js')).replicaPushTable(100, 30)) console.log(line);
console.log('\n## Allocator settings (bin/egress-xds): a one-name edit\'s listener encode at 1,000 microVMs × 20 names, each way in a fresh process');
for (const line of (await import('./allocator.js')).allocatorTable(1000, 40)) console.log(line);
console.log('\n## Policy validation: one body, CPU time per call (ajv schema pass, then meaning and canonical form)');
for (const line of await (await import('./policyValidate.js')).policyValidateTable()) console.log(line);
console.log('\n## Log lines: CPU per line (src/log.ts, pino synchronous to stderr; beside pino asynchronous)');
for (const line of await (await import('./logLines.js')).logLinesTable()) console.log(line);
