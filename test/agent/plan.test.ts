// The rule builder and both renderers, pure: no system is touched.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseIp } from '../../src/net/ip.js';
import { buildConfig, defaultConfig } from '../../src/agent/config.js';
import { FlagError } from '../../src/agent/errors.js';
import { dryRunInstall, dryRunUninstall } from '../../src/agent/apply.js';
import { formatCommand } from '../../src/agent/errors.js';
import { parseIpAddrJson } from '../../src/agent/hostAddresses.js';
import { buildPlan } from '../../src/agent/plan.js';
import { renderIptables, ruleSpec, splitSaveLine } from '../../src/agent/render/iptables.js';
import { renderNftCapTable, renderNftRemoveScript, renderNftRules, renderNftScript, renderNftScripts, renderNftTable, renderNftTableScript } from '../../src/agent/render/nftables.js';
import { SPECIAL_RANGES as AGENT_SPECIAL } from '../../src/agent/specialRanges.js';
import { SPECIAL_RANGES as COMPILE_SPECIAL } from '../../src/compile/specialAddresses.js';

const ip = (text: string) => parseIp(text)!;
const noHost = (flags: Parameters<typeof buildConfig>[0] = {}) => buildConfig({ ...flags, noExcludeHostAddresses: true });
const commandsOf = (steps: ReturnType<typeof dryRunInstall>) => steps.map((s) => formatCommand(s.command));
/** The TPROXY side only (routing and mangle): the guards have their own tests. */
const tproxyOnly = (commands: string[]) => commands.filter((c) => !c.includes(' -t filter '));

test('defaults give the seed\'s rules (§6.3, §6.4), in the agent\'s own chain', () => {
  const plan = buildPlan(noHost());
  assert.deepEqual(tproxyOnly(commandsOf(dryRunInstall(plan))), [
    'ip rule add fwmark 0x1/0x1 lookup 100',
    'ip route add local 0.0.0.0/0 dev lo table 100',
    'iptables -w 5 -t mangle -N EGRESS_XDS',
    'iptables -w 5 -t mangle -A EGRESS_XDS -m conntrack --ctdir REPLY -j RETURN',
    'iptables -w 5 -t mangle -A EGRESS_XDS -p tcp -s 172.31.0.0/16 -j TPROXY --tproxy-mark 0x1/0x1 --on-port 15001',
    'iptables -w 5 -t mangle -A PREROUTING -j EGRESS_XDS',
  ]);
});

