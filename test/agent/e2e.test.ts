// End to end: a "microvm" namespace dials an upstream address; with the agent's
// rules in the "host" namespace, a transparent listener there (what Envoy is)
// receives the connection and sees the upstream's address as its local address;
// after uninstall the connection reaches the upstream itself. All addresses
// (10.250.x) exist only in these namespaces, which have no way out.
//
//   microvm  m0 10.250.1.2/30 ──veth── h0 10.250.1.1/30  host (forwards, agent)
//                                      h1 10.250.2.1/30 ──veth── u0 10.250.2.2/30  upstream
//                                                                lo 10.250.3.1/32 (its own address)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Listener, dial, startListener, startUdpServer, udpDial } from './support/listener.js';
import { microvmHostUpstream, Netns, tproxySkipReason } from './support/netns.js';

const UPSTREAM = '10.250.3.1';

const skip = await tproxySkipReason();

test('TPROXY end to end: the transparent listener sees the original destination; after uninstall the upstream does', { skip, timeout: 500_000 }, async (t) => {
  const created: Netns[] = [];
  const listeners: Listener[] = [];
  try {
    const { mvm, host, up } = await microvmHostUpstream(created, [UPSTREAM]);

    listeners.push(await startListener(up, 'upstream', UPSTREAM, 443, false));
    // Services on the host: microVMs may reach 8443 (--allow-host-port), not 2200.
    listeners.push(await startListener(host, 'host-service', '10.250.1.1', 8443, false));
    listeners.push(await startListener(host, 'host-sshd', '10.250.1.1', 2200, false));
    // UDP upstreams: QUIC (443), DNS (53) and something else (5353).
    for (const port of [443, 53, 5353]) listeners.push(await startUdpServer(up, `upstream-udp-${port}`, UPSTREAM, port, false));
    // A service inside the microVM (what SSH through a DNAT is in Step 3).
    listeners.push(await startListener(mvm, 'guest-sshd', '10.250.1.2', 2222, false));

    const direct = await dial(mvm, UPSTREAM, 443);
    assert.deepEqual([direct.who, direct.local], ['upstream', `${UPSTREAM}:443`], `the path works without the agent: ${JSON.stringify(direct)}`);
    assert.equal((await dial(up, '10.250.1.2', 2222)).who, 'guest-sshd', 'ingress works without the agent');
    assert.equal((await dial(mvm, '10.250.1.1', 2200)).who, 'host-sshd', 'the host is open without the agent');
    assert.equal((await udpDial(mvm, UPSTREAM, 443)).who, 'upstream-udp-443', 'QUIC passes without the agent');
    assert.equal((await udpDial(mvm, UPSTREAM, 53)).who, 'upstream-udp-53', 'DNS passes without the agent');
    assert.equal((await dial(host, UPSTREAM, 443, 2, 0x20000)).who, 'upstream', 'a marked socket reaches 10.250.3.1 without the agent');

    for (const backend of ['iptables', 'nftables'] as const) {
      await t.test(backend, async () => {
        const flags = ['--backend', backend, '--source', '10.250.1.0/30', '--allow-host-port', '8443', '--udp-port', '15053'];
        const installed = await host.cli('install', ...flags);
        assert.equal(installed.exitCode, 0, installed.stderr);

        let envoy = await startListener(host, 'envoy', '0.0.0.0', 15001, true);
        const envoyDns = await startUdpServer(host, 'envoy-dns', '0.0.0.0', 15053, true);
        try {
          const redirected = await dial(mvm, UPSTREAM, 443);
          assert.equal(redirected.who, 'envoy', `redirected to the transparent listener: ${JSON.stringify(redirected)}`);
          assert.equal(redirected.local, `${UPSTREAM}:443`, 'getsockname() is the original destination');
          assert.equal(redirected.peer, '10.250.1.2');

          const hostService = await dial(mvm, '10.250.1.1', 8443);
          assert.equal(hostService.who, 'host-service', `--allow-host-port 8443 is open: ${JSON.stringify(hostService)}`);
          // Every other host port is refused at once, Envoy's own listener on the host's address included (no loop).
          assert.deepEqual(await dial(mvm, '10.250.1.1', 2200), { error: 'ConnectionRefusedError' }, 'the host\'s other services are closed to microVMs');
          assert.deepEqual(await dial(mvm, '10.250.1.1', 15001), { error: 'ConnectionRefusedError' }, 'Envoy\'s port on a host address is refused');

          // DNS, and only DNS, goes to Envoy's DNS listener, which answers as the resolver dialled.
          const dns = await udpDial(mvm, UPSTREAM, 53);
          assert.deepEqual([dns.who, dns.local, dns.peer], ['envoy-dns', `${UPSTREAM}:53`, '10.250.1.2'], `DNS to the DNS listener: ${JSON.stringify(dns)}`);
          const dnsToHost = await udpDial(mvm, '10.250.1.1', 53);
          assert.equal(dnsToHost.who, 'envoy-dns', `DNS to a resolver at the host's address too: ${JSON.stringify(dnsToHost)}`);
          assert.equal((await udpDial(mvm, UPSTREAM, 5353)).who, 'upstream-udp-5353', 'other UDP is not sent to the DNS listener');
          // QUIC is rejected (port unreachable), so a client falls back to TCP at once.
          assert.deepEqual(await udpDial(mvm, UPSTREAM, 443), { error: 'ConnectionRefusedError' }, 'QUIC refused');

          // Envoy's name-dialled sockets (marked 0x20000) never reach special addresses (10.250.3.1 is RFC 1918), nor the host itself.
          assert.deepEqual(await dial(host, UPSTREAM, 443, 2, 0x20000), { error: 'ConnectionRefusedError' }, 'marked upstream to RFC 1918 refused');
          assert.deepEqual(await dial(host, '10.250.1.1', 8443, 2, 0x20000), { error: 'ConnectionRefusedError' }, 'marked upstream to the host refused');
          assert.equal((await dial(host, UPSTREAM, 443)).who, 'upstream', 'unmarked sockets (original_dst_cluster, the host\'s own) are left alone');

          const ok = await host.cli('status', '--json', ...flags);
          assert.equal(ok.exitCode, 0, ok.stdout);
          const report = JSON.parse(ok.stdout) as { hostPorts: number[]; listeners: { family: number; protocol: string; listening: boolean }[] };
          assert.deepEqual(report.hostPorts, [8443]);
          assert.deepEqual(report.listeners.map((l) => `${l.family}/${l.protocol}/${l.listening}`), ['4/tcp/true', '4/udp/true']);

          // --allow-quic and --allow-upstream-cidr open exactly what they name.
          const opened = [...flags, '--allow-quic', `${UPSTREAM}/32`, '--allow-upstream-cidr', '10.250.3.0/24'];
          assert.equal((await host.cli('install', ...opened)).exitCode, 0);
          assert.equal((await udpDial(mvm, UPSTREAM, 443)).who, 'upstream-udp-443', 'QUIC to an allowed range passes');
          assert.equal((await dial(host, UPSTREAM, 443, 2, 0x20000)).who, 'upstream', 'marked upstream to an allowed range passes');
          assert.deepEqual(await dial(host, '10.250.1.1', 8443, 2, 0x20000), { error: 'ConnectionRefusedError' }, 'the host stays refused');
          assert.equal((await host.cli('install', ...flags)).exitCode, 0, 'back to the defaults');

          // Ingress stays as it was (seed §6.4): the upstream side connects into the
          // microVM, and the microVM's replies must not be taken for new egress.
          const inbound = await dial(up, '10.250.1.2', 2222);
          assert.equal(inbound.who, 'guest-sshd', `ingress to the microVM still works: ${JSON.stringify(inbound)}`);

          // Envoy down: the connection must fail, never slip past to the upstream.
          await envoy.stop();
          const closed = await dial(mvm, UPSTREAM, 443, 1);
          assert.ok(closed.error !== undefined && closed.who === undefined, `fails closed without a listener: ${JSON.stringify(closed)}`);
          assert.equal((await host.cli('status', ...flags)).exitCode, 3);
          envoy = await startListener(host, 'envoy', '0.0.0.0', 15001, true);

          const removed = await host.cli('uninstall', ...flags);
          assert.equal(removed.exitCode, 0, removed.stderr);
          const after = await dial(mvm, UPSTREAM, 443);
          assert.deepEqual([after.who, after.local], ['upstream', `${UPSTREAM}:443`], `after uninstall the upstream answers: ${JSON.stringify(after)}`);
          assert.equal((await dial(mvm, '10.250.1.1', 2200)).who, 'host-sshd', 'uninstall removes the host guard');
          assert.equal((await udpDial(mvm, UPSTREAM, 443)).who, 'upstream-udp-443', 'and the QUIC rule');
          assert.equal((await host.cli('status', ...flags)).exitCode, 1);
        } finally {
          await envoy.stop();
          await envoyDns.stop();
        }
      });
    }
  } finally {
    for (const listener of listeners) await listener.stop();
    for (const ns of created) await ns.delete();
  }
});

