// Structured log lines (one JSON object per line) for the long-running `agent run`.
export type LogLevel = 'info' | 'warn' | 'error';
export type Logger = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

export const jsonLogger =
  (write: (line: string) => void = (line) => process.stderr.write(line)): Logger =>
  (level, msg, fields = {}) =>
    write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
