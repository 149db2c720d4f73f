// The §6.9 example scripts, run inside a network namespace: with
// MICROVM_EGRESS_VIA_ENVOY=1 net-up adds no egress FORWARD ACCEPT / MASQUERADE;
// net-down removes the project's rules and leaves the agent's TPROXY alone.
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CLI, Netns, netnsSkipReason } from './support/netns.js';

const script = (name: string) => fileURLToPath(new URL(`../../../bootstrap/${name}`, import.meta.url));
const skip = (await netnsSkipReason(['iptables', 'iptables-save', 'bash'])) ?? (await tunSkipReason());

async function tunSkipReason(): Promise<string | undefined> {
  const { access } = await import('node:fs/promises');
  return access('/dev/net/tun').then(
    () => undefined,
    () => '/dev/net/tun is missing, so the scripts cannot create a TAP',
  );
}

const ARGS = ['web', 'tap-web', '172.31.0.1', '30', '172.31.0.2', 'lan0', '2201'];

async function tables(ns: Netns): Promise<{ filter: string; nat: string; mangle: string }> {
  const save = async (table: string) =>
    (await ns.must('iptables-save', '-t', table)).split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/g, '')).join('\n');
  return { filter: await save('filter'), nat: await save('nat'), mangle: await save('mangle') };
}

test('microvm-net-up/down honour MICROVM_EGRESS_VIA_ENVOY=1 and never touch the agent\'s rules', { skip }, async () => {
  const ns = await Netns.create();
  const bin = await mkdtemp(join(tmpdir(), 'egx-bin-'));
  try {
    // A veth pair stands in for the LAN interface (no dummy module needed).
    await ns.must('ip', 'link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'lan1');
    await ns.must('ip', 'addr', 'add', '10.250.20.1/24', 'dev', 'lan0');
    await ns.must('ip', 'link', 'set', 'lan0', 'up');
    // `egress-xds` for the scripts' status check: the built CLI.
    await writeFile(join(bin, 'egress-xds'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`);
    await chmod(join(bin, 'egress-xds'), 0o755);
    const egressXds = `EGRESS_XDS=${join(bin, 'egress-xds')}`;

    const installed = await ns.cli('install');
    assert.equal(installed.exitCode, 0, installed.stderr);
    const before = await tables(ns);

    // With Envoy: no egress ACCEPT, no MASQUERADE; ingress DNAT as in Step 3.
    const up = await ns.exec('env', 'MICROVM_EGRESS_VIA_ENVOY=1', egressXds, 'bash', script('microvm-net-up.sh'), ...ARGS);
    assert.equal(up.exitCode, 0, up.stderr);
    assert.match(up.stdout, /egress via Envoy/);
    assert.match(up.stderr, /Envoy is not listening|not all in place/, 'warns: nothing listens on 15001 here');
    const viaEnvoy = await tables(ns);
    assert.doesNotMatch(viaEnvoy.filter, /^-A FORWARD -i tap-web -o lan0 -m comment --comment "microvm:web" -j ACCEPT$/m);
    assert.doesNotMatch(viaEnvoy.nat, /MASQUERADE/);
    assert.match(viaEnvoy.nat, /-j DNAT --to-destination 172\.31\.0\.2:22/);
    assert.match(viaEnvoy.filter, /-i tap-web -o lan0 .*-j DROP/);
    assert.equal(viaEnvoy.mangle, before.mangle, 'net-up adds no TPROXY');

    const again = await ns.exec('env', 'MICROVM_EGRESS_VIA_ENVOY=1', egressXds, 'bash', script('microvm-net-up.sh'), ...ARGS);
    assert.equal(again.exitCode, 0, again.stderr);
    assert.deepEqual(await tables(ns), viaEnvoy, 'net-up twice adds nothing twice');

    const down = await ns.exec('bash', script('microvm-net-down.sh'), 'web', 'tap-web');
    assert.equal(down.exitCode, 0, down.stderr);
    assert.deepEqual(await tables(ns), before, 'net-down removes the project\'s rules and keeps the agent\'s');
    assert.notEqual((await ns.exec('ip', 'link', 'show', 'tap-web')).exitCode, 0, 'the TAP is gone');

    // Without Envoy: Step 3's direct NAT.
    const direct = await ns.exec('bash', script('microvm-net-up.sh'), ...ARGS);
    assert.equal(direct.exitCode, 0, direct.stderr);
    const nat = await tables(ns);
    assert.match(nat.filter, /^-A FORWARD -i tap-web -o lan0 -m comment --comment "microvm:web" -j ACCEPT$/m);
    assert.match(nat.nat, /-s 172\.31\.0\.0\/30 -o lan0 .*-j MASQUERADE/);
    assert.equal((await ns.exec('bash', script('microvm-net-down.sh'), 'web', 'tap-web')).exitCode, 0);
    assert.deepEqual(await tables(ns), before);
  } finally {
    await ns.delete();
    await rm(bin, { recursive: true, force: true });
  }
});

test('bootstrap/forward-proxy: the one-shot container\'s nft script is what `agent install --redirect nft-dnat --dry-run` prints', async () => {
  const { readFile } = await import('node:fs/promises');
  const { buildPlan } = await import('../../src/agent/plan.js');
  const { buildConfig } = await import('../../src/agent/config.js');
  const { renderNftScript } = await import('../../src/agent/render/nftables.js');
  const file = await readFile(script('forward-proxy/nftables/dnat.nft'), 'utf8');
  assert.equal(file, renderNftScript(buildPlan(buildConfig({ redirect: 'nft-dnat', dnatAddress: '172.28.0.2' }))));
  const compose = await readFile(script('forward-proxy/compose.yaml'), 'utf8');
  // The address the script sends to is Envoy's on the internal network; the ports are serve's.
  assert.match(compose, /proxy_egress:\n\s+ipv4_address: 172\.28\.0\.2\n/);
  assert.match(compose, /internal: true/);
  assert.match(compose, /enable_ip_masquerade: "false"/);
  assert.match(compose, /network_mode: service:application/);
  for (const v of ['http_proxy: http://envoy:10000', 'https_proxy: http://envoy:10000', 'no_proxy: 127.0.0.1,localhost']) assert.ok(compose.includes(v), v);
});
