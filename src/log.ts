// Structured logs (pino). JSON by default; `text` pretty-prints a plain line per record.
import pino, { type Logger } from 'pino';
import type { Config } from './config/config.js';

const LEVELS: Record<string, string> = { panic: 'fatal' };

export function createLogger(log: Config['log'], destination: pino.DestinationStream = pino.destination({ sync: false })): Logger {
  return pino(
    {
      level: LEVELS[log.level] ?? log.level,
      base: { service: 'berth', ...log.fields },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Credentials never reach a log line, whatever a caller passes in.
      redact: { paths: ['req.headers.authorization', 'headers.authorization', 'authorization', 'password', 'token'], censor: '[redacted]' },
    },
    destination,
  );
}
