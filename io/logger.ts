// Structured JSON logs on stdout through pino: one line per event, with the context
// (partition, offset, tx_id, error) as fields so operators can filter rather than grep.

import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level: string, name = 'tally'): Logger {
  return pino({ name, level, base: { pid: process.pid } });
}
