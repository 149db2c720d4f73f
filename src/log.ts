// Structured logs an operator can read and a machine can parse: one JSON
// object per line on stderr, {"level":"info","time":ISO,...fields,"msg":...}.
//
// pino does the serialising and the writing: it is the maintained, fast JSON
// logger of the Node ecosystem (child loggers serialise their bindings once,
// not on every line), and a denial flood, a fleet reconnect or an agent that
// repairs every few seconds can log a lot. The Logger interface stays ours, so
// no module depends on pino's API and tests can still capture lines.
//
// Lines are written synchronously (pino.destination with sync: true, i.e.
// fs.writeSync on fd 2): a line logged just before a crash, a process.exit or a
// SIGKILL is already in the kernel when the process dies, so there is nothing to
// flush on exit and no exit hook to install (the agent's SIGTERM handling relies
// on owning its signal handlers). Logging is not on the hot path of xDS pushes
// or admin writes, so the asynchronous destination's speed is not worth losing
// the last line of a crash.
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

const LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** Errors become their message, bigints their decimal text (as before pino), at any depth. */
function plainValue(value: unknown, depth: number): unknown {
  if (value instanceof Error) return value.message;
  if (typeof value === 'bigint') return value.toString();
  if (depth === 0 || typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item, i) => {
      const plain = plainValue(item, depth - 1);
      if (plain !== item) (copy ??= [...value])[i] = plain;
    });
    return copy ?? value;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  return plainFields(value as LogFields, depth - 1);
}

function plainFields(fields: LogFields, depth = 4): LogFields {
  let copy: LogFields | undefined;
  for (const key of Object.keys(fields)) {
    const value = fields[key];
    const plain = plainValue(value, depth);
    if (plain !== value) (copy ??= { ...fields })[key] = plain;
  }
  return copy ?? fields;
}

function wrap(instance: pino.Logger): Logger {
  const at =
    (level: LogLevel) =>
    (message: string, fields?: LogFields): void => {
      // Checked first so a disabled level costs no field walk.
      if (!instance.isLevelEnabled(level)) return;
      if (fields) instance[level](plainFields(fields), message);
      else instance[level](message);
    };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (fields) => wrap(instance.child(plainFields(fields))),
  };
}

/** The level asked for, else EGRESS_XDS_LOG_LEVEL, else info (an unknown name is info too, as before). */
function levelOf(wanted: string | undefined): LogLevel {
  return LEVELS.includes(wanted as LogLevel) ? (wanted as LogLevel) : 'info';
}

export function createLogger(
  options: { level?: LogLevel; write?: (line: string) => void; fields?: LogFields } = {},
): Logger {
  const level = levelOf(options.level ?? process.env.EGRESS_XDS_LOG_LEVEL);
  // A test's `write` gets each line as pino writes it (one JSON object and "\n").
  const destination = options.write ? { write: options.write } : pino.destination({ dest: 2, sync: true });
  const instance = pino(
    {
      level,
      // No pid/hostname: the lines carry exactly the fields they did before pino.
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
  return wrap(options.fields ? instance.child(plainFields(options.fields)) : instance);
}

/** A logger that drops everything: for tests and benchmarks. pino's "silent" level makes every call a no-op; the
 * destination is one too, so importing this module opens no stream on stdout. */
export const silentLogger: Logger = wrap(pino({ level: 'silent' }, { write: () => {} }));
