// Real iptables / nft / ip commands, inside network namespaces these tests
// create and delete; never on the machine's own tables. Both backends, and the
// iptables backend with both iptables flavours (nft and legacy).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { dryRunInstall, install } from '../../src/agent/apply.js';
import { type AgentConfig, buildConfig } from '../../src/agent/config.js';
import type { AgentContext } from '../../src/agent/context.js';
import { formatCommand } from '../../src/agent/errors.js';
import { currentPlan, repairOnce } from '../../src/agent/repair.js';
import { silentLogger } from '../../src/log.js';
import type { Runner } from '../../src/agent/runner.js';
import type { StatusReport } from '../../src/agent/status.js';
import { startListener, stopChild } from './support/listener.js';
import { CLI, Netns, eventually, flavourPath, netnsSkipReason, snapshot } from './support/netns.js';

const skipReason = await netnsSkipReason(['iptables', 'ip6tables', 'iptables-save', 'nft', 'python3']);

interface Variant {
  readonly label: string;
  readonly backend: 'iptables' | 'nftables';
  readonly env: Record<string, string> | undefined;
  readonly skip: string | undefined;
}

async function variants(): Promise<Variant[]> {
  if (skipReason) return [{ label: 'iptables', backend: 'iptables', env: {}, skip: skipReason }, { label: 'nftables', backend: 'nftables', env: {}, skip: skipReason }];
  const nft = await flavourPath('nft');
  const legacy = await flavourPath('legacy');
  return [
    { label: 'iptables (iptables-nft)', backend: 'iptables', env: nft, skip: nft ? undefined : 'iptables-nft is not installed' },
    { label: 'iptables (iptables-legacy)', backend: 'iptables', env: legacy, skip: legacy ? undefined : 'iptables-legacy is not installed' },
    { label: 'nftables', backend: 'nftables', env: {}, skip: undefined },
  ];
}

async function withNetns(env: Record<string, string>, body: (ns: Netns, stateDir: string) => Promise<void>): Promise<void> {
  const ns = await Netns.create(env);
  const stateDir = await mkdtemp(join(tmpdir(), 'egx-state-'));
  try {
    // A host address, so the default host-address exclusion has something to exclude.
    await ns.must('ip', 'addr', 'add', '10.250.9.1/32', 'dev', 'lo');
    await body(ns, stateDir);
  } finally {
    await ns.delete();
    await rm(stateDir, { recursive: true, force: true });
  }
}

async function status(ns: Netns, flags: string[]): Promise<{ code: number; report: StatusReport }> {
  const result = await ns.cli('status', '--json', ...flags);
  assert.ok(result.stdout.trim().startsWith('{'), `status printed no JSON: ${result.stderr}`);
  return { code: result.exitCode, report: JSON.parse(result.stdout) as StatusReport };
}

const withRunner = (ns: Netns, stateDir: string, runner?: Runner): AgentContext => ({ runner: runner ?? ns.runner(), stateDir });

