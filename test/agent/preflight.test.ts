// The checks before anything changes: each common failure is one clear
// sentence with what to do.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { buildConfig } from '../../src/agent/config.js';
import { ConnCapUnavailableError, PrivilegeError, ToolMissingError, TproxyUnavailableError } from '../../src/agent/errors.js';
import { buildPlan } from '../../src/agent/plan.js';
import { preflight } from '../../src/agent/preflight.js';
import { execaRunner } from '../../src/agent/runner.js';
import { fakeHost } from './support/fakeHost.js';
import { CLI, Netns, netnsSkipReason, sh, snapshot } from './support/netns.js';

const plan = (backend: 'iptables' | 'nftables' = 'iptables') => buildPlan(buildConfig({ backend, noExcludeHostAddresses: true }));
const root = async () => true;

test('a program that is not installed is a ToolMissingError with the package to install', async () => {
  await assert.rejects(execaRunner().run({ file: 'egx-no-such-tool', args: [] }), (e: unknown) => e instanceof ToolMissingError && e.tool === 'egx-no-such-tool');
  const missingNft = { ...fakeHost(() => undefined), run: async () => Promise.reject(new ToolMissingError('nft')) };
  await assert.rejects(preflight(plan('nftables'), { runner: missingNft, stateDir: '/x' }, 'install', root), (e: unknown) => {
    assert.ok(e instanceof ToolMissingError);
    assert.match(e.hint ?? '', /install nftables/);
    return true;
  });
});

test('iptables without the TPROXY extension is refused before anything changes', async () => {
  const host = fakeHost(() => undefined); // -h prints nothing about TPROXY
  await assert.rejects(preflight(plan(), { runner: host, stateDir: '/x' }, 'install', root), TproxyUnavailableError);
  assert.ok(host.log.every((c) => !/ -[ANI] /.test(c)), 'nothing was changed');
});

test('nft refusing tproxy in the check run (nft -c) is reported as such', async () => {
  const host = fakeHost((text) => (text === 'nft -c -f -' ? { exitCode: 1, stdout: '', stderr: 'Error: Could not process rule: No such file or directory\ntproxy ip to :15001' } : undefined));
  await assert.rejects(preflight(plan('nftables'), { runner: host, stateDir: '/x' }, 'install', root), TproxyUnavailableError);
});

test('without CAP_NET_ADMIN: a PrivilegeError saying to run as root', async () => {
  await assert.rejects(preflight(plan(), { runner: fakeHost(() => undefined), stateDir: '/x' }, 'status', async () => false), (e: unknown) => {
    assert.ok(e instanceof PrivilegeError);
    assert.match(e.hint ?? '', /root/);
    return true;
  });
});

const noSetpriv = (await sh('sh', ['-c', 'command -v setpriv'])).exitCode === 0 ? undefined : 'setpriv (util-linux) is not installed';
const skip = (await netnsSkipReason(['iptables', 'iptables-save', 'nft'])) ?? noSetpriv;

test('the CLI without CAP_NET_ADMIN exits 1, says so, and changes nothing', { skip }, async () => {
  const ns = await Netns.create();
  try {
    const before = await snapshot(ns);
    const result = spawnSync('ip', ['netns', 'exec', ns.name, 'setpriv', '--bounding-set', '-net_admin', process.execPath, CLI, 'agent', 'install'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /egress-xds agent install: needs CAP_NET_ADMIN/);
    assert.match(result.stderr, /what to do: run it as root/);
    assert.equal(await snapshot(ns), before);
  } finally {
    await ns.delete();
  }
});

test('iptables without the connlimit extension: a ConnCapUnavailableError naming the flag that turns the cap off, before anything changes', async () => {
  const host = fakeHost((text) => (/ -j TPROXY -h$/.test(text) ? { exitCode: 0, stdout: 'TPROXY target options:\n', stderr: '' } : undefined));
  await assert.rejects(preflight(plan(), { runner: host, stateDir: '/x' }, 'install', root), (e: unknown) => {
    assert.ok(e instanceof ConnCapUnavailableError, String(e));
    assert.match(e.message, /connlimit/);
    assert.match(e.hint ?? '', /modprobe xt_connlimit/);
    assert.match(e.hint ?? '', /--max-connections-per-source 0/);
    return true;
  });
  assert.ok(host.log.every((c) => !/ -[ANI] /.test(c)), 'nothing was changed');
  // With the cap off, connlimit is not asked for.
  const off = fakeHost((text) => (/ -j TPROXY -h$/.test(text) ? { exitCode: 0, stdout: 'TPROXY target options:\n', stderr: '' } : undefined));
  await preflight(buildPlan(buildConfig({ noExcludeHostAddresses: true, maxConnectionsPerSource: '0' })), { runner: off, stateDir: '/x' }, 'install', root);
  assert.ok(!off.log.some((c) => c.includes('connlimit')));
});

test('nft refusing the cap\'s ct count in the check run is reported as the cap, not as a failed command', async () => {
  const stderr = '/dev/stdin:12:3-200: Error: Could not process rule: No such file or directory\nmeta mark & 0x1 == 0x1 ip saddr 172.31.0.0/16 tcp flags & (fin | syn | rst | ack) == syn add @egress_conn4 { ip saddr ct count over 512 } counter reject with tcp reset';
  const host = fakeHost((text) => (text === 'nft -c -f -' ? { exitCode: 1, stdout: '', stderr } : undefined));
  await assert.rejects(preflight(plan('nftables'), { runner: host, stateDir: '/x' }, 'install', root), (e: unknown) => {
    assert.ok(e instanceof ConnCapUnavailableError, String(e));
    assert.match(e.hint ?? '', /nft_connlimit/);
    return true;
  });
});
