// Leveled logging. Concise by default; NSPAWN_TS_LOG=debug (or --verbose, via setLogLevel) for
// detail; JSON lines (one object per event) for the sidecar, where a machine reads the log.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

type Fields = Record<string, unknown>;

let threshold: LogLevel = parseLevel(process.env.NSPAWN_TS_LOG) ?? 'info';
let json = false;
let sink: (line: string) => void = (line) => process.stderr.write(line + '\n');

function parseLevel(v: string | undefined): LogLevel | undefined {
  return v === 'debug' || v === 'info' || v === 'warn' || v === 'error' ? v : undefined;
}

export function setLogLevel(level: LogLevel): void {
  threshold = level;
}
export function setLogFormat(format: 'text' | 'json'): void {
  json = format === 'json';
}
/** Redirects log lines (tests capture them). Returns the previous sink. */
export function setLogSink(fn: (line: string) => void): (line: string) => void {
  const prev = sink;
  sink = fn;
  return prev;
}
export function isDebug(): boolean {
  return ORDER[threshold] <= ORDER.debug;
}

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
}

export function logger(module: string): Logger {
  const emit = (level: LogLevel, msg: string, fields?: Fields): void => {
    if (ORDER[level] < ORDER[threshold]) return;
    if (json) {
      sink(JSON.stringify({ ts: new Date().toISOString(), level, module, msg, ...fields }));
      return;
    }
    const extra = fields && Object.keys(fields).length
      ? ' ' + Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ')
      : '';
    const prefix = level === 'info' ? '' : `${level}: `;
    // with detail on, each line says when it happened (ms since the process started): a launch's timeline
    sink(`${prefix}${isDebug() ? `[${performance.now().toFixed(1).padStart(6)} ms ${module}] ` : ''}${msg}${extra}`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}
