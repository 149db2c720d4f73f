// agent status's refusal counts, read from the kernel's own counters: the parsing
// of `iptables -L -v -x -n` (both flavours print it alike) and of `nft -j list
// chain`, with an injected runner (no system touched).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readCapRefusals } from '../../src/agent/capCounters.js';
import { buildConfig } from '../../src/agent/config.js';
import { formatCommand } from '../../src/agent/errors.js';
import { buildPlan } from '../../src/agent/plan.js';
import { capRuleIds } from '../../src/agent/render/nftables.js';
import type { CommandResult, Runner } from '../../src/agent/runner.js';

const runnerOf = (answer: (text: string) => CommandResult): Runner & { log: string[] } => {
  const log: string[] = [];
  return {
    log,
    readFile: async () => undefined,
    run: async (command) => {
      const text = formatCommand(command);
      log.push(text);
      return answer(text);
    },
  };
};
const ok = (stdout: string): CommandResult => ({ exitCode: 0, stdout, stderr: '' });

test('iptables: the packets of every REJECT in the cap chain, per family; a missing chain is unknown', async () => {
  const plan = buildPlan(buildConfig({ ipv6: true, source: ['172.31.0.0/16', '10.9.0.0/24', 'fd00::/64'], noExcludeHostAddresses: true }));
  const v4 = [
    'Chain EGRESS_XDS_CAP (1 references)',
    '    pkts      bytes target     prot opt in     out     source               destination         ',
    '      17     1020 REJECT     6    --  *      *       172.31.0.0/16        0.0.0.0/0            tcp flags:0x17/0x02 mark match 0x1/0x1 #conn src/32 > 512 reject-with tcp-reset',
    ' 4294967296 257698037760 REJECT     6    --  *      *       10.9.0.0/24          0.0.0.0/0            tcp flags:0x17/0x02 mark match 0x1/0x1 #conn src/32 > 512 reject-with tcp-reset',
    '',
  ].join('\n');
  const runner = runnerOf((text) =>
    text.startsWith('iptables ') ? ok(v4) : { exitCode: 1, stdout: '', stderr: 'ip6tables: No chain/target/match by that name.' },
  );
  assert.deepEqual(await readCapRefusals(plan, runner), [
    { family: 4, refused: 17 + 4294967296 },
    { family: 6, refused: undefined },
  ]);
  assert.deepEqual(runner.log, ['iptables -w 5 -t filter -L EGRESS_XDS_CAP -v -x -n', 'ip6tables -w 5 -t filter -L EGRESS_XDS_CAP -v -x -n']);
  // Any other failure is an error, not a zero.
  await assert.rejects(readCapRefusals(plan, runnerOf(() => ({ exitCode: 4, stdout: '', stderr: 'Permission denied' }))), /Permission denied/);
});

test('nftables: the counter of each cap rule (by its comment), per family; foreign rules and a missing table are not counted', async () => {
  const plan = buildPlan(buildConfig({ backend: 'nftables', ipv6: true, source: ['172.31.0.0/16', 'fd00::/64'], noExcludeHostAddresses: true }));
  const ids = capRuleIds(plan);
  assert.deepEqual(ids.map((r) => r.family), [4, 6]);
  const rule = (comment: string, packets: number) => ({ rule: { family: 'inet', table: 'egress_xds_cap', chain: 'conncap', comment, expr: [{ match: {} }, { counter: { packets, bytes: packets * 60 } }, { reject: { type: 'tcp reset' } }] } });
  const json = JSON.stringify({ nftables: [{ metainfo: {} }, { chain: { name: 'conncap' } }, rule(ids[0]!.id, 5), rule(ids[1]!.id, 2), rule('someone-else', 99)] });
  const runner = runnerOf(() => ok(json));
  assert.deepEqual(await readCapRefusals(plan, runner), [
    { family: 4, refused: 5 },
    { family: 6, refused: 2 },
  ]);
  assert.deepEqual(runner.log, ['nft -j list chain inet egress_xds_cap conncap']);
  const gone = runnerOf(() => ({ exitCode: 1, stdout: '', stderr: 'Error: No such file or directory' }));
  assert.deepEqual(await readCapRefusals(plan, gone), [
    { family: 4, refused: undefined },
    { family: 6, refused: undefined },
  ]);
  // nft-dnat: the cap's chain in the DNAT table.
  const dnat = buildPlan(buildConfig({ redirect: 'nft-dnat', dnatAddress: '10.0.0.2' }));
  const dnatRunner = runnerOf(() => ok(JSON.stringify({ nftables: [rule(capRuleIds(dnat)[0]!.id, 3)] })));
  assert.deepEqual(await readCapRefusals(dnat, dnatRunner), [{ family: 4, refused: 3 }]);
  assert.deepEqual(dnatRunner.log, ['nft -j list chain ip egress_xds_dnat conncap']);
});

test('with the cap off there is nothing to read', async () => {
  const runner = runnerOf(() => ok(''));
  assert.deepEqual(await readCapRefusals(buildPlan(buildConfig({ maxConnectionsPerSource: '0', noExcludeHostAddresses: true })), runner), []);
  assert.deepEqual(runner.log, []);
});
