// Structured logs an operator can read and a machine can parse: one JSON
// object per line on stderr ({"level":"info","time":ISO,"msg":…,…fields}).
// pino does the serialising and writing: it is the fast, well-kept logger of
// the Node ecosystem, and a denial flood or a fleet reconnect can log a lot.
// The Logger interface stays ours, so no room depends on pino's API.
import pino from 'pino';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

const LEVEL_NAMES: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** Errors become their message and bigints their decimal text, so every field survives JSON. */
const plain = (fields: LogFields | undefined): LogFields | undefined => {
  if (!fields) return undefined;
  let out: LogFields | undefined;
  for (const [key, value] of Object.entries(fields)) {
    if (value instanceof Error || typeof value === 'bigint') {
      out ??= { ...fields };
      out[key] = value instanceof Error ? value.message : value.toString();
    }
  }
  return out ?? fields;
};

const wrap = (instance: pino.Logger): Logger => {
  const at = (level: LogLevel) => (message: string, fields?: LogFields) => {
    const data = plain(fields);
    if (data) instance[level](data, message);
    else instance[level](message);
  };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (fields) => wrap(instance.child(plain(fields) ?? {})),
  };
};

export function createLogger(
  options: { level?: LogLevel; write?: (line: string) => void; fields?: LogFields } = {},
): Logger {
  const wanted = options.level ?? (process.env.EGRESS_XDS_LOG_LEVEL as LogLevel | undefined);
  const level = wanted && LEVEL_NAMES.includes(wanted) ? wanted : 'info';
  // Synchronous to stderr: a line logged just before a crash or a kill is not lost.
  const destination = options.write ? { write: options.write } : pino.destination({ dest: 2, sync: true });
  const instance = pino(
    {
      level,
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
  return wrap(options.fields ? instance.child(plain(options.fields) ?? {}) : instance);
}

/** A logger that drops everything: for tests and benchmarks. */
export const silentLogger: Logger = createLogger({ level: 'error', write: () => {} });
