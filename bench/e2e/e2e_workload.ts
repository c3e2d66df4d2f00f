// The commands of the end-to-end benchmark, identical for Tally and the baseline.
//
// Command `index` of a phase is a pure function of its index: the load generator computes it
// when it is due, nothing is pre-generated or kept, and every phase of both systems sends the
// same command stream. Only the tx_id differs, `p<phase>-<index>`, so every tx_id is fresh, a
// result event names the command it answers, and the listener finds its intended send time
// without any per-command map.
//
// Users 1000 .. 1000+accounts-1 hold USDT (scale 6) and BTC (scale 8). The preload phase
// deposits a large amount into every balance and freezes a tenth of it, so the steady mix is
// almost always accepted (a few withdrawals and unfreezes overdraw the hot balances late in
// long runs and are rejected, as they would be in production). The steady mix, every tx_id
// fresh: 25 % deposits, 15 % withdrawals, 15 % freezes, 10 % unfreezes, 25 % transfers to a
// user of the same home partition, 10 % five-leg trade settles (ARCHITECTURE.md section 3).

import { homePartitionOfAccountDecimal } from '../../engine/partitioner';
import { finalize32, mix32 } from '../../engine/mix32';

export const E2E_CURRENCIES = 'USDT:6,BTC:8';
export const E2E_PARTITIONS = 8;
export const FIRST_USER_ACCOUNT = 1000;

/** Preload amounts per balance, as decimal strings and in minor units (for the baseline's bulk load). */
export const PRELOAD = {
  USDT: { deposit: '10000000', freeze: '1000000', scale: 6 },
  BTC: { deposit: '10000', freeze: '1000', scale: 8 },
} as const;

export interface EncodedCommand {
  /** Message key: the debited account's decimal id. */
  readonly key: string;
  /** The contract's JSON text. */
  readonly value: string;
}

export class E2eWorkload {
  /** Users grouped by home partition, for transfers that stay on one partition. */
  private readonly usersByPartition: string[][];
  private readonly partitionOfUser: Uint16Array;

  constructor(readonly accounts: number) {
    this.usersByPartition = Array.from({ length: E2E_PARTITIONS }, () => []);
    this.partitionOfUser = new Uint16Array(accounts);
    for (let user = 0; user < accounts; user++) {
      const account = String(FIRST_USER_ACCOUNT + user);
      const partition = homePartitionOfAccountDecimal(account, E2E_PARTITIONS);
      this.partitionOfUser[user] = partition;
      this.usersByPartition[partition]!.push(account);
    }
  }

  /** Two commands per balance: a deposit, then a freeze of a tenth of it. */
  get preloadCount(): number {
    return this.accounts * 4;
  }

  preloadCommand(phase: number, index: number): EncodedCommand {
    const account = String(FIRST_USER_ACCOUNT + (index >> 2));
    const currency = (index & 1) === 0 ? 'USDT' : 'BTC';
    const freeze = (index & 2) !== 0;
    const amount = freeze ? PRELOAD[currency].freeze : PRELOAD[currency].deposit;
    const type = freeze ? 'freeze' : 'deposit';
    return { key: account, value: `{"type":"${type}","tx_id":"p${phase}-${index}","account":"${account}","currency":"${currency}","amount":"${amount}"}` };
  }

  steadyCommand(phase: number, index: number): EncodedCommand {
    const h1 = finalize32(mix32(0x7a11e2e, index)) >>> 0;
    const h2 = finalize32(mix32(h1, index)) >>> 0;
    const user = h1 % this.accounts;
    const account = String(FIRST_USER_ACCOUNT + user);
    const roll = h2 % 100;
    const btc = (h2 & 0x100) !== 0;
    const currency = btc ? 'BTC' : 'USDT';
    const amount = btc ? `0.000${100 + (h1 >>> 22)}` : `${1 + ((h1 >>> 20) % 100)}.${10 + ((h2 >>> 12) % 90)}`;
    const txId = `p${phase}-${index}`;
    if (roll < 65) {
      const type = roll < 25 ? 'deposit' : roll < 40 ? 'withdraw' : roll < 55 ? 'freeze' : 'unfreeze';
      return { key: account, value: `{"type":"${type}","tx_id":"${txId}","account":"${account}","currency":"${currency}","amount":"${amount}"}` };
    }
    if (roll < 90) {
      const peers = this.usersByPartition[this.partitionOfUser[user]!]!;
      const to = peers[(h2 >>> 16) % peers.length]!;
      return { key: account, value: `{"type":"transfer","tx_id":"${txId}","from":"${account}","to":"${to}","currency":"${currency}","amount":"${amount}"}` };
    }
    return { key: account, value: settleJson(txId, account, h1, h2) };
  }
}

/** A buyer's side of a trade: pays USDT from frozen with a 0.1 % fee, receives BTC from clearing. */
function settleJson(txId: string, account: string, h1: number, h2: number): string {
  const costCents = 1000 + (h1 % 9000);
  const feeCents = Math.floor(costCents / 1000);
  const cents = (value: number): string => `${Math.floor(value / 100)}.${String(value % 100).padStart(2, '0')}`;
  const btc = `0.00${100 + ((h2 >>> 8) % 900)}`;
  return `{"type":"settle","tx_id":"${txId}","account":"${account}","legs":[` +
    `{"account":"${account}","currency":"USDT","available":"0","frozen":"-${cents(costCents)}"},` +
    `{"account":"1","currency":"USDT","available":"${cents(feeCents)}","frozen":"0"},` +
    `{"account":"2","currency":"USDT","available":"${cents(costCents - feeCents)}","frozen":"0"},` +
    `{"account":"2","currency":"BTC","available":"-${btc}","frozen":"0"},` +
    `{"account":"${account}","currency":"BTC","available":"${btc}","frozen":"0"}]}`;
}
