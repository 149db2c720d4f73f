// --redirect nft-dnat (seed 000) with real nft, in namespaces the test creates:
// an application's port-443 connection lands on the forward proxy's TLS port
// with its original destination readable (SO_ORIGINAL_DST); install twice is one
// set; uninstall leaves exactly what was there. The agent runs in one namespace
// ("host") and works in the application's (--netns), as for a container.
//
//   app: lo, d0 (a veth whose peer d1 leads nowhere) 10.251.0.2/24, default via 10.251.0.1 (nowhere: only the DNAT gets a connection through)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dial, startOriginalDstListener } from './support/listener.js';
import { dnatAppLink, Netns, netnsSkipReason, snapshot } from './support/netns.js';

const skip = await netnsSkipReason(['nft', 'python3']);
const PROXY = '10.251.0.2';
const REMOTE = '198.51.100.7';

test('nft-dnat: port 443 to the TLS listener with the original destination; idempotent; status; uninstall leaves nothing', { skip, timeout: 400_000 }, async () => {
  const host = await Netns.create();
  const app = await Netns.create();
  try {
    await dnatAppLink(app, PROXY);
    const envoy = await startOriginalDstListener(app, 'envoy-tls', PROXY, 10001);
    try {
      const flags = ['--redirect', 'nft-dnat', '--dnat-address', PROXY, '--netns', app.name];
      const before = await snapshot(app);
      assert.ok((await dial(app, REMOTE, 443, 1)).error, 'nothing answers without the DNAT');

      const dry = await host.cli('install', '--dry-run', ...flags);
      assert.equal(dry.exitCode, 0, dry.stderr);
      assert.match(dry.stdout, /^nft -f - <<'EOF'\ntable ip egress_xds_dnat\ndelete table ip egress_xds_dnat\ntable ip egress_xds_dnat \{\n/);
      assert.match(dry.stdout, /\t\ttcp dport 443 dnat to 10\.251\.0\.2:10001 comment "egress-xds:[0-9a-f]{12}"\n/);
      assert.equal(await snapshot(app), before, 'a dry run changes nothing');

      const first = await host.cli('install', ...flags);
      assert.equal(first.exitCode, 0, first.stderr);
      assert.equal((await snapshot(host)).includes('egress_xds'), false, 'the rules went into the application\'s namespace, not the agent\'s');
      const installed = await snapshot(app);

      const redirected = await dial(app, REMOTE, 443);
      assert.deepEqual([redirected.who, redirected.local, redirected.original], ['envoy-tls', `${PROXY}:10001`, `${REMOTE}:443`], JSON.stringify(redirected));
      assert.ok((await dial(app, REMOTE, 80, 1)).error, 'other ports are not redirected');
      // Envoy's own marked upstream connections are never sent back to it (no loop when Envoy shares the namespace).
      assert.ok((await dial(app, REMOTE, 443, 1, 0x20000)).error, 'marked connections are not redirected');

      const second = await host.cli('install', ...flags);
      assert.equal(second.exitCode, 0, second.stderr);
      assert.match(second.stdout, /already installed/);
      assert.equal(await snapshot(app), installed, 'install twice is one set');
      const tables = (await app.must('nft', 'list', 'tables')).split('\n').filter((l) => l.includes('egress_xds'));
      assert.deepEqual(tables, ['table ip egress_xds_dnat']);

      const status = await host.cli('status', '--json', ...flags);
      assert.equal(status.exitCode, 0, status.stdout);
      const report = JSON.parse(status.stdout) as { pieces: { id: string; present: boolean }[] };
      assert.ok(report.pieces.length >= 6 && report.pieces.every((p) => p.present));

      // Someone flushes the chain: status sees it, install puts it back.
      await app.must('nft', 'flush', 'chain', 'ip', 'egress_xds_dnat', 'output');
      assert.equal((await host.cli('status', ...flags)).exitCode, 1);
      assert.equal((await host.cli('install', ...flags)).exitCode, 0);
      assert.equal(await snapshot(app), installed);

      const removed = await host.cli('uninstall', ...flags);
      assert.equal(removed.exitCode, 0, removed.stderr);
      assert.equal(await snapshot(app), before, 'uninstall leaves exactly what was there');
      assert.ok((await dial(app, REMOTE, 443, 1)).error, 'no longer redirected');
      assert.equal((await host.cli('status', ...flags)).exitCode, 1);
      assert.match((await host.cli('uninstall', ...flags)).stdout, /nothing installed/);

      // A namespace that does not exist: a clear error, nothing anywhere.
      const missing = await host.cli('install', '--redirect', 'nft-dnat', '--dnat-address', PROXY, '--netns', 'exa-no-such-ns');
      assert.notEqual(missing.exitCode, 0);
      assert.match(missing.stderr, /exa-no-such-ns/);
    } finally {
      await envoy.stop();
    }
  } finally {
    await app.delete();
    await host.delete();
  }
});
