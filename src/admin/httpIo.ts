// Request bodies and responses for the admin API: JSON in, JSON out, errors as
// {"error": {"message", "field"?}} with the status that says which kind.
import type { IncomingMessage, ServerResponse } from 'node:http';

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

/** What a handler answers: a status and a JSON body (or text, for /metrics). */
export interface Reply {
  readonly status: number;
  readonly body?: unknown;
  readonly text?: { readonly contentType: string; readonly content: string };
  readonly headers?: Readonly<Record<string, string>>;
  /** A long-lived response (server-sent events): it writes its own head and body. */
  readonly stream?: (res: ServerResponse) => void;
}

export const json = (status: number, body: unknown, headers?: Record<string, string>): Reply => ({ status, body, ...(headers ? { headers } : {}) });

export const errorReply = (status: number, message: string, field?: string, headers?: Record<string, string>): Reply =>
  json(status, { error: field === undefined ? { message } : { message, field } }, headers);

export function send(res: ServerResponse, reply: Reply): void {
  if (reply.stream) {
    reply.stream(res);
    return;
  }
  const headers: Record<string, string> = {
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...reply.headers,
  };
  let payload = '';
  if (reply.text) {
    headers['content-type'] = reply.text.contentType;
    payload = reply.text.content;
  } else if (reply.body !== undefined) {
    headers['content-type'] = 'application/json; charset=utf-8';
    payload = `${JSON.stringify(reply.body)}\n`;
  }
  headers['content-length'] = String(Buffer.byteLength(payload));
  res.writeHead(reply.status, headers);
  res.end(payload);
}

const isJsonType = (contentType: string | undefined): boolean => {
  const type = contentType?.split(';')[0]?.trim().toLowerCase() ?? '';
  return type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'));
};

/**
 * Reads a JSON body: 415 unless Content-Type is JSON, 413 past `limit` bytes
 * (said before reading when Content-Length already tells), 400 for bad JSON.
 * A 413 closes the connection: the rest of the body is not worth reading. A
 * client that hangs up mid-body gets a 400 no one reads, so that it counts as
 * the client's doing, not as a 500 of ours.
 */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<{ ok: true; value: unknown } | { ok: false; reply: Reply }> {
  if (!isJsonType(req.headers['content-type'])) {
    const sent = req.headers['content-type'];
    // Only JSON, deliberately: a form or text/plain POST is what a web page can
    // send cross-site without a preflight, and curl -d sends a form type. So say
    // exactly how to fix the request instead of guessing.
    const what = sent ? `Content-Type is ${sent}` : 'Content-Type is missing';
    const curl = sent?.toLowerCase().startsWith('application/x-www-form-urlencoded') ? " (curl -d sends a form type by default)" : '';
    return {
      ok: false,
      reply: errorReply(415, `the body must be JSON sent with Content-Type: application/json, but ${what}${curl}; add -H 'Content-Type: application/json' to curl, or use curl --json`, 'Content-Type'),
    };
  }
  const tooLarge = (): { ok: false; reply: Reply } => ({
    ok: false,
    reply: errorReply(413, `the body is larger than ${limit} bytes`, undefined, { connection: 'close' }),
  });
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  const ended = await new Promise<'complete' | 'overflow' | 'aborted'>((resolve) => {
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        req.pause();
        resolve('overflow');
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve('complete'));
    req.once('error', () => resolve('aborted'));
  });
  if (ended === 'overflow') return tooLarge();
  if (ended === 'aborted') return { ok: false, reply: errorReply(400, 'the body was cut off: the client closed the connection', 'body') };
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return { ok: false, reply: errorReply(400, 'the body is empty; send a JSON object', 'body') };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (error) {
    return { ok: false, reply: errorReply(400, `the body is not valid JSON: ${(error as Error).message}`, 'body') };
  }
}
