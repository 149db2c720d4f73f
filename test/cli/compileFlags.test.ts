// serve's --max-connections-per-source: 0 is "no Envoy-side cap" (the host agent's kernel
// cap instead); anything else that is not a whole number in range is a usage error naming
// the flag and the value, and nothing is compiled from it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { COMPILE_USAGE, parseCompileFlags } from '../../src/cli/compileFlags.js';
import { UsageError } from '../../src/cli/flags.js';
import { DEFAULT_MAX_CONNECTIONS_PER_SOURCE } from '../../src/compile/names.js';

describe('serve --max-connections-per-source', () => {
  it('0 means no Envoy-side cap; the default and other whole numbers pass through', () => {
    assert.equal(parseCompileFlags({ 'max-connections-per-source': '0' }).maxConnectionsPerSource, 0);
    assert.equal(parseCompileFlags({}).maxConnectionsPerSource, DEFAULT_MAX_CONNECTIONS_PER_SOURCE);
    assert.equal(parseCompileFlags({ 'max-connections-per-source': '1' }).maxConnectionsPerSource, 1);
    assert.equal(parseCompileFlags({ 'max-connections-per-source': '100000000' }).maxConnectionsPerSource, 100_000_000);
  });

  it('bad values are usage errors naming the flag and the value', () => {
    for (const bad of ['-1', '1.5', 'x', '', '100000001', '0x10', ' 5']) {
      assert.throws(
        () => parseCompileFlags({ 'max-connections-per-source': bad }),
        (error: unknown) => error instanceof UsageError && error.message.includes('--max-connections-per-source') && error.message.includes(`"${bad}"`),
        JSON.stringify(bad),
      );
    }
  });

  it('the usage text says what 0 does', () => {
    assert.match(COMPILE_USAGE, /0: Envoy caps no source/);
    assert.match(COMPILE_USAGE, /agent install --max-connections-per-source/);
  });
});