for (const variant of await variants()) {
  const flags = (stateDir: string) => ['--backend', variant.backend, '--exclude', '10.99.0.0/16', '--state-dir', stateDir];
  const config = (stateDir: string, extra: string[] = []): AgentConfig => {
    void stateDir;
    return buildConfig({ backend: variant.backend, exclude: ['10.99.0.0/16'], ...(extra.includes('--relax-rp-filter') ? { relaxRpFilter: true } : {}) });
  };
  const env = variant.env ?? {};

  test(`${variant.label}: install → all present; twice → one set; uninstall → all missing, nothing left; foreign rules untouched`, { skip: variant.skip }, async () => {
    await withNetns(env, async (ns, stateDir) => {
      const foreign = await addForeignNamed(ns, variant.backend);
      const before = await snapshot(ns);

      const initially = await status(ns, flags(stateDir));
      assert.equal(initially.code, 1);
      assert.ok(initially.report.pieces.every((p) => !p.present));

      // Bad flags: exit 2, named, nothing changed.
      const bad = await ns.cli('install', ...flags(stateDir), '--port', '0');
      assert.equal(bad.exitCode, 2);
      assert.match(bad.stderr, /--port/);
      assert.equal(await snapshot(ns), before);

      const first = await ns.cli('install', ...flags(stateDir));
      assert.equal(first.exitCode, 0, first.stderr);
      const installed = await snapshot(ns);
      for (const text of foreign) assert.ok(installed.includes(text), `foreign rule kept: ${text}`);

      const listed = await status(ns, flags(stateDir));
      assert.ok(listed.report.pieces.length >= 5);
      assert.deepEqual(listed.report.pieces.filter((p) => !p.present), []);
      assert.equal(listed.code, 3, 'rules present, nothing listening yet');
      const envoy = await startListener(ns, 'envoy', '0.0.0.0', 15001, true);
      try {
        const up = await status(ns, flags(stateDir));
        assert.equal(up.code, 0);
        assert.equal(up.report.ok, true);
        const text = await ns.cli('status', ...flags(stateDir));
        assert.match(text.stdout, /\nall present\s*$/);
      } finally {
        await envoy.stop();
      }

      const second = await ns.cli('install', ...flags(stateDir));
      assert.equal(second.exitCode, 0, second.stderr);
      assert.match(second.stdout, /already installed/);
      assert.equal(await snapshot(ns), installed, 'a second install changes nothing');
      await assertExactlyOneSet(ns, variant.backend);

      const removed = await ns.cli('uninstall', ...flags(stateDir));
      assert.equal(removed.exitCode, 0, removed.stderr);
      const after = await status(ns, flags(stateDir));
      assert.equal(after.code, 1);
      assert.deepEqual(after.report.pieces.filter((p) => p.present), []);
      assert.equal(await snapshot(ns), before, 'uninstall leaves exactly what was there before');

      const again = await ns.cli('uninstall', ...flags(stateDir));
      assert.equal(again.exitCode, 0);
      assert.match(again.stdout, /nothing installed/);
    });
  });

  test(`${variant.label}: a repair pass restores a flushed chain, a deleted rule or table, a stale rule`, { skip: variant.skip }, async () => {
    await withNetns(env, async (ns, stateDir) => {
      const context = withRunner(ns, stateDir);
      assert.equal((await ns.cli('install', ...flags(stateDir))).exitCode, 0);
      const installed = await snapshot(ns);
      const breakages: string[][][] =
        variant.backend === 'iptables'
          ? [
              [['iptables', '-t', 'mangle', '-F', 'EGRESS_XDS']],
              [['ip', 'rule', 'del', 'fwmark', '0x1/0x1', 'lookup', '100'], ['ip', 'route', 'flush', 'table', '100']],
              [['iptables', '-t', 'mangle', '-D', 'PREROUTING', '-j', 'EGRESS_XDS'], ['iptables', '-t', 'mangle', '-F', 'EGRESS_XDS'], ['iptables', '-t', 'mangle', '-X', 'EGRESS_XDS']],
              [['iptables', '-t', 'mangle', '-I', 'EGRESS_XDS', '2', '-s', '10.97.0.0/16', '-j', 'RETURN']],
              [['iptables', '-t', 'mangle', '-A', 'PREROUTING', '-j', 'EGRESS_XDS']],
            ]
          : [
              [['nft', 'flush', 'chain', 'inet', 'egress_xds', 'prerouting']],
              [['nft', 'delete', 'table', 'inet', 'egress_xds'], ['ip', 'rule', 'del', 'fwmark', '0x1/0x1', 'lookup', '100']],
              [['nft', 'insert', 'rule', 'inet', 'egress_xds', 'prerouting', 'ip', 'saddr', '10.97.0.0/16', 'return']],
            ];
      for (const breakage of breakages) {
        for (const [file, ...args] of breakage) await ns.must(file!, ...args);
        assert.equal((await status(ns, flags(stateDir))).code, 1, `status sees: ${JSON.stringify(breakage)}`);
        const pass = await repairOnce(config(stateDir), context, silentLogger);
        assert.equal(pass.error, undefined);
        assert.ok(pass.repaired.length > 0);
        assert.equal(await snapshot(ns), installed, `repaired: ${JSON.stringify(breakage)}`);
        const clean = await repairOnce(config(stateDir), context, silentLogger);
        assert.deepEqual(clean.repaired, [], 'a pass over a whole setup changes nothing');
      }
      assert.equal((await ns.cli('uninstall', ...flags(stateDir))).exitCode, 0);
    });
  });

  test(`${variant.label}: \`agent run\` re-applies what goes missing and stops cleanly on SIGTERM`, { skip: variant.skip }, async () => {
    await withNetns(env, async (ns, stateDir) => {
      const before = await snapshot(ns);
      const run = startRun(ns, env, ['--interval', '0.2', ...flags(stateDir)]);
      try {
        // Readiness from the agent's own log, not a delay: the first pass has installed everything.
        await run.waitFor((e) => e.msg === 'first pass done', 'the first pass');
        assert.equal((await status(ns, flags(stateDir))).code, 3, `run installs the rules: ${run.logs()}`);
        const installed = await snapshot(ns);
        const seen = run.events().length;
        if (variant.backend === 'iptables') await ns.must('iptables', '-t', 'mangle', '-F', 'EGRESS_XDS');
        else await ns.must('nft', 'delete', 'table', 'inet', 'egress_xds');
        await ns.must('ip', 'route', 'flush', 'table', '100');
        const netfilterPiece = variant.backend === 'iptables' ? 'iptables-chain-exact/4' : 'nft-table';
        // The two breakages may land in one pass or in two: wait until both were logged as repaired.
        await run.waitFor(() => {
          const repaired = run.events().slice(seen).filter((e) => e.msg === 'repaired').flatMap((e) => e.pieces!.map((p) => p.id));
          return repaired.includes('ip-route/4') && repaired.includes(netfilterPiece);
        }, 'the repairs');
        assert.equal(await snapshot(ns), installed, `run repairs: ${run.logs()}`);
        assert.equal(await run.terminate(), 0, `exit after SIGTERM: ${run.logs()}`);
        assert.equal(run.events().at(-1)!.msg, 'stopped');
        // Stopping the agent leaves the rules: egress stays closed.
        assert.equal(await snapshot(ns), installed);
      } finally {
        await stopChild(run.child);
      }
      assert.equal((await ns.cli('uninstall', ...flags(stateDir))).exitCode, 0);
      assert.equal(await snapshot(ns), before);
    });
  });

  test(`${variant.label}: SIGTERM while \`agent run\` has a command in flight: the command finishes, the agent exits 0`, { skip: variant.skip }, async () => {
    await withNetns(env, async (ns, stateDir) => {
      // An `ip` that, once told to, announces itself and takes a second: a
      // stop is then certain to arrive while a command of the pass is running.
      const bin = await mkdtemp(join(tmpdir(), 'exa-slowip-'));
      try {
        const realIp = (await ns.must('sh', '-c', 'command -v ip')).trim();
        await writeFile(
          join(bin, 'ip'),
          `#!/bin/sh\nif [ -e ${bin}/slow ]; then touch ${bin}/inflight; sleep 1; ${realIp} "$@"; rc=$?; touch ${bin}/finished; exit $rc; fi\nexec ${realIp} "$@"\n`,
          { mode: 0o755 },
        );
        const path = `${bin}:${env['PATH'] ?? `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin`}`;
        const run = startRun(ns, { ...env, PATH: path }, ['--interval', '0.2', ...flags(stateDir)], realIp);
        try {
          await run.waitFor((e) => e.msg === 'first pass done', 'the first pass');
          await writeFile(join(bin, 'slow'), '');
          assert.ok(await eventually(async () => existsSync(join(bin, 'inflight')), 10_000, 20), 'a pass ran ip');
          assert.equal(existsSync(join(bin, 'finished')), false, 'the command is still running');
          assert.equal(await run.terminate(), 0, `exit after SIGTERM: ${run.logs()}`);
          assert.ok(existsSync(join(bin, 'finished')), 'the command in flight was let finish');
          assert.equal(run.events().at(-1)!.msg, 'stopped');
          assert.deepEqual(run.events().filter((e) => e.level === 'error'), [], 'no pass failed');
          assert.equal((await status(ns, flags(stateDir))).code, 3, 'the rules stay');
        } finally {
          await stopChild(run.child);
        }
      } finally {
        await rm(bin, { recursive: true, force: true });
      }
      assert.equal((await ns.cli('uninstall', ...flags(stateDir))).exitCode, 0);
    });
  });

  test(`${variant.label}: a failure at any step rolls back to exactly what was there`, { skip: variant.skip }, async () => {
    await withNetns(env, async (ns, stateDir) => {
      await addForeignNamed(ns, variant.backend);
      const before = await snapshot(ns);
      const real = ns.runner();
      const plan = await currentPlan(config(stateDir), withRunner(ns, stateDir));
      const steps = dryRunInstall(plan);
      for (let n = 0; n < steps.length; n++) {
        const target = formatCommand(steps[n]!.command);
        const failing: Runner = {
          readFile: real.readFile,
          run: async (command) =>
            formatCommand(command) === target && command.input === steps[n]!.command.input
              ? { exitCode: 1, stdout: '', stderr: 'injected failure' }
              : real.run(command),
        };
        await assert.rejects(install(plan, withRunner(ns, stateDir, failing)), /injected failure/);
        assert.equal(await snapshot(ns), before, `after failing step ${n + 1}: ${target}`);
      }
    });
  });

  test(`${variant.label}: IPv6 and UDP install and uninstall (uninstall finds IPv6 even without --ipv6)`, { skip: variant.skip }, async () => {
    await withNetns(env, async (ns, stateDir) => {
      const before = await snapshot(ns);
      const v6 = [...flags(stateDir), '--ipv6', '--source', '172.31.0.0/16', '--source', 'fd00:31::/64', '--udp-port', '15053'];
      const result = await ns.cli('install', ...v6);
      assert.equal(result.exitCode, 0, result.stderr);
      const listed = await status(ns, v6);
      assert.deepEqual(listed.report.pieces.filter((p) => !p.present), []);
      assert.ok(listed.report.pieces.some((p) => p.id === 'ip-rule/6'));
      assert.ok(listed.report.pieces.some((p) => p.description.includes('udp')));
      assert.deepEqual(listed.report.listeners.map((l) => `IPv${l.family} ${l.protocol}/${l.port}`), ['IPv4 tcp/15001', 'IPv4 udp/15053', 'IPv6 tcp/15001', 'IPv6 udp/15053']);
      assert.equal((await ns.cli('uninstall', ...flags(stateDir))).exitCode, 0);
      assert.equal(await snapshot(ns), before);
    });
  });

  test(`${variant.label}: --relax-rp-filter sets rp_filter=0 and uninstall puts back the old value`, { skip: variant.skip }, async () => {
    await withNetns(env, async (ns, stateDir) => {
      await ns.must('sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=2');
      const result = await ns.cli('install', ...flags(stateDir), '--relax-rp-filter');
      assert.equal(result.exitCode, 0, result.stderr);
      assert.match(result.stderr, /weaken reverse-path validation/);
      assert.equal((await ns.must('sysctl', '-n', 'net.ipv4.conf.all.rp_filter')).trim(), '0');
      assert.equal((await status(ns, [...flags(stateDir), '--relax-rp-filter'])).code, 3);
      assert.equal((await ns.cli('uninstall', ...flags(stateDir))).exitCode, 0);
      assert.equal((await ns.must('sysctl', '-n', 'net.ipv4.conf.all.rp_filter')).trim(), '2');
    });
  });
}