test('IPv6: the host guard lets a microVM reach only the allowed host port, on both backends', { skip, timeout: 300_000 }, async (t) => {
  const mvm = await Netns.create();
  const host = await Netns.create();
  const listeners: Listener[] = [];
  try {
    await mvm.must('ip', 'link', 'add', 'm0', 'type', 'veth', 'peer', 'name', 'h0', 'netns', host.name);
    await mvm.must('ip', '-6', 'addr', 'add', 'fd00:31::2/64', 'dev', 'm0', 'nodad');
    await mvm.must('ip', 'link', 'set', 'm0', 'up');
    await host.must('ip', '-6', 'addr', 'add', 'fd00:31::1/64', 'dev', 'h0', 'nodad');
    await host.must('ip', 'link', 'set', 'h0', 'up');
    listeners.push(await startListener(host, 'host-service', 'fd00:31::1', 8443, false));
    listeners.push(await startListener(host, 'host-sshd', 'fd00:31::1', 2200, false));
    listeners.push(await startListener(mvm, 'guest-service', 'fd00:31::2', 2222, false));
    assert.equal((await dial(mvm, 'fd00:31::1', 2200)).who, 'host-sshd', 'open without the agent');
    assert.equal((await dial(host, 'fd00:31::2', 2222, 2, 0x20000)).who, 'guest-service', 'a marked socket reaches fd00:31::2 without the agent');
    for (const backend of ['iptables', 'nftables'] as const) {
      await t.test(backend, async () => {
        const flags = ['--backend', backend, '--ipv6', '--source', 'fd00:31::/64', '--allow-host-port', '8443'];
        const installed = await host.cli('install', ...flags);
        assert.equal(installed.exitCode, 0, installed.stderr);
        assert.equal((await dial(mvm, 'fd00:31::1', 8443)).who, 'host-service', 'the allowed port');
        assert.deepEqual(await dial(mvm, 'fd00:31::1', 2200), { error: 'ConnectionRefusedError' }, 'any other host port is refused');
        // Envoy's marked sockets to a unique-local address (fc00::/7) are refused too.
        assert.deepEqual(await dial(host, 'fd00:31::2', 2222, 2, 0x20000), { error: 'ConnectionRefusedError' });
        assert.equal((await dial(host, 'fd00:31::2', 2222)).who, 'guest-service', 'unmarked sockets are left alone');
        const status = JSON.parse((await host.cli('status', '--json', ...flags)).stdout) as { listeners: { family: number }[]; pieces: { present: boolean }[] };
        assert.ok(status.pieces.every((p) => p.present));
        assert.deepEqual(status.listeners.map((l) => l.family), [6], 'the IPv6 listener is checked on its own');
        assert.equal((await host.cli('uninstall', ...flags)).exitCode, 0);
        assert.equal((await dial(mvm, 'fd00:31::1', 2200)).who, 'host-sshd', 'uninstall opens it again');
      });
    }
  } finally {
    for (const listener of listeners) await listener.stop();
    await mvm.delete();
    await host.delete();
  }
});
