import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePushFlags } from '../../src/cli/pushFlags.js';
import { DEFAULT_PUSH_TIMING } from '../../src/snapshot/pushScheduler.js';

test('serve push flags: defaults, values, and errors that name the flag', () => {
  const defaults = parsePushFlags({});
  assert.deepEqual(defaults.pushTiming, DEFAULT_PUSH_TIMING);
  assert.ok(defaults.compileWorkers >= 1 && defaults.compileWorkers <= 4);
  assert.equal(defaults.compileWarmup, false);
  assert.deepEqual(parsePushFlags({ 'push-window-ms': '0', 'push-max-delay-ms': '0', 'compile-workers': '2', 'compile-warmup': 'true' }), { pushTiming: { windowMs: 0, maxDelayMs: 0 }, compileWorkers: 2, compileWarmup: true });
  assert.throws(() => parsePushFlags({ 'compile-warmup': 'no' }), /--compile-warmup must be true or false, got "no"/);
  assert.throws(() => parsePushFlags({ 'push-window-ms': 'ten' }), /--push-window-ms must be a whole number from 0 to 60000, got "ten"/);
  assert.throws(() => parsePushFlags({ 'compile-workers': '0' }), /--compile-workers must be a whole number from 1 to 64/);
  assert.throws(() => parsePushFlags({ 'push-window-ms': '50', 'push-max-delay-ms': '20' }), /--push-max-delay-ms \(20\) must not be less than --push-window-ms \(50\)/);
});
