// The logger users read: one JSON object per line on stderr, the fields and
// levels they had before pino, EGRESS_XDS_LOG_LEVEL, and no line lost when the
// process dies right after writing it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createLogger, silentLogger } from '../../src/log.js';

const capture = (options: Parameters<typeof createLogger>[0] = {}) => {
  const lines: string[] = [];
  const logger = createLogger({ ...options, write: (line) => lines.push(line) });
  return { logger, lines, records: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>) };
};

test('one JSON object per line: level name, ISO time, msg, the fields; errors as their message, bigints as text', () => {
  const { logger, lines, records } = capture();
  logger.info('store: compaction failed', { path: '/d', error: new Error('disk full'), revision: 12n, nested: { cause: new TypeError('deep') }, list: [new Error('a'), 1] });
  assert.equal(lines.length, 1);
  assert.ok(lines[0]!.endsWith('}\n') && !lines[0]!.slice(0, -1).includes('\n'), lines[0]);
  const [record] = records();
  const { time, ...rest } = record!;
  assert.ok(typeof time === 'string' && !Number.isNaN(Date.parse(time)) && time.endsWith('Z'), String(time));
  assert.deepEqual(rest, { level: 'info', msg: 'store: compaction failed', path: '/d', error: 'disk full', revision: '12', nested: { cause: 'deep' }, list: ['a', 1] });
});

test('a circular or throwing field does not throw out of a log call (the line is still written)', () => {
  const { logger, records } = capture();
  const loop: Record<string, unknown> = { id: 1 };
  loop.self = loop;
  logger.error('odd fields', { loop, toJSON: { toJSON: () => { throw new Error('no JSON for you'); } } });
  const [record] = records();
  assert.equal(record?.msg, 'odd fields');
  assert.equal((record?.loop as { id: number }).id, 1);
});

test('child loggers carry their fields; a call\'s own field wins over a child\'s', () => {
  const { logger, records } = capture();
  const child = logger.child({ component: 'xds', node: 'a' }).child({ stream: 7 });
  child.warn('nack', { node: 'b', typeUrl: 'T' });
  const { time: _time, ...rest } = records()[0]!;
  assert.deepEqual(rest, { level: 'warn', msg: 'nack', component: 'xds', node: 'b', stream: 7, typeUrl: 'T' });
});

test('levels: debug < info < warn < error; the option, else EGRESS_XDS_LOG_LEVEL, else info', () => {
  const levelsAt = (options: Parameters<typeof createLogger>[0]) => {
    const { logger, records } = capture(options);
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');
    logger.child({ c: 1 }).debug('cd');
    return records().map((r) => r.level);
  };
  const saved = process.env.EGRESS_XDS_LOG_LEVEL;
  try {
    delete process.env.EGRESS_XDS_LOG_LEVEL;
    assert.deepEqual(levelsAt({}), ['info', 'warn', 'error']);
    assert.deepEqual(levelsAt({ level: 'debug' }), ['debug', 'info', 'warn', 'error', 'debug']);
    assert.deepEqual(levelsAt({ level: 'error' }), ['error']);
    process.env.EGRESS_XDS_LOG_LEVEL = 'warn';
    assert.deepEqual(levelsAt({}), ['warn', 'error']);
    assert.deepEqual(levelsAt({ level: 'debug' }).length, 5, 'the option wins over the environment');
    process.env.EGRESS_XDS_LOG_LEVEL = 'loud';
    assert.deepEqual(levelsAt({}), ['info', 'warn', 'error'], 'an unknown name is info');
  } finally {
    if (saved === undefined) delete process.env.EGRESS_XDS_LOG_LEVEL;
    else process.env.EGRESS_XDS_LOG_LEVEL = saved;
  }
});

test('silentLogger writes nothing (it would show on this process\'s stderr)', () => {
  // Nothing to capture: the assertion is that these calls neither throw nor build a line.
  silentLogger.error('x', { error: new Error('y') });
  silentLogger.child({ a: 1 }).info('z');
});

const child = fileURLToPath(new URL('./fatalChild.js', import.meta.url));

/** Runs fatalChild.js with stderr a pipe (as under systemd or a test); its stderr and how it ended. */
function runChild(how: string, lines: number): Promise<{ stderr: string; code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [child, how, String(lines)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`fatalChild ${how} did not end within 20 s`));
    }, 20_000);
    proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ stderr, code, signal });
    });
  });
}

// 300 lines of ~1 kB is several times a pipe's 64 kB buffer: the writes must
// wait for the reader, and still all be out before the process dies.
for (const [how, lines, ends] of [
  ['exit', 1, { code: 3 }],
  ['throw', 1, { code: 1 }],
  ['sigkill', 1, { signal: 'SIGKILL' }],
  ['sigkill', 300, { signal: 'SIGKILL' }],
  ['exit', 300, { code: 3 }],
] as const) {
  test(`a line logged just before the process dies (${how}, after ${lines - 1} others) reaches stderr`, async () => {
    const run = await runChild(how, lines);
    if ('code' in ends) assert.equal(run.code, ends.code, run.stderr.slice(-500));
    else assert.equal(run.signal, ends.signal, run.stderr.slice(-500));
    const records = run.stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { level: string; msg: string; how?: string; i?: number });
    assert.equal(records.length, lines, `every line arrived, whole: ${run.stderr.slice(-300)}`);
    assert.deepEqual(records.map((r) => r.i ?? lines), Array.from({ length: lines }, (_, i) => i + 1), 'in order');
    const last = records.at(-1)!;
    assert.deepEqual([last.level, last.msg, last.how], ['error', 'last words', how]);
  });
}

test('a logger installs no process listeners: no exit hook to flush, no signal handler (the agent owns SIGTERM)', () => {
  const events = ['exit', 'beforeExit', 'SIGTERM', 'SIGINT'] as const;
  const before = events.map((event) => process.listenerCount(event));
  const logger = createLogger({ level: 'error' });
  logger.child({ component: 'x' }).debug('not written');
  assert.deepEqual(events.map((event) => process.listenerCount(event)), before);
});
