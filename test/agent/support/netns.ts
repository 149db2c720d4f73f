// Network namespaces that a test creates for itself, so real iptables / nft / ip
// commands never touch the machine's own tables. Every namespace is named
// exa-<pid>-<n> and deleted by the test that made it.
import { mkdtemp, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { execaRunner, type Runner } from '../../../src/agent/runner.js';

/** The built CLI, next to the compiled tests (dist/src/cli/main.js). */
export const CLI = fileURLToPath(new URL('../../../src/cli/main.js', import.meta.url));

export interface Result {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export async function sh(file: string, args: readonly string[], options: { input?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Result> {
  const result = await execa(file, args, {
    reject: false,
    timeout: options.timeoutMs ?? 60_000,
    input: options.input ?? '',
    env: { ...(options.env ?? {}), PATH: options.env?.['PATH'] ?? `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin` },
  });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '') };
}

async function which(tool: string): Promise<boolean> {
  return (await sh('sh', ['-c', `command -v ${tool}`])).exitCode === 0;
}

/** Why these tests cannot run here, or undefined when they can. */
export async function netnsSkipReason(tools: readonly string[]): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'needs root to create network namespaces (run the tests as root)';
  for (const tool of ['ip', ...tools]) {
    if (!(await which(tool))) return `"${tool}" is not installed (apt-get install -y iptables nftables iproute2)`;
  }
  const probe = `exa-${process.pid}-probe${Math.floor(Math.random() * 1e6)}`;
  const add = await sh('ip', ['netns', 'add', probe]);
  if (add.exitCode !== 0) return `cannot create a network namespace: ${add.stderr.trim()}`;
  await sh('ip', ['netns', 'del', probe]);
  return undefined;
}

let counter = 0;

export class Netns {
  private constructor(readonly name: string, readonly env: Record<string, string>) {}

  /** A fresh namespace with lo up. env: e.g. a PATH that picks iptables-legacy. */
  static async create(env: Record<string, string> = {}): Promise<Netns> {
    const name = `exa-${process.pid}-${++counter}`;
    const add = await sh('ip', ['netns', 'add', name]);
    if (add.exitCode !== 0) throw new Error(`ip netns add ${name}: ${add.stderr}`);
    const ns = new Netns(name, env);
    try {
      await ns.must('ip', 'link', 'set', 'lo', 'up');
    } catch (error) {
      await ns.delete();
      throw error;
    }
    return ns;
  }

  exec(file: string, ...args: string[]): Promise<Result> {
    // iptables-legacy's lock (/run/xtables.lock) is shared by every namespace: wait for it.
    const wait = file === 'iptables' || file === 'ip6tables' ? ['-w', '5'] : [];
    return sh('ip', ['netns', 'exec', this.name, file, ...wait, ...args], { env: this.env });
  }

  async must(file: string, ...args: string[]): Promise<string> {
    const result = await this.exec(file, ...args);
    if (result.exitCode !== 0) throw new Error(`in ${this.name}: ${file} ${args.join(' ')} → exit ${result.exitCode}: ${result.stderr}`);
    return result.stdout;
  }

  /** The CLI, run inside this namespace. */
  cli(...args: string[]): Promise<Result> {
    return this.exec(process.execPath, CLI, 'agent', ...args);
  }

  /** A Runner for the agent module that runs every command inside this namespace. */
  runner(): Runner {
    return execaRunner({ prefix: ['ip', 'netns', 'exec', this.name], ...(this.env['PATH'] ? { path: this.env['PATH'] } : {}) });
  }

  async delete(): Promise<void> {
    await sh('ip', ['netns', 'del', this.name]);
  }
}

/**
 * Everything the agent might leave behind, in one comparable text: the mangle
 * tables (counters and timestamps stripped), the nft ruleset, ip rules and routes.
 */
export async function snapshot(ns: Netns): Promise<string> {
  const parts: string[] = [];
  for (const save of ['iptables-save', 'ip6tables-save']) {
    const out = await ns.exec(save, '-t', 'mangle');
    parts.push(`## ${save}\n${out.stdout.split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/g, '')).join('\n')}`);
  }
  parts.push(`## nft list ruleset\n${normalizeNft((await ns.exec('nft', 'list', 'ruleset')).stdout)}`);
  for (const args of [['ip', 'rule'], ['ip', '-6', 'rule'], ['ip', 'route', 'show', 'table', 'all'], ['ip', '-6', 'route', 'show', 'table', 'all']]) {
    const out = await ns.exec(args[0]!, ...args.slice(1));
    parts.push(`## ${args.join(' ')}\n${out.stdout}`);
  }
  return parts.join('\n');
}

/**
 * `nft list ruleset` with tables and the chains inside them sorted: nft lists
 * chains in creation order, so a chain deleted and re-created moves, with the
 * same content. Also drops iptables-nft's empty built-in base chains (policy
 * accept, no rules) and the tables they leave empty: any iptables-nft command
 * creates those on first use, they change no packet, and the agent leaves them
 * (it cannot tell whether they were there before). docs/agent.md says so.
 */
export function normalizeNft(text: string): string {
  const tables: string[] = [];
  let table: string[] | undefined;
  let blocks: string[] = [];
  let block: string[] | undefined;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (table === undefined) {
      table = [line];
      blocks = [];
    } else if (line === '}') {
      const iptablesNft = /^table ip6? (mangle|filter|nat|raw|security) \{$/.test(table[0]!);
      const kept = iptablesNft ? blocks.filter((b) => !/^\tchain [A-Z]+ \{\n\t\ttype \w+ hook \w+ priority [^;]+; policy accept;\n\t\}$/.test(b)) : blocks;
      if (!(iptablesNft && kept.length === 0 && table.length === 1)) tables.push([...table, ...kept.sort(), '}'].join('\n'));
      table = undefined;
    } else if (block !== undefined) {
      block.push(line);
      if (line === '\t}') {
        blocks.push(block.join('\n'));
        block = undefined;
      }
    } else if (/^\t\S/.test(line) && line.endsWith('{')) {
      block = [line];
    } else {
      table.push(line);
    }
  }
  return tables.sort().join('\n');
}

/**
 * A PATH whose iptables/ip6tables(-save) are one flavour (nft or legacy), when
 * installed; undefined otherwise. Both flavours must work with the same commands.
 */
export async function flavourPath(flavour: 'nft' | 'legacy'): Promise<Record<string, string> | undefined> {
  const dir = await mkdtemp(join(tmpdir(), `egx-${flavour}-`));
  for (const name of ['iptables', 'ip6tables', 'iptables-save', 'ip6tables-save']) {
    const target = name.endsWith('-save') ? `${name.slice(0, -5)}-${flavour}-save` : `${name}-${flavour}`;
    const path = (await sh('sh', ['-c', `command -v ${target}`])).stdout.trim();
    if (path === '') return undefined;
    await symlink(path, join(dir, name));
  }
  return { PATH: `${dir}:${process.env['PATH'] ?? ''}:/usr/sbin:/sbin` };
}

/** Polls until check() is true or the time is up. */
export async function eventually(check: () => Promise<boolean>, timeoutMs: number, stepMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return check();
}

/** Why TPROXY cannot be tested here (kernel without xt_TPROXY / nft_tproxy in a netns), or undefined. */
export async function tproxySkipReason(): Promise<string | undefined> {
  const base = await netnsSkipReason(['iptables', 'nft', 'python3']);
  if (base) return base;
  const ns = await Netns.create();
  try {
    const ipt = await ns.exec('iptables', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '-j', 'TPROXY', '--on-port', '15001', '--tproxy-mark', '0x1/0x1');
    if (ipt.exitCode !== 0) return `this kernel has no iptables TPROXY in a network namespace (xt_TPROXY): ${ipt.stderr.trim()}`;
    const nft = await ns.exec('nft', 'add table inet egx_probe; add chain inet egx_probe p { type filter hook prerouting priority mangle; }; add rule inet egx_probe p meta l4proto tcp tproxy ip to :15001');
    if (nft.exitCode !== 0) return `this kernel has no nft tproxy in a network namespace (nft_tproxy): ${nft.stderr.trim()}`;
    return undefined;
  } finally {
    await ns.delete();
  }
}

/**
 * The three namespaces of the end-to-end tests, joined by veth pairs made inside them
 * (nothing appears in the machine's own namespace):
 *
 *   microvm  m0 10.250.1.2/30 ──veth── h0 10.250.1.1/30  host (forwards; agent, Envoy)
 *                                      h1 10.250.2.1/30 ──veth── u0 10.250.2.2/30  upstream
 *                                                                lo: each of `upstreamAddresses` (10.250.3.x)
 *
 * Each namespace is pushed onto `created` as soon as it exists, so the caller's cleanup
 * deletes them even when a later step fails.
 */
export async function microvmHostUpstream(created: Netns[], upstreamAddresses: readonly string[]): Promise<{ mvm: Netns; host: Netns; up: Netns }> {
  const mvm = await Netns.create();
  created.push(mvm);
  const host = await Netns.create();
  created.push(host);
  const up = await Netns.create();
  created.push(up);
  await mvm.must('ip', 'link', 'add', 'm0', 'type', 'veth', 'peer', 'name', 'h0', 'netns', host.name);
  await host.must('ip', 'link', 'add', 'h1', 'type', 'veth', 'peer', 'name', 'u0', 'netns', up.name);
  await mvm.must('ip', 'addr', 'add', '10.250.1.2/30', 'dev', 'm0');
  await mvm.must('ip', 'link', 'set', 'm0', 'up');
  await mvm.must('ip', 'route', 'add', 'default', 'via', '10.250.1.1');
  await host.must('ip', 'addr', 'add', '10.250.1.1/30', 'dev', 'h0');
  await host.must('ip', 'addr', 'add', '10.250.2.1/30', 'dev', 'h1');
  await host.must('ip', 'link', 'set', 'h0', 'up');
  await host.must('ip', 'link', 'set', 'h1', 'up');
  await host.must('ip', 'route', 'add', '10.250.3.0/24', 'via', '10.250.2.2');
  await host.must('sysctl', '-qw', 'net.ipv4.ip_forward=1');
  await up.must('ip', 'addr', 'add', '10.250.2.2/30', 'dev', 'u0');
  for (const address of upstreamAddresses) await up.must('ip', 'addr', 'add', `${address}/32`, 'dev', 'lo');
  await up.must('ip', 'link', 'set', 'u0', 'up');
  await up.must('ip', 'route', 'add', 'default', 'via', '10.250.2.1');
  return { mvm, host, up };
}

/**
 * The seed-000 application namespace of the nft-dnat tests: a veth whose end d0 holds the
 * proxy's address (PROXY/24) and a default route out of it, so connections to anywhere leave
 * through the nat OUTPUT hook the agent's DNAT rule sits in. No IPv6 link-local addresses: the
 * kernel adds them a moment after link-up, and they would show up as a change between two
 * snapshots that the agent did not make.
 */
export async function dnatAppLink(app: Netns, proxy: string): Promise<void> {
  await app.must('ip', 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1');
  await app.must('ip', 'addr', 'add', `${proxy}/24`, 'dev', 'd0');
  await app.must('ip', 'link', 'set', 'd0', 'addrgenmode', 'none');
  await app.must('ip', 'link', 'set', 'd1', 'addrgenmode', 'none');
  await app.must('ip', 'link', 'set', 'd0', 'up');
  await app.must('ip', 'link', 'set', 'd1', 'up');
  await app.must('ip', 'route', 'add', 'default', 'via', '10.251.0.1');
}

/**
 * Waits until no IPv6 address of the namespace is tentative: the kernel gives every link a
 * link-local address at link-up and adds its local route only once duplicate address
 * detection ends (about a second later), so a snapshot taken before that differs from one
 * taken after by routes the agent did not add.
 */
export async function ipv6Settled(ns: Netns, timeoutMs = 10_000): Promise<void> {
  const settled = await eventually(async () => (await ns.must('ip', '-6', '-o', 'addr', 'show', 'tentative')).trim() === '', timeoutMs);
  if (!settled) throw new Error(`IPv6 addresses in ${ns.name} still tentative after ${timeoutMs} ms`);
}
