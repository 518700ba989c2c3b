// One pino logger for the agent; modules take child loggers. Redaction is compiled once here and
// covers every field that could carry a secret (no such field is ever logged on purpose).
import { pino, type Logger, type DestinationStream } from 'pino';

export const REDACT = [
  'password',
  '*.password',
  'token',
  '*.token',
  'secret',
  '*.secret',
  'secretHash',
  'passwordHash',
  'tokenHashes',
  'payload',
  '*.payload',
  'privateKey',
  'key',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      name: 'edgewarden',
      level,
      redact: { paths: REDACT, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