test('uninstall is the seed\'s teardown (§6.8): the jump, the chain, the rule, the route', () => {
  assert.deepEqual(tproxyOnly(commandsOf(dryRunUninstall(buildPlan(noHost())))), [
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
    if (cmd.includes(' -N ')) assert.deepEqual(undo, [cmd.replace(' -N ', ' -X ')]);
    else if (/ -I [A-Z]+ 1 /.test(cmd)) assert.deepEqual(undo, [cmd.replace(/ -I ([A-Z]+) 1 /, ' -D $1 ')]);
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

test('--udp-port sends DNS (UDP to port 53), and only DNS, to the DNS listener, with the same mark, before the host addresses', () => {
  const plan = buildPlan(buildConfig({ udpPort: '15053', mark: '0x40', exclude: ['10.0.0.0/8'] }), [ip('192.0.2.1')]);
  assert.deepEqual(renderIptables(plan)[0]!.specs.map((s) => s.join(' ')), [
    '-m conntrack --ctdir REPLY -j RETURN',
    // An operator's exclusion still wins, but a resolver at a host address (the gateway) is answered by Envoy.
    '-d 10.0.0.0/8 -j RETURN',
    '-p udp -s 172.31.0.0/16 -m udp --dport 53 -j TPROXY --tproxy-mark 0x40/0x40 --on-port 15053',
    '-d 192.0.2.1/32 -j RETURN',
    '-p tcp -s 172.31.0.0/16 -j TPROXY --tproxy-mark 0x40/0x40 --on-port 15001',
  ]);
  const nft = renderNftRules(buildPlan({ ...plan.config, backend: 'nftables' }, [])).map((r) => r.text);
  assert.ok(nft.includes('ip saddr 172.31.0.0/16 meta l4proto udp th dport 53 tproxy ip to :15053 meta mark set meta mark | 0x40 accept'));
  // Fail closed: with Envoy's DNS listener down, DNS is dropped rather than sent on.
  assert.ok(nft.includes('ip saddr 172.31.0.0/16 meta l4proto udp th dport 53 drop'));
  assert.ok(!nft.some((t) => t.includes('l4proto udp') && !t.includes('dport 53')), 'no other UDP is redirected');
  assert.ok(commandsOf(dryRunInstall(plan)).includes('ip rule add fwmark 0x40/0x40 lookup 100'));
});

test('IPv6: ip6tables and ip -6 rule and route, each family with its own sources and exclusions', () => {
  const config = buildConfig({ ipv6: true, source: ['172.31.0.0/16', 'fd00:31::/64'], table: '200' });
  const plan = buildPlan(config, [ip('192.0.2.1'), ip('2001:db8::1')]);
  const commands = tproxyOnly(commandsOf(dryRunInstall(plan)));
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
  // The nft backend's dry-run: the policy routing, then one nft -f per table: the cap's, then this one.
  const steps = dryRunInstall(plan);
  assert.deepEqual(commandsOf(steps), ['ip rule add fwmark 0x1/0x1 lookup 100', 'ip route add local 0.0.0.0/0 dev lo table 100', 'nft -f -', 'nft -f -']);
  assert.match(steps[2]!.command.input!, /^table inet egress_xds_cap\n/);
  assert.equal(steps[3]!.command.input, script);
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

test('the guards: host ports, QUIC and Envoy\'s marked upstream, per family, from one config', () => {
  const config = buildConfig({
    ipv6: true,
    source: ['172.31.0.0/16', 'fd00:31::/64'],
    allowHostPort: ['53', '53'],
    allowQuic: ['192.0.2.0/24'],
    allowUpstreamCidr: ['10.20.0.0/16', 'fd20::/16'],
  });
  const plan = buildPlan(config, [ip('192.0.2.1')]);
  const guard = (family: 4 | 6) => plan.guard.filter((r) => r.family === family).map((r) => ruleSpec(r).join(' '));
  assert.deepEqual(guard(4), [
    '-m conntrack --ctdir REPLY -j RETURN',
    '-m mark --mark 0x1/0x1 -j RETURN',
    '-s 172.31.0.0/16 -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 53 -j RETURN',
    '-s 172.31.0.0/16 -p udp -m addrtype --dst-type LOCAL -m udp --dport 53 -j RETURN',
    '-s 172.31.0.0/16 -m addrtype --dst-type LOCAL -j REJECT',
    '-s 172.31.0.0/16 -d 192.0.2.0/24 -p udp -m udp --dport 443 -j RETURN',
    '-s 172.31.0.0/16 -p udp -m udp --dport 443 -j REJECT',
  ]);
  assert.deepEqual(guard(6), [
    '-m conntrack --ctdir REPLY -j RETURN',
    '-m mark --mark 0x1/0x1 -j RETURN',
    '-s fd00:31::/64 -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 53 -j RETURN',
    '-s fd00:31::/64 -p udp -m addrtype --dst-type LOCAL -m udp --dport 53 -j RETURN',
    // Neighbour discovery: the host must hear a microVM's advertisements, sent to its own address.
    '-s fd00:31::/64 -p ipv6-icmp -m icmp6 --icmpv6-type neighbour-solicitation -j RETURN',
    '-s fd00:31::/64 -p ipv6-icmp -m icmp6 --icmpv6-type neighbour-advertisement -j RETURN',
    '-s fd00:31::/64 -m addrtype --dst-type LOCAL -j REJECT',
    '-s fd00:31::/64 -p udp -m udp --dport 443 -j REJECT',
  ]);
  const upstream = (family: 4 | 6) => plan.upstream.filter((r) => r.family === family).map((r) => ruleSpec(r).join(' '));
  const m = '-m mark --mark 0x20000/0x20000';
  assert.deepEqual(upstream(4), [
    `-d 10.20.0.0/16 ${m} -j RETURN`,
    ...['0.0.0.0/8', '127.0.0.0/8', '169.254.0.0/16', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10'].map((c) => `-d ${c} ${m} -j REJECT`),
    `${m} -m addrtype --dst-type LOCAL -j REJECT`,
  ]);
  assert.deepEqual(upstream(6), [
    `-d fd20::/16 ${m} -j RETURN`,
    ...['::1/128', '::/128', 'fc00::/7', 'fe80::/10', '::ffff:0:0/96'].map((c) => `-d ${c} ${m} -j REJECT`),
    `${m} -m addrtype --dst-type LOCAL -j REJECT`,
  ]);
  // The guards' jumps go first in their hooks, and install puts them in before the TPROXY chain.
  const commands = commandsOf(dryRunInstall(plan));
  for (const hook of ['INPUT', 'FORWARD']) assert.ok(commands.includes(`iptables -w 5 -t filter -I ${hook} 1 -j EGRESS_XDS_GUARD`));
  assert.ok(commands.includes('ip6tables -w 5 -t filter -I OUTPUT 1 -j EGRESS_XDS_UPSTREAM'));
  assert.ok(commands.indexOf('iptables -w 5 -t filter -I INPUT 1 -j EGRESS_XDS_GUARD') < commands.indexOf('iptables -w 5 -t mangle -A PREROUTING -j EGRESS_XDS'));
  // nft: the same rules, the guard in both the input and forward chains.
  const table = renderNftTable(buildPlan({ ...config, backend: 'nftables' }, []));
  assert.deepEqual(table.chains.map((c) => `${c.name}:${c.hook.hook}`), ['prerouting:prerouting', 'input:input', 'forward:forward', 'output:output']);
  assert.deepEqual(table.chains[1]!.rules, table.chains[2]!.rules);
  assert.ok(table.chains[1]!.rules.some((r) => r.text === 'ip6 saddr fd00:31::/64 fib daddr type local reject'));
  assert.ok(table.chains[1]!.rules.some((r) => r.text === 'ip6 saddr fd00:31::/64 icmpv6 type nd-neighbor-advert return'));
  assert.ok(table.chains[3]!.rules.some((r) => r.text === 'meta mark & 0x20000 == 0x20000 ip6 daddr ::ffff:0:0/96 reject'));
});

test('--no-exclude-host-addresses drops the host rules (Envoy decides); --upstream-mark 0 drops the upstream chain', () => {
  const plan = buildPlan(noHost({ allowHostPort: ['22'], upstreamMark: '0' }));
  assert.ok(!plan.guard.some((r) => r.kind === 'host-allow' || r.kind === 'host-reject'));
  assert.deepEqual(plan.upstream, []);
  assert.ok(!commandsOf(dryRunInstall(plan)).some((c) => c.includes('EGRESS_XDS_UPSTREAM')));
  assert.deepEqual(renderNftTable(buildPlan({ ...plan.config, backend: 'nftables' })).chains.map((c) => c.name), ['prerouting', 'input', 'forward']);
});

test('the agent refuses the same special ranges the compiler names', () => {
  assert.deepEqual(AGENT_SPECIAL.map((r) => r.cidr), COMPILE_SPECIAL.map((r) => r.cidr));
});

test('--redirect nft-dnat: seed 000\'s rule in its own table, after what must never loop', () => {
  const plan = buildPlan(buildConfig({ redirect: 'nft-dnat', dnatAddress: '172.20.0.2', dnatPort: ['443', '8443'] }));
  const script = renderNftScript(plan);
  assert.equal(
    script.replace(/ comment "egress-xds:[0-9a-f]{12}"/g, ''),
    [
      'table ip egress_xds_dnat',
      'delete table ip egress_xds_dnat',
      'table ip egress_xds_dnat {',
      '\tset egress_conn4 {',
      '\t\ttype ipv4_addr; size 65535; flags dynamic;',
      '\t}',
      '\tchain output {',
      '\t\ttype nat hook output priority -100; policy accept;',
      '\t\tmeta mark & 0x20000 == 0x20000 return',
      '\t\tip daddr 127.0.0.0/8 return',
      '\t\tip daddr 172.20.0.2/32 return',
      '\t\ttcp dport { 443, 8443 } dnat to 172.20.0.2:10001',
      '\t}',
      // After the DNAT (filter priority), so Envoy's address and port say which connections are Envoy's.
      '\tchain conncap {',
      '\t\ttype filter hook output priority filter; policy accept;',
      '\t\ttcp flags & (fin | syn | rst | ack) == syn ct status dnat ip daddr 172.20.0.2 tcp dport 10001 add @egress_conn4 { ip saddr ct count over 512 } counter reject with tcp reset',
      '\t}',
      '}',
      '',
    ].join('\n'),
  );
  assert.deepEqual(commandsOf(dryRunInstall(plan)), ['nft -f -']);
  assert.deepEqual(commandsOf(dryRunUninstall(plan)), ['nft delete table ip egress_xds_dnat']);
  const one = renderNftScript(buildPlan(buildConfig({ redirect: 'nft-dnat', dnatAddress: '10.0.0.9', port: '10443', upstreamMark: '0' })));
  assert.match(one, /\n\t\ttcp dport 443 dnat to 10\.0\.0\.9:10443 comment/);
  assert.ok(!one.includes('meta mark'));
});

test('the connection cap: one rule per microVM range and family, per address (mask 32 / 128), TCP to Envoy only', () => {
  const config = buildConfig({ ipv6: true, source: ['172.31.0.0/16', '10.9.0.0/24', 'fd00:31::/64'], allowHostPort: ['53'], udpPort: '15053', maxConnectionsPerSource: '3' });
  const plan = buildPlan(config, [ip('192.0.2.1')]);
  assert.deepEqual(
    plan.cap.map((r) => `${r.family} ${r.limit}`),
    ['4 3', '4 3', '6 3'],
  );
  const cap = (family: 4 | 6) => plan.cap.filter((r) => r.family === family).map((r) => ruleSpec(r).join(' '));
  const tail = (mask: number) => `-m connlimit --connlimit-above 3 --connlimit-mask ${mask} --connlimit-saddr -j REJECT --reject-with tcp-reset`;
  assert.deepEqual(cap(4), [
    `-s 172.31.0.0/16 -p tcp --syn -m mark --mark 0x1/0x1 ${tail(32)}`,
    `-s 10.9.0.0/24 -p tcp --syn -m mark --mark 0x1/0x1 ${tail(32)}`,
  ]);
  assert.deepEqual(cap(6), [`-s fd00:31::/64 -p tcp --syn -m mark --mark 0x1/0x1 ${tail(128)}`]);

  // iptables: its own filter chain per family, jumped to first from INPUT (where TPROXYed packets are delivered),
  // installed before the TPROXY rules so no connection reaches Envoy uncapped; removed with the rest.
  const commands = commandsOf(dryRunInstall(plan));
  for (const tool of ['iptables', 'ip6tables']) {
    assert.ok(commands.includes(`${tool} -w 5 -t filter -N EGRESS_XDS_CAP`), tool);
    assert.ok(commands.includes(`${tool} -w 5 -t filter -I INPUT 1 -j EGRESS_XDS_CAP`), tool);
    assert.ok(!commands.includes(`${tool} -w 5 -t filter -I FORWARD 1 -j EGRESS_XDS_CAP`), `${tool}: a TPROXYed packet is never forwarded`);
    assert.ok(commands.indexOf(`${tool} -w 5 -t filter -I INPUT 1 -j EGRESS_XDS_CAP`) < commands.indexOf(`${tool} -w 5 -t mangle -A PREROUTING -j EGRESS_XDS`), tool);
  }
  const removal = commandsOf(dryRunUninstall(plan));
  for (const tool of ['iptables', 'ip6tables']) {
    assert.ok(removal.includes(`${tool} -w 5 -t filter -D INPUT -j EGRESS_XDS_CAP`) && removal.includes(`${tool} -w 5 -t filter -X EGRESS_XDS_CAP`), tool);
  }

  // nftables: a table of its own (the TPROXY table is rewritten when the host's addresses change, which would
  // empty the sets), a filter chain on the input hook and a dynamic set per family.
  const nftPlan = buildPlan({ ...config, backend: 'nftables' }, []);
  assert.ok(!renderNftScript(nftPlan).includes('conncap') && !renderNftTable(nftPlan).chains.some((c) => c.name === 'conncap'));
  const table = renderNftCapTable(nftPlan);
  assert.equal(`${table.family} ${table.name}`, 'inet egress_xds_cap');
  assert.deepEqual(table.chains.map((c) => c.name), ['conncap']);
  assert.deepEqual(table.sets, [
    { name: 'egress_conn4', type: 'ipv4_addr', size: 65535 },
    { name: 'egress_conn6', type: 'ipv6_addr', size: 65535 },
  ]);
  const conncap = table.chains.find((c) => c.name === 'conncap')!;
  assert.deepEqual(conncap.hook, { type: 'filter', hook: 'input', priorityName: 'filter', priority: 0, policy: 'accept' });
  const syn = 'tcp flags & (fin | syn | rst | ack) == syn';
  assert.deepEqual(conncap.rules.map((r) => r.text), [
    `meta mark & 0x1 == 0x1 ip saddr 172.31.0.0/16 ${syn} add @egress_conn4 { ip saddr ct count over 3 } counter reject with tcp reset`,
    `meta mark & 0x1 == 0x1 ip saddr 10.9.0.0/24 ${syn} add @egress_conn4 { ip saddr ct count over 3 } counter reject with tcp reset`,
    `meta mark & 0x1 == 0x1 ip6 saddr fd00:31::/64 ${syn} add @egress_conn6 { ip6 saddr ct count over 3 } counter reject with tcp reset`,
  ]);
  const script = renderNftTableScript(table);
  assert.ok(renderNftScripts(nftPlan).startsWith(script), 'preflight checks the cap table too');
  const installs = commandsOf(dryRunInstall(nftPlan));
  assert.deepEqual(installs, ['ip rule add fwmark 0x1/0x1 lookup 100', 'ip route add local 0.0.0.0/0 dev lo table 100', 'ip -6 rule add fwmark 0x1/0x1 lookup 100', 'ip -6 route add local ::/0 dev lo table 100', 'nft -f -', 'nft -f -']);
  assert.equal(dryRunInstall(nftPlan)[4]!.command.input, script, 'the cap table first, before the TPROXY rules');
  assert.deepEqual(commandsOf(dryRunUninstall(nftPlan)).slice(0, 2), ['nft delete table inet egress_xds', 'nft delete table inet egress_xds_cap']);
  assert.match(script, /^table inet egress_xds_cap \{\n\tset egress_conn4 \{\n\t\ttype ipv4_addr; size 65535; flags dynamic;\n\t\}\n\tset egress_conn6 \{\n\t\ttype ipv6_addr; size 65535; flags dynamic;\n\t\}\n\tchain conncap \{/m);
  assert.match(script, /\tchain conncap \{\n\t\ttype filter hook input priority filter; policy accept;\n\t\tmeta mark & 0x1 == 0x1 ip saddr 172\.31\.0\.0\/16 /);
});

test('the connection cap\'s default is 512; IPv4 only without --ipv6; --max-connections-per-source 0 adds nothing, on either backend or redirect', () => {
  assert.deepEqual(buildPlan(noHost()).cap.map((r) => `${r.family} ${r.limit}`), ['4 512']);
  for (const backend of ['iptables', 'nftables'] as const) {
    const off = buildPlan(noHost({ backend, maxConnectionsPerSource: '0', ipv6: true, source: ['172.31.0.0/16', 'fd00::/64'] }));
    assert.deepEqual(off.cap, []);
    const text = backend === 'iptables' ? commandsOf(dryRunInstall(off)).join('\n') : dryRunInstall(off).map((step) => `${formatCommand(step.command)}\n${step.command.input ?? ''}`).join('');
    assert.ok(!/EGRESS_XDS_CAP|conncap|egress_conn|connlimit|ct count/.test(text), `${backend}: ${text}`);
    // Uninstall still looks for the cap chain an earlier install may have added.
    if (backend === 'iptables') assert.ok(commandsOf(dryRunUninstall(buildPlan(noHost({ maxConnectionsPerSource: '0' })))).length > 0);
  }
  const dnatOff = renderNftScript(buildPlan(buildConfig({ redirect: 'nft-dnat', dnatAddress: '10.0.0.9', maxConnectionsPerSource: '0' })));
  assert.ok(!/conncap|egress_conn|ct count/.test(dnatOff), dnatOff);
  assert.ok(!/set /.test(dnatOff));
});

test('--max-connections-per-source: a whole number from 0 to 2^32-1, else a FlagError naming it', () => {
  assert.equal(buildConfig({ maxConnectionsPerSource: '4294967295' }).maxConnectionsPerSource, 4294967295);
  assert.equal(buildConfig({ maxConnectionsPerSource: '0' }).maxConnectionsPerSource, 0);
  for (const bad of ['', '-1', '1e3', '0x10', '4294967296', ' 5', 'ten']) {
    assert.throws(() => buildConfig({ maxConnectionsPerSource: bad }), (e: unknown) => e instanceof FlagError && e.flag === '--max-connections-per-source', JSON.stringify(bad));
  }
});
