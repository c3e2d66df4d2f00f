// Wait strategies: how a producer waits for the consumer to free slots, and how a consumer
// waits for the producer to publish. Each one is bounded by timeoutMs: when it runs out,
// waitFor returns false and the caller regains control (to check for shutdown, report a
// stall, or simply wait again). Nothing in the ring can block forever.
//
// A strategy waits on one Int32 word of the control block, the low 32 bits of the sequence
// it gates on, until that word has reached `targetLow` in wrapping (mod 2^32) order. The
// writer of the word always stores it with Atomics and, if the sleepers word next to it is
// non-zero, calls Atomics.notify (see Sequence.set), so any strategy can be paired with any
// other on the other side of the ring.
//
//   busy-spin  lowest latency; burns a whole core while waiting. For pinned threads only.
//   yielding   spins briefly, then sleeps in short Atomics.wait slices without registering
//              as a sleeper: the writer never pays for a notify, the waiter reacts within
//              roughly one slice (tens of microseconds) and uses little CPU when idle.
//   blocking   registers as a sleeper and sleeps in Atomics.wait until notified: near-zero
//              CPU when idle, but every wake-up costs a futex round trip on both sides.

import { SEQUENCE_LOW_OFFSET, SEQUENCE_SLEEPERS_OFFSET } from './ring_layout';
import { lowReached } from './sequence';

export interface WaitStrategy {
  readonly name: WaitStrategyName;
  readonly timeoutMs: number;
  /** Waits until `words[lowIndex]` reaches `targetLow`; false if timeoutMs ran out first. */
  waitFor(words: Int32Array, lowIndex: number, targetLow: number): boolean;
}

export type WaitStrategyName = 'busy-spin' | 'yielding' | 'blocking';

/** Distance in Int32 words from a sequence's low word to its sleepers word. */
const SLEEPERS_DELTA = (SEQUENCE_SLEEPERS_OFFSET - SEQUENCE_LOW_OFFSET) >>> 2;
/** The busy spin reads the clock once per this many polls (a power of two minus one). */
const SPIN_CLOCK_MASK = 1023;
const TIMEOUT_MS_DEFAULT = 1000;

function assertTimeout(timeoutMs: number): void {
  if (!(timeoutMs > 0 && timeoutMs <= 3_600_000)) throw new RangeError(`wait timeoutMs must be in (0, 3600000], got ${timeoutMs}`);
}

export class BusySpinWaitStrategy implements WaitStrategy {
  readonly name = 'busy-spin';

  constructor(readonly timeoutMs: number = TIMEOUT_MS_DEFAULT) {
    assertTimeout(timeoutMs);
  }

  waitFor(words: Int32Array, lowIndex: number, targetLow: number): boolean {
    const deadlineMs = performance.now() + this.timeoutMs;
    for (let poll = 0; ; poll++) {
      if (lowReached(Atomics.load(words, lowIndex), targetLow)) return true;
      if ((poll & SPIN_CLOCK_MASK) === SPIN_CLOCK_MASK && performance.now() >= deadlineMs) return false;
    }
  }
}

export class YieldingWaitStrategy implements WaitStrategy {
  readonly name = 'yielding';

  constructor(
    readonly timeoutMs: number = TIMEOUT_MS_DEFAULT,
    readonly spinPolls: number = 200,
    readonly sleepSliceMs: number = 0.05,
  ) {
    assertTimeout(timeoutMs);
    if (!(spinPolls >= 0 && sleepSliceMs > 0 && sleepSliceMs <= timeoutMs)) throw new RangeError('yielding: bad spinPolls or sleepSliceMs');
  }

  waitFor(words: Int32Array, lowIndex: number, targetLow: number): boolean {
    for (let poll = 0; poll < this.spinPolls; poll++) {
      if (lowReached(Atomics.load(words, lowIndex), targetLow)) return true;
    }
    const deadlineMs = performance.now() + this.timeoutMs;
    for (;;) {
      const low = Atomics.load(words, lowIndex);
      if (lowReached(low, targetLow)) return true;
      if (performance.now() >= deadlineMs) return false;
      // Returns at once if the word already moved on from `low`, else after one slice.
      Atomics.wait(words, lowIndex, low, this.sleepSliceMs);
    }
  }
}

export class BlockingWaitStrategy implements WaitStrategy {
  readonly name = 'blocking';

  constructor(readonly timeoutMs: number = TIMEOUT_MS_DEFAULT) {
    assertTimeout(timeoutMs);
  }

  /**
   * No lost wake-up: we count ourselves as a sleeper (seq-cst) before the value check that
   * Atomics.wait performs under the futex lock, and the writer stores the word (seq-cst)
   * before it reads the sleeper count. Either the writer sees us and notifies, or our check
   * sees its store and does not sleep.
   */
  waitFor(words: Int32Array, lowIndex: number, targetLow: number): boolean {
    const sleepersIndex = lowIndex + SLEEPERS_DELTA;
    const deadlineMs = performance.now() + this.timeoutMs;
    Atomics.add(words, sleepersIndex, 1);
    let reached = false;
    for (;;) {
      const low = Atomics.load(words, lowIndex);
      if (lowReached(low, targetLow)) {
        reached = true;
        break;
      }
      const remainingMs = deadlineMs - performance.now();
      if (remainingMs <= 0) break;
      Atomics.wait(words, lowIndex, low, remainingMs);
    }
    Atomics.sub(words, sleepersIndex, 1);
    return reached;
  }
}

/** Builds a strategy by name, e.g. from workerData, where class instances cannot travel. */
export function createWaitStrategy(name: WaitStrategyName, timeoutMs: number = TIMEOUT_MS_DEFAULT): WaitStrategy {
  switch (name) {
    case 'busy-spin':
      return new BusySpinWaitStrategy(timeoutMs);
    case 'yielding':
      return new YieldingWaitStrategy(timeoutMs);
    case 'blocking':
      return new BlockingWaitStrategy(timeoutMs);
    default:
      throw new RangeError(`unknown wait strategy ${String(name)}`);
  }
}
