// The command line: bad flags name the flag, exit 2 and run nothing; --dry-run
// prints the commands.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { parseAgentArgs } from '../../src/cli/agent.js';
import { FlagError } from '../../src/agent/errors.js';
import { CLI } from './support/netns.js';

const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, 'agent', ...args], { encoding: 'utf8', timeout: 20_000 });

test('flags become one AgentConfig', () => {
  const inv = parseAgentArgs(['install', '--port', '15006', '--source', '172.31.0.0/16', '--source', '172.30.0.0/16', '--exclude', '10.0.0.0/8', '--mark', '0x10', '--table', '110', '--udp-port', '15053', '--backend', 'nftables', '--no-exclude-host-addresses', '--dry-run']);
  assert.ok(inv);
  assert.equal(inv.action, 'install');
  assert.equal(inv.dryRun, true);
  assert.equal(inv.config.port, 15006);
  assert.equal(inv.config.sources.length, 2);
  assert.equal(inv.config.mark, 0x10);
  assert.equal(inv.config.table, 110);
  assert.equal(inv.config.udpPort, 15053);
  assert.equal(inv.config.backend, 'nftables');
  assert.equal(inv.config.excludeHostAddresses, false);
  assert.equal(parseAgentArgs(['run', '--interval', '0.5'])!.intervalMs, 500);
  assert.equal(parseAgentArgs(['--help']), undefined);
});

test('bad flags throw a FlagError naming the flag', () => {
  const cases: [string[], string][] = [
    [['install', '--port', '0'], '--port'],
    [['install', '--bogus'], '--bogus'],
    [['install', '--port'], '--port'],
    [['status', '--dry-run'], '--dry-run'],
    [['install', '--json'], '--json'],
    [['install', '--interval', '5'], '--interval'],
    [['run', '--interval', '0'], '--interval'],
    [['frobnicate'], 'command'],
    [[], 'command'],
    [['install', 'extra'], 'command'],
    [['install', '--source', '1.2.3.4/40'], '--source'],
    [['install', '--redirect', 'nft-dnat', '--dnat-address', '10.0.0.2', '--netns', '../etc'], '--netns'],
    [['install', '--allow-host-port', 'ssh'], '--allow-host-port'],
    [['install', '--max-connections-per-source', '-1'], '--max-connections-per-source'],
    [['install', '--max-connections-per-source', 'many'], '--max-connections-per-source'],
    [['status', '--max-connections-per-source', '1.5'], '--max-connections-per-source'],
    [['install', '--max-connections-per-source', '4294967296'], '--max-connections-per-source'],
    [['install', '--redirect', 'nft-dnat', '--dnat-address', '10.0.0.2', '--max-connections-per-source', ''], '--max-connections-per-source'],
  ];
  for (const [argv, flag] of cases) {
    assert.throws(() => parseAgentArgs(argv), (e: unknown) => e instanceof FlagError && e.flag === flag, argv.join(' '));
  }
});

test('the CLI exits 2 on a bad flag, names it, and runs nothing', () => {
  // Not root or root alike: flags are checked before anything is run or read.
  const result = cli('install', '--mark', 'banana');
  assert.equal(result.status, 2);
  assert.match(result.stderr, /--mark: "banana" is not a firewall mark/);
  assert.equal(result.stdout, '');
});

test('--dry-run prints the exact commands for the defaults and changes nothing', () => {
  const result = cli('install', '--dry-run', '--no-exclude-host-addresses', '--upstream-mark', '0');
  assert.equal(result.status, 0, result.stderr);
  assert.equal(
    result.stdout,
    [
      'ip rule add fwmark 0x1/0x1 lookup 100',
      'ip route add local 0.0.0.0/0 dev lo table 100',
      // The guard (first in INPUT and FORWARD): replies and TPROXYed packets pass, QUIC is refused.
      'iptables -w 5 -t filter -N EGRESS_XDS_GUARD',
      'iptables -w 5 -t filter -A EGRESS_XDS_GUARD -m conntrack --ctdir REPLY -j RETURN',
      'iptables -w 5 -t filter -A EGRESS_XDS_GUARD -m mark --mark 0x1/0x1 -j RETURN',
      'iptables -w 5 -t filter -A EGRESS_XDS_GUARD -s 172.31.0.0/16 -p udp -m udp --dport 443 -j REJECT',
      'iptables -w 5 -t filter -I INPUT 1 -j EGRESS_XDS_GUARD',
      'iptables -w 5 -t filter -I FORWARD 1 -j EGRESS_XDS_GUARD',
      // The cap (first in INPUT): a TPROXYed SYN from an address with 512 open connections is reset.
      'iptables -w 5 -t filter -N EGRESS_XDS_CAP',
      'iptables -w 5 -t filter -A EGRESS_XDS_CAP -s 172.31.0.0/16 -p tcp --syn -m mark --mark 0x1/0x1 -m connlimit --connlimit-above 512 --connlimit-mask 32 --connlimit-saddr -j REJECT --reject-with tcp-reset',
      'iptables -w 5 -t filter -I INPUT 1 -j EGRESS_XDS_CAP',
      'iptables -w 5 -t mangle -N EGRESS_XDS',
      'iptables -w 5 -t mangle -A EGRESS_XDS -m conntrack --ctdir REPLY -j RETURN',
      'iptables -w 5 -t mangle -A EGRESS_XDS -p tcp -s 172.31.0.0/16 -j TPROXY --tproxy-mark 0x1/0x1 --on-port 15001',
      'iptables -w 5 -t mangle -A PREROUTING -j EGRESS_XDS',
      '',
    ].join('\n'),
  );
  const nft = cli('install', '--dry-run', '--no-exclude-host-addresses', '--backend', 'nftables');
  assert.equal(nft.status, 0, nft.stderr);
  assert.match(nft.stdout, /^nft -f - <<'EOF'\ntable inet egress_xds\ndelete table inet egress_xds\ntable inet egress_xds \{\n/m);
  assert.match(nft.stdout, /\nEOF\n$/);
});

test('--relax-rp-filter prints the seed\'s warning', () => {
  const result = cli('install', '--dry-run', '--no-exclude-host-addresses', '--relax-rp-filter');
  assert.equal(result.status, 0);
  assert.match(result.stderr, /weaken reverse-path validation/);
  assert.match(result.stdout, /sysctl -w net\.ipv4\.conf\.all\.rp_filter=0/);
});

test('--help exits 0 and lists every flag', () => {
  const result = cli('--help');
  assert.equal(result.status, 0);
  for (const flag of ['--backend', '--port', '--source', '--mark', '--table', '--udp-port', '--ipv6', '--exclude', '--no-exclude-host-addresses', '--relax-rp-filter', '--max-connections-per-source', '--dry-run', '--json', '--interval', '--state-dir']) {
    assert.ok(result.stdout.includes(flag), flag);
  }
});
