// Seeded generators of wire commands for tests and benchmarks. Deterministic: the same
// seed gives the same commands, so a failing seed can be replayed.

import { WireCommand, SettleWireLeg } from './wire_command';

/** sfc32 (Chris Doty-Humphrey's small fast counting PRNG), seeded through splitmix32. */
export class SeededRandom {
  private a: number;
  private b: number;
  private c: number;
  private d = 1;

  constructor(readonly seed: number) {
    let state = seed >>> 0;
    const next = (): number => {
      state = (state + 0x9e3779b9) | 0;
      let z = state;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    for (let round = 0; round < 12; round++) this.nextU32();
  }

  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform integer in 0..maxExclusive-1 (maxExclusive <= 2^32). */
  int(maxExclusive: number): number {
    return Math.floor((this.nextU32() / 4294967296) * maxExclusive);
  }

  /** Uniform 64-bit pattern as an unsigned BigInt. */
  u64(): bigint {
    return (BigInt(this.nextU32()) << 32n) | BigInt(this.nextU32());
  }

  chance(probability: number): boolean {
    return this.nextU32() / 4294967296 < probability;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  digits(count: number): string {
    let text = '';
    for (let index = 0; index < count; index++) text += String.fromCharCode(0x30 + this.int(10));
    return text;
  }
}

export interface WorkloadCurrency {
  code: string;
  scale: number;
}

export const BENCH_CURRENCIES: readonly WorkloadCurrency[] = [
  { code: 'USDT', scale: 6 },
  { code: 'BTC', scale: 8 },
  { code: 'ETH', scale: 8 },
  { code: 'SOL', scale: 9 },
];

export interface WorkloadOptions {
  accountCount: number;
  currencies: readonly WorkloadCurrency[];
  /** First user account id (ids below 1000 are system accounts). */
  firstAccountId?: number;
  /**
   * Also generate credits (the second halves of transfers that cross partitions), about 5% of
   * the commands. Off by default: then the generator draws exactly the numbers it drew before
   * credits existed, so the corpora of the benchmarks stay comparable across versions.
   */
  credits?: boolean;
}

/** A positive amount with up to `scale` digits after the point, like "1234.5". */
export function randomAmount(random: SeededRandom, scale: number): string {
  const integer = String(random.int(random.chance(0.5) ? 100 : 100_000));
  const fractionDigits = random.int(Math.min(scale, 6) + 1);
  const fraction = fractionDigits === 0 ? '' : random.digits(fractionDigits - 1) + String(1 + random.int(9));
  return fraction === '' ? (integer === '0' ? '1' : integer) : `${integer}.${fraction}`;
}

/**
 * One realistic command: mostly deposits, transfers and freezes, some withdrawals and
 * unfreezes, and about 5% settles shaped like a trade (see ARCHITECTURE.md section 3); with
 * `options.credits`, also credits.
 */
export function randomWireCommand(random: SeededRandom, options: WorkloadOptions, sequence: number): WireCommand {
  const firstAccountId = options.firstAccountId ?? 1000;
  const account = String(firstAccountId + random.int(options.accountCount));
  const currency = random.pick(options.currencies);
  const tx_id = `tx-${random.seed.toString(16)}-${sequence}-${random.nextU32().toString(36)}`;
  // A credit's tx_id is always the reserved ~x<partition>-<offset> of its debit (reserved_tx_id.ts).
  if (options.credits === true && random.chance(0.05)) return { type: 'credit', tx_id: `~x0-${sequence}`, account, currency: currency.code, amount: randomAmount(random, currency.scale) };
  const roll = random.int(100);
  if (roll < 30) return { type: 'deposit', tx_id, account, currency: currency.code, amount: randomAmount(random, currency.scale) };
  if (roll < 55) {
    const to = String(firstAccountId + random.int(options.accountCount));
    return { type: 'transfer', tx_id, from: account, to, currency: currency.code, amount: randomAmount(random, currency.scale) };
  }
  if (roll < 75) return { type: 'freeze', tx_id, account, currency: currency.code, amount: randomAmount(random, currency.scale) };
  if (roll < 85) return { type: 'withdraw', tx_id, account, currency: currency.code, amount: randomAmount(random, currency.scale) };
  if (roll < 95) return { type: 'unfreeze', tx_id, account, currency: currency.code, amount: randomAmount(random, currency.scale) };
  return { type: 'settle', tx_id, account, legs: tradeLegs(random, account, options.currencies) };
}

/** A buyer's side of a trade: pays quote from frozen with a fee, receives base. */
function tradeLegs(random: SeededRandom, account: string, currencies: readonly WorkloadCurrency[]): SettleWireLeg[] {
  const quote = currencies[0];
  const base = currencies[1 + random.int(currencies.length - 1)];
  const cost = 100 + random.int(100_000);
  const fee = random.int(cost / 100);
  const baseAmount = `0.${random.digits(2)}${1 + random.int(9)}`;
  return [
    { account, currency: quote.code, available: '0', frozen: `-${cost}` },
    { account: '1', currency: quote.code, available: String(fee), frozen: '0' },
    { account: '2', currency: quote.code, available: String(cost - fee), frozen: '0' },
    { account: '2', currency: base.code, available: `-${baseAmount}`, frozen: '0' },
    { account, currency: base.code, available: baseAmount, frozen: '0' },
  ];
}
