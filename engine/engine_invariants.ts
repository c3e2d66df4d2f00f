// Invariants of the engine's state, checked by tests after every batch (and callable by
// tools): conservation per currency, no negative user balance, sequences never going
// backwards. A violation is a bug, never an operating condition, so it throws.
import {
  AVAILABLE_WORD, BUCKET_WORDS, CURRENCY_WORD, FROZEN_WORD, VERSION_WORD, isUserAccount, ACCOUNT_WORD,
} from './balance_table';
import { BalanceEngine } from './balance_engine';
import { TWO_POW_32 } from './int64_words';

export class InvariantChecker {
  private lastSequence: number;

  constructor(private readonly engine: BalanceEngine) {
    this.lastSequence = engine.sequence;
  }

  /**
   * Throws if, for some currency, available + frozen summed over all balances of all
   * partitions (system accounts included) is not zero; if a user balance is negative; if a
   * balance records a change sequence later than the engine's; or if the engine's sequence
   * went backwards since the previous check.
   */
  check(): void {
    const engine = this.engine;
    const table = engine.table;
    const sequence = engine.sequence;
    if (sequence < this.lastSequence) throw new Error(`invariant: engine sequence went backwards from ${this.lastSequence} to ${sequence}`);
    this.lastSequence = sequence;
    // Sums of low words and of high words per currency, kept apart so each stays exact in a
    // float64 (2^32 per balance times at most 2^26 buckets < 2^53), combined exactly at the end.
    const lowSums = new Map<number, number>();
    const highSums = new Map<number, number>();
    const words = table.words;
    const unsigned = table.unsignedWords;
    for (let bucket = 0; bucket < table.bucketCount; bucket++) {
      const base = bucket * BUCKET_WORDS;
      if (words[base + VERSION_WORD] === 0) continue;
      if ((words[base + VERSION_WORD] & 1) !== 0) throw new Error(`invariant: bucket ${bucket} left mid-write (odd version)`);
      const currency = unsigned[base + CURRENCY_WORD];
      const low = unsigned[base + AVAILABLE_WORD] + unsigned[base + FROZEN_WORD];
      const high = words[base + AVAILABLE_WORD + 1] + words[base + FROZEN_WORD + 1];
      lowSums.set(currency, (lowSums.get(currency) ?? 0) + low);
      highSums.set(currency, (highSums.get(currency) ?? 0) + high);
      if (isUserAccount(unsigned[base + ACCOUNT_WORD], unsigned[base + ACCOUNT_WORD + 1]) && (words[base + AVAILABLE_WORD + 1] < 0 || words[base + FROZEN_WORD + 1] < 0)) {
        throw new Error(`invariant: user account ${table.account(bucket)} currency ${currency} is negative (available ${table.available(bucket)}, frozen ${table.frozen(bucket)})`);
      }
      if (table.lastChangeSequence(bucket) > sequence) throw new Error(`invariant: bucket ${bucket} changed at sequence ${table.lastChangeSequence(bucket)} > engine sequence ${sequence}`);
    }
    for (const [currency, low] of lowSums) {
      const total = BigInt(highSums.get(currency) ?? 0) * BigInt(TWO_POW_32) + BigInt(low);
      if (total !== 0n) throw new Error(`invariant: currency ${currency} does not conserve: sum of available + frozen is ${total}`);
    }
  }
}
