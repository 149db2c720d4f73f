// The rule builder and both renderers, pure: no system is touched.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseIp } from '../../src/net/ip.js';
import { buildConfig, defaultConfig } from '../../src/agent/config.js';
import { dryRunInstall, dryRunUninstall } from '../../src/agent/apply.js';
import { formatCommand } from '../../src/agent/errors.js';
import { parseIpAddrJson } from '../../src/agent/hostAddresses.js';
import { buildPlan } from '../../src/agent/plan.js';
import { renderIptables, splitSaveLine } from '../../src/agent/render/iptables.js';
import { renderNftRemoveScript, renderNftRules, renderNftScript } from '../../src/agent/render/nftables.js';

const ip = (text: string) => parseIp(text)!;
const noHost = (flags: Parameters<typeof buildConfig>[0] = {}) => buildConfig({ ...flags, noExcludeHostAddresses: true });
const commandsOf = (steps: ReturnType<typeof dryRunInstall>) => steps.map((s) => formatCommand(s.command));

test('defaults give the seed\'s rules (§6.3, §6.4), in the agent\'s own chain', () => {
  const plan = buildPlan(noHost());
  assert.deepEqual(commandsOf(dryRunInstall(plan)), [
    'ip rule add fwmark 0x1/0x1 lookup 100',
    'ip route add local 0.0.0.0/0 dev lo table 100',
    'iptables -w 5 -t mangle -N EGRESS_XDS',
    'iptables -w 5 -t mangle -A EGRESS_XDS -m conntrack --ctdir REPLY -j RETURN',
    'iptables -w 5 -t mangle -A EGRESS_XDS -p tcp -s 172.31.0.0/16 -j TPROXY --tproxy-mark 0x1/0x1 --on-port 15001',
    'iptables -w 5 -t mangle -A PREROUTING -j EGRESS_XDS',
  ]);
});

test('uninstall is the seed\'s teardown (§6.8): the jump, the chain, the rule, the route', () => {
  assert.deepEqual(commandsOf(dryRunUninstall(buildPlan(noHost()))), [
    'iptables -w 5 -t mangle -D PREROUTING -j EGRESS_XDS',
    'iptables -w 5 -t mangle -F EGRESS_XDS',
    'iptables -w 5 -t mangle -X EGRESS_XDS',
    'ip rule del fwmark 0x1/0x1 lookup 100',
    'ip route del local 0.0.0.0/0 dev lo table 100',
  ]);
});

test('every undo takes back its step', () => {
  for (const step of dryRunInstall(buildPlan(noHost({ udpPort: '15002' })))) {
    const cmd = formatCommand(step.command);
    const undo = step.undo.map(formatCommand);
    if (cmd.includes(' -N ')) assert.deepEqual(undo, ['iptables -w 5 -t mangle -X EGRESS_XDS']);
    else assert.deepEqual(undo, [cmd.replace(' -A ', ' -D ').replace(' add ', ' del ')]);
  }
});

test('replies, then exclusions (flags, then host addresses), precede every TPROXY rule', () => {
  const hostAddresses = [ip('192.0.2.10'), ip('10.1.2.3'), ip('192.0.2.10'), ip('2001:db8::5')];
  const plan = buildPlan(buildConfig({ exclude: ['10.0.0.0/8', '198.51.100.0/24'] }), hostAddresses);
  const [v4] = renderIptables(plan);
  assert.deepEqual(v4!.specs.map((s) => s.join(' ')), [
    // Replies to connections opened from outside (SSH DNAT to a guest) are not egress.
    '-m conntrack --ctdir REPLY -j RETURN',
    '-d 10.0.0.0/8 -j RETURN',
    '-d 198.51.100.0/24 -j RETURN',
    // 10.1.2.3 is inside 10.0.0.0/8 already; 192.0.2.10 listed once; IPv6 not in play.
    '-d 192.0.2.10/32 -j RETURN',
    '-p tcp -s 172.31.0.0/16 -j TPROXY --tproxy-mark 0x1/0x1 --on-port 15001',
  ]);
  const nft = renderNftRules(plan).map((r) => r.text);
  const lastExclude = nft.map((t) => t.endsWith(' return')).lastIndexOf(true);
  const firstTproxy = nft.findIndex((t) => t.includes(' tproxy '));
  assert.ok(lastExclude >= 0 && lastExclude < firstTproxy);
});

test('--no-exclude-host-addresses leaves host addresses alone', () => {
  const plan = buildPlan(noHost(), [ip('192.0.2.10')]);
  assert.equal(plan.rules.filter((r) => r.kind === 'exclude').length, 0);
  assert.equal(plan.rules.filter((r) => r.kind === 'replies').length, 1);
});

test('UDP goes to --udp-port with the same mark', () => {
  const plan = buildPlan(noHost({ udpPort: '15053', mark: '0x40' }));
  assert.deepEqual(renderIptables(plan)[0]!.specs.map((s) => s.join(' ')), [
    '-m conntrack --ctdir REPLY -j RETURN',
    '-p tcp -s 172.31.0.0/16 -j TPROXY --tproxy-mark 0x40/0x40 --on-port 15001',
    '-p udp -s 172.31.0.0/16 -j TPROXY --tproxy-mark 0x40/0x40 --on-port 15053',
  ]);
  assert.ok(commandsOf(dryRunInstall(plan)).includes('ip rule add fwmark 0x40/0x40 lookup 100'));
});

