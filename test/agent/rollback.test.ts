// A failure half-way undoes what the pass had added, newest first (injected
// runner; no system touched).
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { dryRunInstall, install } from '../../src/agent/apply.js';
import { buildConfig } from '../../src/agent/config.js';
import { AgentError, TproxyUnavailableError, formatCommand } from '../../src/agent/errors.js';
import { buildPlan } from '../../src/agent/plan.js';
import { fakeHost } from './support/fakeHost.js';

const failed = { exitCode: 1, stdout: '', stderr: 'injected failure' };

for (const backend of ['iptables', 'nftables'] as const) {
  test(`${backend}: the nth step failing rolls back steps 1..n-1 in reverse, for every n`, async () => {
    const plan = buildPlan(buildConfig({ backend, noExcludeHostAddresses: true, udpPort: '15053', exclude: ['10.0.0.0/8'] }));
    const steps = dryRunInstall(plan);
    assert.ok(steps.length >= 3);
    for (let n = 0; n < steps.length; n++) {
      const target = formatCommand(steps[n]!.command);
      // Two steps may print alike (nft -f - for two tables): the script tells them apart.
      let failedAt = -1;
      const host = fakeHost((text, input) => {
        if (failedAt >= 0 || text !== target || input !== steps[n]!.command.input) return undefined;
        failedAt = host.log.length;
        return failed;
      });
      await assert.rejects(install(plan, { runner: host, stateDir: '/nonexistent' }), AgentError);
      const after = host.log.slice(failedAt);
      const undos = steps.slice(0, n).reverse().flatMap((s) => s.undo.map(formatCommand));
      assert.deepEqual(after, undos, `failing step ${n + 1} (${target})`);
    }
  });
}

test('a refused TPROXY rule is reported as such, with what to do', async () => {
  const plan = buildPlan(buildConfig({ noExcludeHostAddresses: true }));
  const host = fakeHost((text) =>
    text.includes('-j TPROXY') && text.includes(' -A ') ? { exitCode: 1, stdout: '', stderr: 'iptables: No chain/target/match by that name.' } : undefined,
  );
  await assert.rejects(install(plan, { runner: host, stateDir: '/nonexistent' }), (error: unknown) => {
    assert.ok(error instanceof TproxyUnavailableError);
    assert.match(error.hint ?? '', /modprobe xt_TPROXY/);
    return true;
  });
  // Chain and routing were taken back.
  assert.ok(host.log.includes('iptables -w 5 -t mangle -X EGRESS_XDS'));
  assert.ok(host.log.includes('ip rule del fwmark 0x1/0x1 lookup 100'));
});

test('nft refusing tproxy is reported as such', async () => {
  const plan = buildPlan(buildConfig({ backend: 'nftables', noExcludeHostAddresses: true }));
  const host = fakeHost((text, input) =>
    text === 'nft -f -' && input?.includes('tproxy') && !input.endsWith('delete table inet egress_xds\n')
      ? { exitCode: 1, stdout: '', stderr: 'Error: Could not process rule: No such file or directory\n ... tproxy ip to :15001' }
      : undefined,
  );
  await assert.rejects(install(plan, { runner: host, stateDir: '/nonexistent' }), (error: unknown) => {
    assert.ok(error instanceof TproxyUnavailableError);
    assert.match(error.hint ?? '', /nft_tproxy/);
    return true;
  });
});

test('an undo that fails too is named in the error, with what to do', async () => {
  const plan = buildPlan(buildConfig({ noExcludeHostAddresses: true }));
  const host = fakeHost((text) =>
    text.includes('-A PREROUTING') || text.startsWith('ip route del') ? failed : undefined,
  );
  await assert.rejects(install(plan, { runner: host, stateDir: '/nonexistent' }), (error: unknown) => {
    assert.ok(error instanceof AgentError);
    assert.match(error.message, /rollback could not undo:\n {2}ip route del local 0\.0\.0\.0\/0 dev lo table 100/);
    assert.match(error.hint ?? '', /uninstall/);
    return true;
  });
});

test('rp_filter: rolled back to its old value, and the saved value is forgotten', async () => {
  const stateDir = await mkdtemp(join(tmpdir(), 'egx-state-'));
  try {
    const plan = buildPlan(buildConfig({ noExcludeHostAddresses: true, relaxRpFilter: true }));
    const host = fakeHost((text) => (text.includes('-A PREROUTING') ? failed : undefined));
    await assert.rejects(install(plan, { runner: host, stateDir }));
    assert.ok(host.log.includes('sysctl -w net.ipv4.conf.all.rp_filter=0'));
    assert.ok(host.log.includes('sysctl -w net.ipv4.conf.all.rp_filter=2'));
    assert.deepEqual(await readdir(stateDir), []);
  } finally {
    await rm(stateDir, { recursive: true, force: true });
  }
});

test('rp_filter: when its old value cannot be saved, the sysctl is put back with the rest', async () => {
  // The state dir cannot be created (a path below a regular file): the sysctl
  // was already changed, so leaving it at 0 would lose the value to restore.
  const root = await mkdtemp(join(tmpdir(), 'egx-state-'));
  try {
    await writeFile(join(root, 'file'), '');
    const plan = buildPlan(buildConfig({ noExcludeHostAddresses: true, relaxRpFilter: true }));
    const host = fakeHost(() => undefined);
    await assert.rejects(install(plan, { runner: host, stateDir: join(root, 'file', 'state') }), (error: unknown) => {
      assert.ok(error instanceof AgentError);
      assert.match(error.message, /cannot save net\.ipv4\.conf\.all\.rp_filter's value .*not a directory/);
      assert.match(error.hint ?? '', /--state-dir/);
      return true;
    });
    const relaxed = host.log.indexOf('sysctl -w net.ipv4.conf.all.rp_filter=0');
    assert.ok(relaxed >= 0);
    assert.deepEqual(host.log.slice(relaxed + 1), [
      'sysctl -w net.ipv4.conf.all.rp_filter=2',
      'ip route del local 0.0.0.0/0 dev lo table 100',
      'ip rule del fwmark 0x1/0x1 lookup 100',
    ]);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
