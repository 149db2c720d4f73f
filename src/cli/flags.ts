// Flag parsing shared by the commands: node's parseArgs, with errors that name
// the flag and exit code 2 (usage), and nothing done.
import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {}

export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message.replace(/^TypeError \[[A-Z_]+\]: /, '') : String(error));
  }
}

/** "host:port" or "[v6]:port" → parts; the flag is named in the error. */
export function parseHostPort(flag: string, value: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port < 0 || port > 65535) throw new UsageError(`${flag} must be HOST:PORT (e.g. 127.0.0.1:18000), got "${value}"`);
  return { host: match[1] ?? match[2]!, port };
}

export function parsePort(flag: string, value: string, { allowZero = false } = {}): number {
  const port = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!(port >= (allowZero ? 0 : 1) && port <= 65535)) throw new UsageError(`${flag} must be a port number from ${allowZero ? 0 : 1} to 65535, got "${value}"`);
  return port;
}

/** Answers --help/-h with the usage; runs the body otherwise, turning usage errors into a message and exit code 2. */
export async function withUsage(command: string, usage: string, argv: readonly string[], body: () => Promise<number>): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  try {
    return await body();
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`egress-xds ${command}: ${error.message}\n\n${usage}\n`);
      return 2;
    }
    throw error;
  }
}
