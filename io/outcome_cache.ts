// Recent durable outcomes by tx_id, for GET /v1/transactions/{tx_id} and for transfer
// requests waiting on their command. Fed from the batcher's onDurable, so it only ever holds
// outcomes that are committed in PostgreSQL. Bounded: the oldest entry goes first, found
// through a ring of the added outcomes (not by iterating the Map from its start, which walks
// over the holes deletions leave and was 13% of the main thread in a profile); anything older
// is read from PostgreSQL.
//
// tx_ids are deduplicated per partition, so two partitions may each hold a command with the
// same tx_id; the cache keeps the latest and the database lookup returns them all.

import type { DurableOutcome } from './durable_outcome';

export class OutcomeCache {
  private readonly entries = new Map<string, DurableOutcome>();
  /** The last `capacity` outcomes added, oldest at `head` once full. */
  private readonly order: (DurableOutcome | undefined)[];
  private head = 0;
  private readonly waiters = new Map<string, Array<(outcome: DurableOutcome) => void>>();

  constructor(private readonly capacity: number) {
    this.order = new Array<DurableOutcome | undefined>(capacity).fill(undefined);
  }

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
    const evicted = this.order[this.head];
    // Only if it is still the entry of its tx_id (a later outcome of the tx_id replaced it).
    if (evicted !== undefined && this.entries.get(evicted.txId) === evicted) this.entries.delete(evicted.txId);
    this.order[this.head] = outcome;
    this.head = this.head + 1 === this.capacity ? 0 : this.head + 1;
    this.entries.set(outcome.txId, outcome);
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