test('IPv6: ip6tables and ip -6 rule and route, each family with its own sources and exclusions', () => {
  const config = buildConfig({ ipv6: true, source: ['172.31.0.0/16', 'fd00:31::/64'], table: '200' });
  const plan = buildPlan(config, [ip('192.0.2.1'), ip('2001:db8::1')]);
  const commands = commandsOf(dryRunInstall(plan));
  assert.deepEqual(commands, [
    'ip rule add fwmark 0x1/0x1 lookup 200',
    'ip route add local 0.0.0.0/0 dev lo table 200',
    'ip -6 rule add fwmark 0x1/0x1 lookup 200',
    'ip -6 route add local ::/0 dev lo table 200',
    'iptables -w 5 -t mangle -N EGRESS_XDS',
    'iptables -w 5 -t mangle -A EGRESS_XDS -m conntrack --ctdir REPLY -j RETURN',
    'iptables -w 5 -t mangle -A EGRESS_XDS -d 192.0.2.1/32 -j RETURN',
    'iptables -w 5 -t mangle -A EGRESS_XDS -p tcp -s 172.31.0.0/16 -j TPROXY --tproxy-mark 0x1/0x1 --on-port 15001',
    'iptables -w 5 -t mangle -A PREROUTING -j EGRESS_XDS',
    'ip6tables -w 5 -t mangle -N EGRESS_XDS',
    'ip6tables -w 5 -t mangle -A EGRESS_XDS -m conntrack --ctdir REPLY -j RETURN',
    'ip6tables -w 5 -t mangle -A EGRESS_XDS -d 2001:db8::1/128 -j RETURN',
    'ip6tables -w 5 -t mangle -A EGRESS_XDS -p tcp -s fd00:31::/64 -j TPROXY --tproxy-mark 0x1/0x1 --on-port 15001',
    'ip6tables -w 5 -t mangle -A PREROUTING -j EGRESS_XDS',
  ]);
  const nft = renderNftRules(buildPlan({ ...config, backend: 'nftables' }, [ip('2001:db8::1')])).map((r) => r.text);
  assert.ok(nft.includes('ip6 daddr 2001:db8::1/128 return'));
  assert.equal(nft.filter((r) => r === 'ct direction reply return').length, 1, 'one replies rule serves both families');
  assert.ok(nft.includes('ip6 saddr fd00:31::/64 meta l4proto tcp tproxy ip6 to :15001 meta mark set meta mark | 0x1 accept'));
});

test('the nft script replaces the agent\'s table atomically and fails closed', () => {
  const plan = buildPlan(noHost({ backend: 'nftables', exclude: ['10.0.0.0/8'] }));
  const script = renderNftScript(plan);
  const lines = script.split('\n');
  assert.deepEqual(lines.slice(0, 3), ['table inet egress_xds', 'delete table inet egress_xds', 'table inet egress_xds {']);
  assert.match(script, /type filter hook prerouting priority mangle; policy accept;/);
  const rules = renderNftRules(plan);
  assert.deepEqual(rules.map((r) => r.text), [
    'ct direction reply return',
    'ip daddr 10.0.0.0/8 return',
    'ip saddr 172.31.0.0/16 meta l4proto tcp tproxy ip to :15001 meta mark set meta mark | 0x1 accept',
    // nft's tproxy falls through when nothing listens; iptables' TPROXY drops. Same meaning here.
    'ip saddr 172.31.0.0/16 meta l4proto tcp drop',
  ]);
  for (const rule of rules) assert.ok(script.includes(`${rule.text} comment "${rule.id}"`));
  assert.equal(new Set(rules.map((r) => r.id)).size, rules.length);
  assert.equal(renderNftRemoveScript(), 'table inet egress_xds\ndelete table inet egress_xds\n');
  // The nft backend's dry-run: the policy routing, then one nft -f.
  const steps = dryRunInstall(plan);
  assert.deepEqual(commandsOf(steps), ['ip rule add fwmark 0x1/0x1 lookup 100', 'ip route add local 0.0.0.0/0 dev lo table 100', 'nft -f -']);
  assert.equal(steps[2]!.command.input, script);
});

test('--relax-rp-filter adds the sysctl, before the rules', () => {
  const commands = commandsOf(dryRunInstall(buildPlan(noHost({ relaxRpFilter: true }))));
  assert.equal(commands[2], 'sysctl -w net.ipv4.conf.all.rp_filter=0');
  assert.ok(!commandsOf(dryRunInstall(buildPlan(noHost()))).some((c) => c.startsWith('sysctl')));
});

test('the plan is stable: host addresses are sorted, so a repair pass sees no change', () => {
  const a = buildPlan(defaultConfig(), [ip('192.0.2.9'), ip('192.0.2.1')]);
  const b = buildPlan(defaultConfig(), [ip('192.0.2.1'), ip('192.0.2.9')]);
  assert.equal(renderNftScript(a), renderNftScript(b));
});

test('ip -j addr: every address but loopback-scope ones', () => {
  const json = JSON.stringify([
    { ifname: 'lo', addr_info: [{ family: 'inet', local: '127.0.0.1', scope: 'host' }, { family: 'inet6', local: '::1', scope: 'host' }] },
    { ifname: 'eth0', addr_info: [{ family: 'inet', local: '192.0.2.2', scope: 'global' }, { family: 'inet6', local: 'fe80::1', scope: 'link' }] },
    { ifname: 'tap0', addr_info: [{ family: 'inet', local: '172.31.0.1', scope: 'global' }] },
  ]);
  assert.deepEqual(parseIpAddrJson(json), [ip('192.0.2.2'), ip('fe80::1'), ip('172.31.0.1')]);
});

test('iptables -S lines split back into words, quotes honoured', () => {
  assert.deepEqual(splitSaveLine('-s 10.0.0.0/8 -m comment --comment "two words" -j RETURN'), ['-s', '10.0.0.0/8', '-m', 'comment', '--comment', 'two words', '-j', 'RETURN']);
});