/** Foreign rules in the places the agent works; returns text that proves each is still there. */
async function addForeignNamed(ns: Netns, backend: Variant['backend']): Promise<string[]> {
  await ns.must('ip', 'rule', 'add', 'fwmark', '0x40', 'lookup', '140');
  const proofs = ['fwmark 0x40 lookup 140'];
  // A mangle PREROUTING rule either way: an nftables host may still run iptables tools.
  await ns.must('iptables', '-t', 'mangle', '-A', 'PREROUTING', '-s', '10.98.0.0/16', '-j', 'MARK', '--set-mark', '0x40');
  proofs.push('-A PREROUTING -s 10.98.0.0/16 -j MARK --set-xmark 0x40/0xffffffff');
  if (backend === 'nftables') {
    const script = 'table inet foreign {\n\tchain pre {\n\t\ttype filter hook prerouting priority 0; policy accept;\n\t\tip saddr 10.98.0.0/16 counter\n\t}\n}\n';
    const result = await ns.exec('sh', '-c', `printf '%s' '${script}' | nft -f -`);
    assert.equal(result.exitCode, 0, result.stderr);
    proofs.push('table inet foreign');
  }
  return proofs;
}

async function assertExactlyOneSet(ns: Netns, backend: Variant['backend']): Promise<void> {
  const rules = (await ns.must('ip', 'rule')).split('\n').filter((l) => l.includes('fwmark 0x1/0x1 lookup 100'));
  assert.equal(rules.length, 1, 'one ip rule');
  const routes = (await ns.must('ip', 'route', 'show', 'table', '100')).trim().split('\n');
  assert.deepEqual(routes, ['local default dev lo scope host']);
  if (backend === 'iptables') {
    const chain = (await ns.must('iptables', '-t', 'mangle', '-S', 'EGRESS_XDS')).trim().split('\n');
    assert.equal(chain.filter((l) => l.startsWith('-A ')).length, 4, `replies, exclude flag, host address, tproxy:\n${chain.join('\n')}`);
    const jumps = (await ns.must('iptables', '-t', 'mangle', '-S', 'PREROUTING')).split('\n').filter((l) => l.includes('-j EGRESS_XDS'));
    assert.equal(jumps.length, 1, 'one jump');
  } else {
    const tables = (await ns.must('nft', 'list', 'tables')).split('\n').filter((l) => l.includes('egress_xds'));
    // The TPROXY table and the connection cap's own.
    assert.deepEqual(tables.sort(), ['table inet egress_xds', 'table inet egress_xds_cap']);
    const rules = (await ns.must('nft', '-a', 'list', 'chain', 'inet', 'egress_xds', 'prerouting')).split('\n').filter((l) => l.includes('comment "egress-xds:'));
    assert.equal(rules.length, 5, 'replies, exclude flag, host address, tproxy, fail-closed drop');
  }
}

