// Readiness needs to know whether PostgreSQL and Kafka answer right now, not whether they
// did at start-up: a probe asks each every intervalMs (bounded by a timeout) and keeps the
// last answer. It also refreshes who owns each partition, so a balance query for another
// instance's partition can name the owner.

import type pg from 'pg';
import type { Logger } from './logger';

export interface HealthProbeOptions {
  readonly db: pg.Pool;
  readonly topic: string;
  readonly kafkaProbe: (timeoutMs: number) => Promise<void>;
  readonly log: Logger;
  readonly intervalMs?: number;
  readonly timeoutMs?: number;
}

export class HealthProbe {
  databaseUp = true;
  kafkaUp = true;
  private owners = new Map<number, string>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(private readonly options: HealthProbeOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.probe(), this.options.intervalMs ?? 1000);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  ownerOf(partition: number): string | undefined {
    return this.owners.get(partition);
  }

  async probe(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const timeoutMs = this.options.timeoutMs ?? 2000;
    try {
      const [database, kafka] = await Promise.allSettled([
        withTimeout(this.options.db.query<{ partition: number; owner: string | null }>('SELECT partition, owner FROM partition_leases WHERE topic = $1', [this.options.topic]), timeoutMs),
        withTimeout(this.options.kafkaProbe(timeoutMs), timeoutMs + 500),
      ]);
      this.note('PostgreSQL', database.status === 'fulfilled', database.status === 'rejected' ? database.reason : undefined, (up) => (this.databaseUp = up), this.databaseUp);
      this.note('Kafka', kafka.status === 'fulfilled', kafka.status === 'rejected' ? kafka.reason : undefined, (up) => (this.kafkaUp = up), this.kafkaUp);
      if (database.status === 'fulfilled') this.owners = new Map(database.value.rows.filter((r) => r.owner !== null).map((r) => [r.partition, r.owner!]));
    } finally {
      this.running = false;
    }
  }

  private note(what: string, up: boolean, error: unknown, set: (up: boolean) => void, was: boolean): void {
    if (up !== was) {
      if (up) this.options.log.info({ service: what }, `${what} answers again`);
      else this.options.log.error({ err: error, service: what }, `${what} does not answer; reporting not ready`);
    }
    set(up);
  }
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    promise.then((value) => { clearTimeout(timer); resolve(value); }, (error: unknown) => { clearTimeout(timer); reject(error); });
  });
}
