// Recent durable outcomes by tx_id, for GET /v1/transactions/{tx_id} and for transfer
// requests waiting on their command. Fed from the batcher's onDurable, so it only ever holds
// outcomes that are committed in PostgreSQL. Bounded: the oldest entry goes first (a Map
// iterates in insertion order); anything older is read from PostgreSQL.
//
// tx_ids are deduplicated per partition, so two partitions may each hold a command with the
// same tx_id; the cache keeps the latest and the database lookup returns them all.

import type { DurableOutcome } from './durable_outcome';

export class OutcomeCache {
  private readonly entries = new Map<string, DurableOutcome>();
  private readonly waiters = new Map<string, Array<(outcome: DurableOutcome) => void>>();

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.entries.size;
  }

  get waiting(): number {
    return this.waiters.size;
  }

  add(outcome: DurableOutcome): void {
    const waiting = this.waiters.get(outcome.txId);
    if (waiting !== undefined) {
      this.waiters.delete(outcome.txId);
      for (const wake of waiting) wake(outcome);
    }
    if (this.capacity === 0) return;
    this.entries.delete(outcome.txId);
    this.entries.set(outcome.txId, outcome);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
  }

  get(txId: string): DurableOutcome | undefined {
    return this.entries.get(txId);
  }

  /**
   * Resolves with the next durable outcome of `txId` (filtered by `accept`), or undefined
   * after `timeoutMs`. Waiters are bounded by their timeouts.
   */
  waitFor(txId: string, timeoutMs: number, accept: (outcome: DurableOutcome) => boolean = () => true): Promise<DurableOutcome | undefined> {
    return new Promise((resolve) => {
      const list = this.waiters.get(txId) ?? [];
      const wake = (outcome: DurableOutcome): void => {
        if (!accept(outcome)) {
          // Not ours (another partition's command with the same tx_id): keep waiting.
          const again = this.waiters.get(txId) ?? [];
          again.push(wake);
          this.waiters.set(txId, again);
          return;
        }
        clearTimeout(timer);
        resolve(outcome);
      };
      const timer = setTimeout(() => {
        const current = this.waiters.get(txId);
        if (current !== undefined) {
          const rest = current.filter((w) => w !== wake);
          if (rest.length === 0) this.waiters.delete(txId);
          else this.waiters.set(txId, rest);
        }
        resolve(undefined);
      }, timeoutMs);
      list.push(wake);
      this.waiters.set(txId, list);
    });
  }
}
