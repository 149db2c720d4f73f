// npm run bench's store section: prints the tables recorded in BENCHMARKS.md.
import { fsyncLatency, httpWrites, startupWithHistory, storeAlone } from './storeWrites.js';
import { ms } from './stats.js';

export async function storeBenchmarks(
  options: { policies: number; oneByOne: number; seconds: number; concurrency: number; historyCommits: readonly number[] },
  print: (line: string) => void,
): Promise<void> {
  const { policies, seconds, concurrency } = options;
  const disk = await fsyncLatency(100);
  print(`(this disk: append + fdatasync p50 ${ms(disk.p50)}, p99 ${ms(disk.p99)}, measured just before; every write waits for one)`);
  print(`(sustained: ${concurrency} concurrent writers for ${seconds} s, each write a PUT of one of ${policies.toLocaleString('en')} stored policies, answered after fsync)`);
  print(`| what | create ${policies.toLocaleString('en')} | sustained writes/s | p50 | p99 | server CPU | load client CPU |`);
  print('|---|---|---|---|---|---|---|');
  const row = (what: string, create: string, r: { perSecond: number; latency: { p50: number; p99: number }; serverCpu?: number; clientCpu: number }) =>
    print(`| ${what} | ${create} | ${r.perSecond.toFixed(0)} | ${ms(r.latency.p50)} | ${ms(r.latency.p99)} | ${r.serverCpu === undefined ? '(one process)' : `${r.serverCpu.toFixed(2)} cores`} | ${r.clientCpu.toFixed(2)} cores |`);
  const alone = await storeAlone(options);
  row('store alone, in process', `${alone.createSeconds.toFixed(1)} s all at once`, alone.sustained);
  if (options.oneByOne > 0) {
    const admin = await httpWrites({ mode: 'admin', policies: options.oneByOne, seconds, concurrency, oneByOne: true });
    row('HTTP: admin API + store', `${options.oneByOne.toLocaleString('en')}: ${admin.createSeconds.toFixed(1)} s one by one`, admin.sustained);
  }
  const serve = await httpWrites({ mode: 'serve', policies, seconds, concurrency, oneByOne: false });
  row('HTTP: whole control plane (serve), no Envoy', `${serve.createSeconds.toFixed(1)} s in batches of 500`, serve.sustained);
  print('');
  print('| history | log size | start-up: one uncompacted log | start-up after compaction | checkpoint size |');
  print('|---|---|---|---|---|');
  for (const commits of options.historyCommits) {
    const r = await startupWithHistory({ commits, policies });
    print(`| ${commits.toLocaleString('en')} commits | ${(r.historyBytes / 2 ** 20).toFixed(0)} MiB | ${r.replayWhole.toFixed(2)} s | ${(r.afterCompaction * 1000).toFixed(0)} ms | ${(r.stateBytes / 2 ** 20).toFixed(1)} MiB |`);
  }
}

// Alone: node dist/bench/storeBench.js [SECONDS] [ONE_BY_ONE_CREATES]
if (import.meta.url === `file://${process.argv[1]}`) {
  await storeBenchmarks({ policies: 10_000, oneByOne: Number(process.argv[3] ?? 10_000), seconds: Number(process.argv[2] ?? 5), concurrency: 256, historyCommits: [100_000, 400_000] }, (line) => console.log(line));
}
