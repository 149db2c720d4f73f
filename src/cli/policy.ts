// egress-xds policy: a client of the admin REST API. Human-readable output by
// default, --json for scripts. Validation is the server's (one set of rules);
// this only turns flags into a request and the answer into lines.
//
// Exit codes: 0 done (check: allowed), 1 the server refused or could not be
// reached, 2 usage error, 3 check: denied.
import { readFile } from 'node:fs/promises';
import type { ParseArgsConfig } from 'node:util';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { UsageError, parseFlags } from './flags.js';
import { formatSuggestion } from './policySuggest.js';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:18080';
export const EXIT = { ok: 0, failed: 1, usage: 2, denied: 3 } as const;

const USAGE = `usage: egress-xds policy <command> [options]

commands:
  list                               every policy
  get NAME                           one policy
  put NAME --file FILE               create or replace from a YAML/JSON spec ("-" reads stdin)
  put NAME [--sni NAME[,NAME]]... [--cidr CIDR[:PORT[,PORT]]]... [--source CIDR]... [--node GLOB]...
  delete NAME
  batch --file FILE                  many puts and deletes as one atomic commit, all or nothing;
                                     FILE (YAML/JSON, "-" stdin): {put: {NAME: SPEC}, delete: [NAME],
                                     ifMatch: {NAME: REVISION}}
  check --node ID --source IP --destination IP:PORT [--sni NAME]
                                     the verdict Envoy would give (exit 0 allow, 3 deny)
  history [--limit N] [--since REVISION | --before REVISION]
  suggest --node ID --source IP [--since 1h]
                                     a policy drafted from the source's denials, ready to put,
                                     and what it would add to the policies in force

options:
  --server URL        admin API (default: $EGRESS_XDS_ADMIN_URL or ${DEFAULT_ADMIN_URL})
  --token-file FILE   bearer token (default: $EGRESS_XDS_ADMIN_TOKEN)
  --if-match REV      put/delete only if the policy is at this revision
  --create            put only if the policy does not exist yet
  --json              machine-readable output
  -h, --help

--cidr takes ports after the prefix: 10.0.0.0/8:443,8443; IPv6 in brackets: [2001:db8::]/32:443.
exit codes: 0 ok (check: allow), 1 refused by the server or unreachable, 2 usage, 3 check: deny`;

export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
  readonly stdin: () => Promise<string>;
}

const processIo: CliIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  env: process.env,
  stdin: async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  },
};

const options = {
  server: { type: 'string' },
  'token-file': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  file: { type: 'string' },
  sni: { type: 'string', multiple: true },
  source: { type: 'string', multiple: true },
  node: { type: 'string', multiple: true },
  cidr: { type: 'string', multiple: true },
  'if-match': { type: 'string' },
  create: { type: 'boolean' },
  destination: { type: 'string' },
  limit: { type: 'string' },
  since: { type: 'string' },
  before: { type: 'string' },
} satisfies ParseArgsConfig['options'];

type Flags = ReturnType<typeof parseFlags<typeof options>>['values'];

/** Which flags each command takes (beyond --server, --token-file, --json, --help). */
const ALLOWED: Record<string, readonly (keyof Flags)[]> = {
  list: [],
  get: [],
  put: ['file', 'sni', 'source', 'node', 'cidr', 'if-match', 'create'],
  delete: ['if-match'],
  batch: ['file'],
  check: ['node', 'source', 'destination', 'sni'],
  history: ['limit', 'since', 'before'],
  suggest: ['node', 'source', 'since'],
};

/** "10.0.0.0/8:443,8443", "[2001:db8::]/32:443", "1.2.3.4:22" -> {cidr, ports?}. */
export function parseCidrFlag(text: string): { cidr: string; ports?: number[] } {
  let cidr = text;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](\/\d+)?(?::(.*))?$/.exec(text);
  if (bracketed) {
    cidr = `${bracketed[1]}${bracketed[2] ?? ''}`;
    portText = bracketed[3];
  } else {
    const slash = text.indexOf('/');
    const colon = slash >= 0 ? text.indexOf(':', slash) : text.split(':').length === 2 ? text.indexOf(':') : -1;
    if (colon >= 0) {
      cidr = text.slice(0, colon);
      portText = text.slice(colon + 1);
    }
  }
  if (portText === undefined) return { cidr };
  const ports = portText.split(',').map((p) => p.trim());
  if (ports.some((p) => !/^\d{1,5}$/.test(p))) throw new UsageError(`--cidr ${text}: ports must be numbers separated by commas`);
  return { cidr, ports: ports.map(Number) };
}

