// Network namespaces that a test creates for itself, so real iptables / nft / ip
// commands never touch the machine's own tables. Every namespace is named
// egx-<pid>-<n> and deleted by the test that made it.
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
    timeout: options.timeoutMs ?? 20_000,
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
  const probe = `egx-${process.pid}-probe${Math.floor(Math.random() * 1e6)}`;
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
    const name = `egx-${process.pid}-${++counter}`;
    const add = await sh('ip', ['netns', 'add', name]);
    if (add.exitCode !== 0) throw new Error(`ip netns add ${name}: ${add.stderr}`);
    const ns = new Netns(name, env);
    await ns.must('ip', 'link', 'set', 'lo', 'up');
    return ns;
  }

  exec(file: string, ...args: string[]): Promise<Result> {
    return sh('ip', ['netns', 'exec', this.name, file, ...args], { env: this.env });
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
  for (const args of [['nft', 'list', 'ruleset'], ['ip', 'rule'], ['ip', '-6', 'rule'], ['ip', 'route', 'show', 'table', 'all'], ['ip', '-6', 'route', 'show', 'table', 'all']]) {
    const out = await ns.exec(args[0]!, ...args.slice(1));
    parts.push(`## ${args.join(' ')}\n${out.stdout}`);
  }
  return parts.join('\n');
}

/** The nft ruleset without iptables-nft's own tables, for the nftables backend. */
export async function nftRuleset(ns: Netns): Promise<string> {
  return (await ns.exec('nft', 'list', 'ruleset')).stdout;
}

/**
 * A PATH whose iptables/ip6tables(-save) are the legacy flavour, when installed;
 * undefined otherwise. Both flavours must work with the same commands.
 */
export async function legacyPath(): Promise<Record<string, string> | undefined> {
  if (!(await which('iptables-legacy')) || !(await which('ip6tables-legacy'))) return undefined;
  const dir = await mkdtemp(join(tmpdir(), 'egx-legacy-'));
  for (const [name, target] of [
    ['iptables', 'iptables-legacy'],
    ['ip6tables', 'ip6tables-legacy'],
    ['iptables-save', 'iptables-legacy-save'],
    ['ip6tables-save', 'ip6tables-legacy-save'],
  ] as const) {
    const path = (await sh('sh', ['-c', `command -v ${target}`])).stdout.trim();
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
