// egress-xds denials: what Envoy refused, from the admin API's /v1/denials.
// A table by default, JSON lines with --json; --follow keeps printing as
// records arrive (server-sent events) until interrupted.
//
// Exit codes: 0 done, 1 the server refused or could not be reached, 2 usage.
import { readFile } from 'node:fs/promises';
import type { ParseArgsConfig } from 'node:util';
import { UsageError, parseFlags } from './flags.js';
import { DEFAULT_ADMIN_URL, EXIT, type CliIo } from './policy.js';

const USAGE = `usage: egress-xds denials [--node N] [--source S] [--destination D] [--since 1h]
                         [--limit 100] [--verdict denied,would-deny,allowed] [--follow] [--json]

  --node N          only this Envoy node id
  --source S        only this source: IP, IP:PORT or CIDR
  --destination D   only this destination: IP, IP:PORT or a server name
  --since T         from this time on: ISO 8601, or a duration back (30s, 15m, 1h, 2d)
  --limit N         at most N records (default 100; with --follow, the backlog first, default 10)
  --verdict V       which verdicts (default denied,would-deny)
  --follow          keep printing new records as they arrive (Ctrl-C to stop)
  --json            one JSON record per line
  --server URL      admin API (default: $EGRESS_XDS_ADMIN_URL or ${DEFAULT_ADMIN_URL})
  --token-file FILE bearer token (default: $EGRESS_XDS_ADMIN_TOKEN)`;

const options = {
  server: { type: 'string' },
  'token-file': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  node: { type: 'string' },
  source: { type: 'string' },
  destination: { type: 'string' },
  since: { type: 'string' },
  limit: { type: 'string' },
  verdict: { type: 'string' },
  follow: { type: 'boolean' },
} satisfies ParseArgsConfig['options'];

interface Record {
  seq: number;
  time: string;
  node: string;
  source: string;
  destination: string;
  serverName?: string;
  reason?: string;
  verdict: string;
  policy?: string;
  revision?: string;
  listener: string;
}

/** One line per record: time, node, source → destination (name), verdict and why, revision. */
export function formatDenial(r: Record): string {
  const name = r.serverName ? ` (${r.serverName})` : '';
  const why = r.reason ? ` ${r.reason}` : '';
  const policy = r.policy ? ` policy=${r.policy}` : '';
  const revision = r.revision ? ` rev=${r.revision}` : '';
  return `${r.time}  ${r.node}  ${r.source} → ${r.destination}${name}  ${r.verdict}${why}${policy}${revision}\n`;
}

const processIo: CliIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  env: process.env,
  stdin: async () => '',
};

async function tokenOf(flags: { 'token-file'?: string }, io: CliIo): Promise<string | undefined> {
  if (flags['token-file'] === undefined) return io.env.EGRESS_XDS_ADMIN_TOKEN?.trim() || undefined;
  return (await readFile(flags['token-file'], 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot read --token-file ${flags['token-file']}: ${error.code ?? error.message}`);
  })).trim();
}

class ApiError extends Error {}

async function failure(response: Response): Promise<ApiError> {
  const text = await response.text();
  let message = text.trim();
  try {
    const error = (JSON.parse(text) as { error?: { message?: string; field?: string } }).error;
    if (error?.message) message = `${error.field ? `${error.field}: ` : ''}${error.message}`;
  } catch {
    // not JSON: the text as it is
  }
  return new ApiError(`${response.status} ${message}${response.status === 401 ? ' (set --token-file FILE or EGRESS_XDS_ADMIN_TOKEN)' : ''}`);
}

/** Reads server-sent events from a fetch body, calling onEvent with each event's data. */
async function readEvents(body: ReadableStream<Uint8Array>, onEvent: (event: string, data: string) => void, signal?: AbortSignal): Promise<void> {
  const decoder = new TextDecoder();
  let buffer = '';
  const reader = body.getReader();
  signal?.addEventListener('abort', () => void reader.cancel().catch(() => undefined), { once: true });
  for (;;) {
    const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true as const }));
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      if (data.length > 0) onEvent(event, data.join('\n'));
    }
  }
}

export async function denialsCommand(argv: string[], io: CliIo = processIo, signal?: AbortSignal): Promise<number> {
  try {
    const { values: flags, positionals } = parseFlags(argv, options, true);
    if (flags.help) {
      io.out(`${USAGE}\n`);
      return EXIT.ok;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    const base = (flags.server ?? io.env.EGRESS_XDS_ADMIN_URL ?? DEFAULT_ADMIN_URL).replace(/\/+$/, '');
    try {
      new URL(base);
    } catch {
      throw new UsageError(`--server ${base} is not a URL (e.g. ${DEFAULT_ADMIN_URL})`);
    }
    const token = await tokenOf(flags, io);
    const query = new URLSearchParams();
    for (const key of ['node', 'source', 'destination', 'since', 'verdict'] as const) if (flags[key] !== undefined) query.set(key, flags[key]!);
    if (flags.limit !== undefined) {
      if (!/^\d+$/.test(flags.limit)) throw new UsageError(`--limit ${flags.limit}: must be a whole number`);
      query.set('limit', flags.limit);
    } else if (flags.follow) query.set('limit', '10');
    if (flags.follow) query.set('follow', '1');
    const headers: globalThis.Record<string, string> = { 'user-agent': 'egress-xds-cli', accept: flags.follow ? 'text/event-stream' : 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    let response: Response;
    try {
      response = await fetch(`${base}/v1/denials?${query}`, { headers, ...(flags.follow ? (signal ? { signal } : {}) : { signal: AbortSignal.timeout(15_000) }) });
    } catch (error) {
      if (signal?.aborted) return EXIT.ok;
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new ApiError(`cannot reach the admin API at ${base}: ${cause?.code ?? cause?.message ?? (error as Error).message}`);
    }
    if (response.status >= 400) throw await failure(response);
    const print = (record: Record) => io.out(flags.json ? `${JSON.stringify(record)}\n` : formatDenial(record));
    if (!flags.follow) {
      const body = (await response.json()) as { denials: Record[] };
      // Oldest first on a terminal, like a log.
      const records = [...body.denials].reverse();
      if (records.length === 0 && !flags.json) io.err('no denials match\n');
      for (const record of records) print(record);
      return EXIT.ok;
    }
    await readEvents(response.body!, (event, data) => {
      if (event === 'denial') print(JSON.parse(data) as Record);
      else if (event === 'error') io.err(`egress-xds denials: ${data}\n`);
    }, signal);
    return EXIT.ok;
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`egress-xds denials: ${error.message}\n\n${USAGE}\n`);
      return EXIT.usage;
    }
    if (error instanceof ApiError) {
      io.err(`egress-xds denials: ${error.message}\n`);
      return EXIT.failed;
    }
    throw error;
  }
}
