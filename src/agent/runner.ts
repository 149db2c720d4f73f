// How the agent touches the system: every command goes through a Runner, so
// tests can inject failures or prefix `ip netns exec NS`, and --dry-run can
// record instead of run.
import { readFile } from 'node:fs/promises';
import { execa } from 'execa';
import { AgentError, StopRequestedError, ToolMissingError } from './errors.js';

export interface Command {
  readonly file: string;
  readonly args: readonly string[];
  /** Fed to the command's stdin (nft -f -). */
  readonly input?: string;
}

export interface CommandResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Runner {
  /** Runs a command; a non-zero exit is a result, a missing program throws ToolMissingError. */
  run(command: Command): Promise<CommandResult>;
  /** Reads a file such as /proc/net/tcp, in the same network namespace as run(); undefined when absent. */
  readFile(path: string): Promise<string | undefined>;
}

export const command = (file: string, ...args: string[]): Command => ({ file, args });

export interface ExecaRunnerOptions {
  /** Words put before every command, e.g. ['ip', 'netns', 'exec', 'NS']. */
  prefix?: readonly string[];
  /** Bound on any one command, so a stuck xtables lock cannot hang the agent. */
  timeoutMs?: number;
  /** PATH for the commands (default: this process's, plus the sbin directories). */
  path?: string;
}

export function execaRunner(options: ExecaRunnerOptions = {}): Runner {
  const prefix = options.prefix ?? [];
  const timeout = options.timeoutMs ?? 30_000;
  const run = async (cmd: Command): Promise<CommandResult> => {
    const [file, ...args] = [...prefix, cmd.file, ...cmd.args] as [string, ...string[]];
    const result = await execa(file, args, {
      reject: false,
      timeout,
      input: cmd.input ?? '',
      stripFinalNewline: false,
      // System tools live in sbin, which a non-login PATH may lack.
      env: { PATH: withSbin(options.path ?? process.env.PATH), LC_ALL: 'C' },
    });
    const code = (result as { code?: string }).code;
    // execvp reports EACCES instead of ENOENT when some PATH directory is unreadable.
    if (code === 'ENOENT' || (code === 'EACCES' && !file.includes('/'))) throw new ToolMissingError(file);
    if (result.exitCode === undefined && !result.timedOut) throw new AgentError(`could not run ${file}: ${result.message}`);
    const stderr = String(result.stderr ?? '');
    // `ip netns exec` reports a missing program itself.
    if (prefix.length > 0 && result.exitCode !== 0 && /exec of "[^"]*" failed: No such file/.test(stderr)) {
      throw new ToolMissingError(cmd.file);
    }
    if (result.timedOut) return { exitCode: 124, stdout: String(result.stdout ?? ''), stderr: `timed out after ${timeout} ms` };
    return { exitCode: result.exitCode ?? 1, stdout: String(result.stdout ?? ''), stderr };
  };
  return {
    run,
    readFile: async (path) => {
      if (prefix.length === 0) {
        try {
          return await readFile(path, 'utf8');
        } catch {
          return undefined;
        }
      }
      const result = await run(command('cat', path));
      return result.exitCode === 0 ? result.stdout : undefined;
    },
  };
}

/**
 * The same runner, but once signal is aborted it starts no new command (throws
 * StopRequestedError instead). A command already running is never interrupted:
 * it finishes and its result is returned, so a stop never leaves half a command.
 */
export function stopBetweenCommands(runner: Runner, signal: AbortSignal): Runner {
  const guard = (): void => {
    if (signal.aborted) throw new StopRequestedError();
  };
  return {
    run: async (cmd) => {
      guard();
      return runner.run(cmd);
    },
    readFile: async (path) => {
      guard();
      return runner.readFile(path);
    },
  };
}

function withSbin(path: string | undefined): string {
  const parts = (path ?? '').split(':').filter((p) => p !== '');
  for (const dir of ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin', '/bin']) {
    if (!parts.includes(dir)) parts.push(dir);
  }
  return parts.join(':');
}