interface LogEvent {
  level: string;
  msg: string;
  pieces?: { id: string }[];
}

/** `agent run` inside ns, its JSON log lines collected as they come. */
function startRun(ns: Netns, env: Record<string, string>, args: string[], ip = 'ip') {
  const child: ChildProcess = spawn(ip, ['netns', 'exec', ns.name, process.execPath, CLI, 'agent', 'run', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let text = '';
  const waiters = new Set<() => void>();
  child.stderr!.on('data', (d: Buffer) => {
    text += d.toString();
    for (const wake of waiters) wake();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    resolve(code);
    for (const wake of waiters) wake();
  }));
  const events = (): LogEvent[] =>
    text.split('\n').filter((l) => l.trim() !== '').map((l) => {
      try {
        return JSON.parse(l) as LogEvent;
      } catch {
        return { level: 'text', msg: l };
      }
    });
  return {
    child,
    events,
    logs: () => text,
    /** Resolves when a log line satisfies check; fails after 30 s (a bound, not a delay) or when the agent exits. */
    waitFor: (check: (e: LogEvent) => boolean, what: string): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        const wake = (): void => {
          if (events().some(check)) done(undefined);
          else if (child.exitCode !== null || child.signalCode !== null) done(new Error(`agent run exited before ${what}: ${text}`));
        };
        const timer = setTimeout(() => done(new Error(`no log of ${what} within 30 s: ${text}`)), 30_000);
        const done = (error: Error | undefined): void => {
          clearTimeout(timer);
          waiters.delete(wake);
          if (error) reject(error);
          else resolve();
        };
        waiters.add(wake);
        wake();
      }),
    /** SIGTERM, then the exit code (null: killed by a signal), within 15 s. */
    terminate: async (): Promise<number | null | 'timeout'> => {
      process.kill(child.pid!, 'SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const result = await Promise.race([exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 15_000)))]);
      clearTimeout(timer);
      return result;
    },
  };
}
