// serve's --history-* and --admin-allowed-host flags: values, and errors that name the flag.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageError } from '../../src/cli/flags.js';
import { parseDuration, parseStoreFlags } from '../../src/cli/storeFlags.js';

test('durations, sizes and allowed hosts', () => {
  assert.equal(parseDuration('history-retention', '30d'), 30 * 86_400_000);
  assert.equal(parseDuration('history-retention', '90s'), 90_000);
  assert.deepEqual(parseStoreFlags({}), {});
  assert.deepEqual(parseStoreFlags({ 'history-retention': '12h', 'history-max-mb': '5', 'history-compact-interval': '10m', 'admin-allowed-host': ['admin.internal', '*'] }), {
    historyRetentionMs: 12 * 3_600_000,
    historyMaxBytes: 5 * 1024 * 1024,
    compactIntervalMs: 600_000,
    adminAllowedHosts: ['admin.internal', '*'],
  });
});

test('bad values are usage errors naming the flag', () => {
  const cases: Array<[Parameters<typeof parseStoreFlags>[0], RegExp]> = [
    [{ 'history-retention': '30' }, /--history-retention must be a positive duration/],
    [{ 'history-retention': '0d' }, /--history-retention/],
    [{ 'history-compact-interval': '1w' }, /--history-compact-interval/],
    [{ 'history-max-mb': '0' }, /--history-max-mb/],
    [{ 'history-max-mb': 'lots' }, /--history-max-mb/],
    [{ 'admin-allowed-host': ['http://admin.internal/'] }, /--admin-allowed-host must be a host name/],
  ];
  for (const [values, message] of cases) {
    assert.throws(() => parseStoreFlags(values), (error: unknown) => error instanceof UsageError && message.test(error.message), JSON.stringify(values));
  }
});
