// Flag validation: every bad value is refused with the flag's name.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatCidr } from '../../src/net/ip.js';
import { buildConfig, defaultConfig } from '../../src/agent/config.js';
import { FlagError } from '../../src/agent/errors.js';

const refuses = (flags: Parameters<typeof buildConfig>[0], flag: string, pattern?: RegExp) =>
  assert.throws(
    () => buildConfig(flags),
    (error: unknown) => error instanceof FlagError && error.flag === flag && error.exitCode === 2 && error.message.startsWith(`${flag}:`) && (!pattern || pattern.test(error.message)),
  );

test('defaults are the seed\'s: port 15001, mark 0x1, table 100, 172.31.0.0/16, iptables', () => {
  const config = defaultConfig();
  assert.equal(config.port, 15001);
  assert.equal(config.mark, 1);
  assert.equal(config.table, 100);
  assert.equal(config.backend, 'iptables');
  assert.deepEqual(config.sources.map(formatCidr), ['172.31.0.0/16']);
  assert.equal(config.udpPort, undefined);
  assert.equal(config.ipv6, false);
  assert.equal(config.excludeHostAddresses, true);
  assert.equal(config.relaxRpFilter, false);
});

test('bad ports name their flag', () => {
  for (const port of ['0', '65536', 'abc', '-1', '15001x', '']) refuses({ port }, '--port');
  refuses({ udpPort: '70000' }, '--udp-port');
});

test('bad marks and tables name their flag', () => {
  for (const mark of ['0', '0x0', '0x100000000', 'one', '4294967296']) refuses({ mark }, '--mark');
  for (const table of ['0', 'main', '253', '254', '255', '-3']) refuses({ table }, '--table');
  assert.equal(buildConfig({ mark: '0x100' }).mark, 0x100);
  assert.equal(buildConfig({ mark: '16' }).mark, 16);
  assert.equal(buildConfig({ table: '4242' }).table, 4242);
});

test('bad CIDRs name their flag', () => {
  refuses({ source: ['172.31.0.0/33'] }, '--source');
  refuses({ source: ['not-an-ip'] }, '--source');
  refuses({ source: ['172.31.0.1/16'] }, '--source', /did you mean 172\.31\.0\.0\/16/);
  refuses({ exclude: ['10.0.0.0/8', '300.1.1.1'] }, '--exclude');
  refuses({ source: ['fd00::1/64'], ipv6: true }, '--source', /did you mean fd00::\/64/);
});

test('a bad backend names --backend', () => refuses({ backend: 'pf' }, '--backend'));

test('IPv6 needs --ipv6 and an IPv6 source; an exclusion needs a source of its family', () => {
  refuses({ source: ['fd00:31::/64'] }, '--source', /--ipv6/);
  refuses({ ipv6: true }, '--source', /IPv6 --source/);
  refuses({ exclude: ['fd00::/8'] }, '--exclude', /IPv6/);
  const config = buildConfig({ ipv6: true, source: ['172.31.0.0/16', 'fd00:31::/64'], exclude: ['fd00:99::/64'] });
  assert.deepEqual(config.sources.map(formatCidr), ['172.31.0.0/16', 'fd00:31::/64']);
  assert.deepEqual(config.excludes.map(formatCidr), ['fd00:99::/64']);
  // IPv6 only: no IPv4 source given, so nothing IPv4 is installed.
  assert.deepEqual(buildConfig({ ipv6: true, source: ['fd00:31::/64'] }).sources.map((s) => s.family), [6]);
});

test('repeated sources and exclusions collapse', () => {
  const config = buildConfig({ source: ['172.31.0.0/16', '172.31.0.0/16'], exclude: ['10.0.0.0/8', '10.0.0.0/8'] });
  assert.equal(config.sources.length, 1);
  assert.equal(config.excludes.length, 1);
});

test('the guards\' flags: ports, CIDRs of a redirected family, an upstream mark apart from --mark', () => {
  const config = buildConfig({ allowHostPort: ['53', '22', '53'], allowQuic: ['192.0.2.0/24'], upstreamMark: '0x40000', allowUpstreamCidr: ['10.1.0.0/16'] });
  assert.deepEqual(config.allowHostPorts, [22, 53]);
  assert.deepEqual(config.allowQuic.map(formatCidr), ['192.0.2.0/24']);
  assert.equal(config.upstreamMark, 0x40000);
  assert.equal(defaultConfig().upstreamMark, 0x20000, 'serve --upstream-mark\'s default');
  assert.equal(buildConfig({ upstreamMark: '0' }).upstreamMark, 0);
  refuses({ allowHostPort: ['0'] }, '--allow-host-port');
  refuses({ allowQuic: ['fd00::/8'] }, '--allow-quic', /no IPv6 --source/);
  refuses({ allowUpstreamCidr: ['10.0.0.1/8'] }, '--allow-upstream-cidr', /did you mean 10\.0\.0\.0\/8/);
  refuses({ upstreamMark: 'x' }, '--upstream-mark');
  refuses({ upstreamMark: '0x3', mark: '0x1' }, '--upstream-mark', /shares bits with --mark/);
});

test('--redirect nft-dnat: an IPv4 --dnat-address is required; TPROXY-only flags are refused, not ignored', () => {
  const config = buildConfig({ redirect: 'nft-dnat', dnatAddress: '172.28.0.2' });
  assert.equal(config.redirect, 'nft-dnat');
  assert.equal(config.dnat?.port, 10001);
  assert.deepEqual(config.dnat?.ports, [443]);
  refuses({ redirect: 'nft-dnat' }, '--dnat-address', /missing/);
  refuses({ redirect: 'nft-dnat', dnatAddress: 'envoy' }, '--dnat-address');
  refuses({ redirect: 'nft-dnat', dnatAddress: 'fd00::2' }, '--dnat-address');
  refuses({ redirect: 'nft-dnat', dnatAddress: '172.28.0.2', source: ['10.0.0.0/8'] }, '--source');
  refuses({ redirect: 'nft-dnat', dnatAddress: '172.28.0.2', backend: 'iptables' }, '--backend');
  refuses({ redirect: 'nft-dnat', dnatAddress: '172.28.0.2', dnatPort: ['99999'] }, '--dnat-port');
  refuses({ dnatAddress: '172.28.0.2' }, '--dnat-address', /nft-dnat only/);
  refuses({ redirect: 'dnat' }, '--redirect');
});
