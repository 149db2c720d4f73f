// CPU per log line through src/log.ts (pino, synchronous to stderr), with stderr
// /dev/null or a pipe the parent drains; beside pino's asynchronous destination
// (4 kB buffer), which this project does not use (it loses the last lines of a
// crash; see test/log/log.test.ts).
//   node dist/bench/logLines.js [LINES]
import { spawn } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pino from 'pino';
import { createLogger } from '../src/log.js';

type Variant = 'sync' | 'async';

/** In the child: writes `lines` lines, prints CPU µs per line on stdout. */
function writeLines(variant: Variant, lines: number): void {
  const fields = { typeUrl: 'type.googleapis.com/envoy.config.listener.v3.Listener', resources: 3, bytes: 18234 };
  const start = process.cpuUsage();
  if (variant === 'sync') {
    const log = createLogger().child({ component: 'xds' }).child({ stream: 12, node: 'host-17' });
    for (let i = 0; i < lines; i++) log.info('pushed', { ...fields, version: `v${i}` });
  } else {
    const destination = pino.destination({ dest: 2, sync: false, minLength: 4096 });
    const log = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } }, destination)
      .child({ component: 'xds' })
      .child({ stream: 12, node: 'host-17' });
    for (let i = 0; i < lines; i++) log.info({ ...fields, version: `v${i}` }, 'pushed');
    destination.flushSync();
  }
  const used = process.cpuUsage(start);
  process.stdout.write(`${(used.user + used.system) / lines}\n`);
}

function run(variant: Variant, stderr: 'ignore' | 'pipe', lines: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', variant, String(lines)], { stdio: ['ignore', 'pipe', stderr] });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.stderr?.resume();
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Number(out)) : reject(new Error(`log bench child exited ${code}`))));
  });
}

export async function logLinesTable(lines = 50_000): Promise<string[]> {
  const table = ['| stderr is | pino, synchronous (used) | pino, asynchronous (4 kB buffer) |', '|---|---|---|'];
  for (const [what, stderr] of [['/dev/null', 'ignore'], ['a pipe', 'pipe']] as const) {
    const sync = await run('sync', stderr, lines);
    const async = await run('async', stderr, lines);
    table.push(`| ${what} | ${sync.toFixed(2)} µs | ${async.toFixed(2)} µs |`);
  }
  return table;
}

if (process.argv[2] === '--child') writeLines(process.argv[3] as Variant, Number(process.argv[4]));
else if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (const line of await logLinesTable(Number(process.argv[2] ?? 50_000))) console.log(line);
}