const splitList = (values: readonly string[] | undefined): string[] =>
  (values ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');

/** A YAML or JSON file ("-": stdin), parsed; the server validates what it holds. */
async function readSpecFile(file: string, io: CliIo): Promise<unknown> {
  const text = file === '-' ? await io.stdin() : await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot read ${file}: ${error.code ?? error.message}`);
  });
  try {
    return parseYaml(text) as unknown;
  } catch (error) {
    throw new UsageError(`${file} is not YAML or JSON: ${(error as Error).message}`);
  }
}

async function specFromFlags(flags: Flags, io: CliIo): Promise<unknown> {
  const inline = flags.sni || flags.cidr || flags.source || flags.node;
  if (flags.file !== undefined) {
    if (inline) throw new UsageError('put: give either --file or --sni/--cidr/--source/--node, not both');
    return readSpecFile(flags.file, io);
  }
  if (!flags.sni && !flags.cidr) throw new UsageError('put: give --file, or at least one --sni or --cidr');
  const allow: { sni: string[]; cidrs?: unknown[] } = { sni: splitList(flags.sni) };
  if (flags.cidr) allow.cidrs = flags.cidr.map(parseCidrFlag);
  return {
    ...(flags.source ? { sources: splitList(flags.source) } : {}),
    ...(flags.node ? { nodes: splitList(flags.node) } : {}),
    allow,
  };
}

interface ApiResponse {
  status: number;
  body: any;
  etag: string | null;
}

class ApiError extends Error {}

function client(flags: Flags, io: CliIo, token: string | undefined) {
  const base = (flags.server ?? io.env.EGRESS_XDS_ADMIN_URL ?? DEFAULT_ADMIN_URL).replace(/\/+$/, '');
  try {
    new URL(base);
  } catch {
    throw new UsageError(`--server ${base} is not a URL (e.g. ${DEFAULT_ADMIN_URL})`);
  }
  return async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiResponse> => {
    const all: Record<string, string> = { 'user-agent': 'egress-xds-cli', accept: 'application/json', ...headers };
    if (token) all.authorization = `Bearer ${token}`;
    if (body !== undefined) all['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(`${base}${path}`, {
        method,
        headers: all,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new ApiError(`cannot reach the admin API at ${base}: ${cause?.code ?? cause?.message ?? (error as Error).message}`);
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = text;
    }
    if (response.status >= 400) {
      const error = (parsed as { error?: { message?: string; field?: string } })?.error;
      const where = error?.field ? `${error.field}: ` : '';
      const hint = response.status === 401 ? ' (set --token-file FILE or EGRESS_XDS_ADMIN_TOKEN)' : '';
      throw new ApiError(`${response.status} ${where}${error?.message ?? text.trim()}${hint}`);
    }
    return { status: response.status, body: parsed, etag: response.headers.get('etag') };
  };
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

const describeAllow = (allow: { sni: string[]; cidrs?: Array<{ cidr: string; ports?: number[] }> }): string =>
  [
    ...allow.sni,
    ...(allow.cidrs ?? []).map((c) => (c.ports ? `${c.cidr}:${c.ports.join(',')}` : c.cidr)),
  ].join(' ') || '(nothing)';

function revisionFlag(flags: Flags): Record<string, string> {
  const headers: Record<string, string> = {};
  if (flags['if-match'] !== undefined) {
    if (!/^\d+$/.test(flags['if-match'])) throw new UsageError(`--if-match ${flags['if-match']}: must be a revision number`);
    headers['if-match'] = `"${flags['if-match']}"`;
  }
  if (flags.create) headers['if-none-match'] = '*';
  return headers;
}

function integerFlag(flags: Flags, key: 'limit' | 'since' | 'before'): string | undefined {
  const value = flags[key];
  if (value !== undefined && !/^\d+$/.test(value)) throw new UsageError(`--${key} ${value}: must be a whole number`);
  return value;
}

export async function policyCommand(argv: string[], io: CliIo = processIo): Promise<number> {
  try {
    const { values: flags, positionals } = parseFlags(argv, options, true);
    if (flags.help) {
      io.out(`${USAGE}\n`);
      return EXIT.ok;
    }
    const [command, name, ...extra] = positionals;
    if (command === undefined) throw new UsageError('a command is required');
    const allowed = ALLOWED[command];
    if (!allowed) throw new UsageError(`unknown command "${command}"`);
    const stray = (Object.keys(flags) as (keyof Flags)[]).find((k) => !['server', 'token-file', 'json', 'help', ...allowed].includes(k));
    if (stray) throw new UsageError(`${command} does not take --${stray}`);
    const needsName = ['get', 'put', 'delete'].includes(command);
    if (needsName && name === undefined) throw new UsageError(`${command} needs a policy NAME`);
    if ((!needsName && name !== undefined) || extra.length > 0) throw new UsageError(`unexpected argument "${needsName ? extra[0] : name}"`);

    let token: string | undefined;
    if (flags['token-file'] !== undefined) {
      token = (await readFile(flags['token-file'], 'utf8').catch((error: NodeJS.ErrnoException) => {
        throw new UsageError(`cannot read --token-file ${flags['token-file']}: ${error.code ?? error.message}`);
      })).trim();
    } else {
      token = io.env.EGRESS_XDS_ADMIN_TOKEN?.trim() || undefined;
    }
    const call = client(flags, io, token);
    const path = name === undefined ? '' : `/${encodeURIComponent(name)}`;
    const print = (human: string, data: unknown) => io.out(flags.json ? `${JSON.stringify(data, null, 2)}\n` : human);

    switch (command) {
      case 'list': {
        const { body } = await call('GET', '/v1/policies');
        const rows = [['NAME', 'REV', 'SOURCES', 'NODES', 'MANAGED BY', 'ALLOW']];
        for (const p of body) {
          rows.push([p.name, String(p.revision), p.sources?.join(',') ?? '*', p.nodes?.join(',') ?? '*', p.source ?? 'api', describeAllow(p.allow)]);
        }
        print(body.length === 0 ? 'no policies\n' : table(rows), body);
        return EXIT.ok;
      }
      case 'get': {
        const { body } = await call('GET', `/v1/policies${path}`);
        print(toYaml(body), body);
        return EXIT.ok;
      }
      case 'put': {
        const headers = revisionFlag(flags);
        const spec = await specFromFlags(flags, io);
        const { body } = await call('PUT', `/v1/policies${path}`, spec, headers);
        print(body.changed === false ? `${body.name}: unchanged (revision ${body.revision})\n` : `${body.name}: stored at revision ${body.revision}\n`, body);
        return EXIT.ok;
      }
      case 'delete': {
        const { body } = await call('DELETE', `/v1/policies${path}`, undefined, revisionFlag(flags));
        print(`${body.name}: deleted (revision ${body.revision})\n`, body);
        return EXIT.ok;
      }
      case 'batch': {
        if (flags.file === undefined) throw new UsageError('batch needs --file FILE ({put: {NAME: SPEC}, delete: [NAME], ifMatch: {NAME: REVISION}})');
        const { body } = await call('POST', '/v1/policies:batch', await readSpecFile(flags.file, io));
        const changed = body.changed as string[];
        print(changed.length === 0 ? `nothing changed (store revision ${body.storeRevision})\n` : `committed at store revision ${body.storeRevision}: ${changed.join(', ')}\n`, body);
        return EXIT.ok;
      }
      case 'check': {
        const node = flags.node?.[0];
        const source = flags.source?.[0];
        if (node === undefined || source === undefined || flags.destination === undefined) {
          throw new UsageError('check needs --node ID --source IP --destination IP:PORT');
        }
        if ((flags.node?.length ?? 0) > 1 || (flags.source?.length ?? 0) > 1 || (flags.sni?.length ?? 0) > 1) {
          throw new UsageError('check takes one --node, one --source and at most one --sni');
        }
        const request = { node, source, destination: flags.destination, ...(flags.sni ? { sni: flags.sni[0] } : {}) };
        const { body } = await call('POST', '/v1/check', request);
        const why = body.verdict === 'allow' ? `allowed by policy ${body.policy}` : 'no policy allows it';
        print(`${body.verdict}: ${why} (filter chain ${body.filterChain})\n`, body);
        return body.verdict === 'allow' ? EXIT.ok : EXIT.denied;
      }
      case 'suggest': {
        const node = flags.node?.[0];
        const source = flags.source?.[0];
        if (node === undefined || source === undefined || (flags.node?.length ?? 0) > 1 || (flags.source?.length ?? 0) > 1) {
          throw new UsageError('suggest needs one --node ID and one --source IP');
        }
        const query = new URLSearchParams({ node, source, ...(flags.since !== undefined ? { since: flags.since } : {}) });
        const { body } = await call('GET', `/v1/denials/suggest?${query}`);
        print(formatSuggestion(body), body);
        return EXIT.ok;
      }
      case 'history': {
        const query = new URLSearchParams();
        const limit = integerFlag(flags, 'limit');
        const since = integerFlag(flags, 'since');
        if (limit !== undefined) query.set('limit', limit);
        if (since !== undefined) query.set('since', since);
        const before = integerFlag(flags, 'before');
        if (before !== undefined) query.set('before', before);
        const { body } = await call('GET', `/v1/history${query.size > 0 ? `?${query}` : ''}`);
        const rows = [['REV', 'AT', 'ACTION', 'POLICY', 'POLICY REV', 'CLIENT']];
        for (const e of body.entries) rows.push([String(e.storeRevision), e.at, e.action, e.name, String(e.revision), e.client]);
        const more = body.next !== undefined ? `older entries: --before ${body.next}\n` : '';
        print(body.entries.length === 0 ? 'no history\n' : `${table(rows)}${more}`, body);
        return EXIT.ok;
      }
    }
    return EXIT.usage;
  } catch (error) {
    // Not flags.ts's withUsage: that writes to process.stderr, and io.err is injectable.
    if (error instanceof UsageError) {
      io.err(`egress-xds policy: ${error.message}\n\n${USAGE}\n`);
      return EXIT.usage;
    }
    if (error instanceof ApiError) {
      io.err(`egress-xds policy: ${error.message}\n`);
      return EXIT.failed;
    }
    throw error;
  }
}
