// The baseline's heart: one PostgreSQL transaction per command, the design a team writes
// quickly. BEGIN; look the tx_id up; SELECT … FOR UPDATE every user balance the command
// touches (in a fixed order, so two commands never deadlock); check; UPDATE each balance;
// INSERT the journal legs; INSERT the outcome; COMMIT. Rejections store their outcome too.
//
// Deliberate simplifications, all in the baseline's favour: system accounts (ids below 1000)
// get journal legs but no balance row, so no two commands ever wait for one hot system row;
// there are no partitions (nothing is WRONG_PARTITION) and a repeated tx_id returns the stored
// outcome without comparing payloads.

import type pg from 'pg';
import { formatAmount, parseAmount } from './decimal_amount';

const SYSTEM_ACCOUNT_LIMIT = 1000n;
const TX_ID_LENGTH_MAX = 64;

export interface BalanceView {
  readonly account: string;
  readonly currency: string;
  readonly available: string;
  readonly frozen: string;
}

export interface Outcome {
  readonly txId: string;
  readonly accepted: boolean;
  readonly reason?: string;
  readonly balances?: BalanceView[];
}

interface Leg {
  readonly account: bigint;
  readonly currency: string;
  readonly available: bigint;
  readonly frozen: bigint;
}

type Command = Record<string, unknown>;

class Rejection {
  constructor(readonly reason: string) {}
}

/** Applies one command (its raw message value) in its own transaction and returns its outcome. */
export async function applyCommand(client: pg.PoolClient, value: Buffer, partition: number, offset: string, scales: ReadonlyMap<string, number>): Promise<Outcome> {
  let command: Command;
  try {
    command = JSON.parse(value.toString('utf8')) as Command;
  } catch {
    return { txId: '', accepted: false, reason: 'MALFORMED' };
  }
  const txId = command['tx_id'];
  if (typeof txId !== 'string' || txId.length < 1 || txId.length > TX_ID_LENGTH_MAX) return { txId: '', accepted: false, reason: 'MALFORMED' };
  await client.query('BEGIN');
  try {
    const stored = await client.query<{ status: string; reason: string | null }>('SELECT status, reason FROM tx_outcomes WHERE tx_id = $1', [txId]);
    if (stored.rowCount !== 0) {
      await client.query('COMMIT');
      const row = stored.rows[0]!;
      return { txId, accepted: row.status === 'accepted', ...(row.reason === null ? {} : { reason: row.reason }) };
    }
    let outcome: Outcome;
    try {
      const legs = legsOf(command, scales);
      const balances = await applyLegs(client, txId, legs, scales);
      outcome = { txId, accepted: true, balances };
    } catch (error) {
      if (!(error instanceof Rejection)) throw error;
      outcome = { txId, accepted: false, reason: error.reason };
    }
    await client.query('INSERT INTO tx_outcomes (tx_id, status, reason, kafka_partition, kafka_offset) VALUES ($1, $2, $3, $4, $5)',
      [txId, outcome.accepted ? 'accepted' : 'rejected', outcome.reason ?? null, partition, offset]);
    await client.query('COMMIT');
    return outcome;
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
}

/** Locks, checks and updates the user balances, journals every leg; throws Rejection when a check fails. */
async function applyLegs(client: pg.PoolClient, txId: string, legs: readonly Leg[], scales: ReadonlyMap<string, number>): Promise<BalanceView[]> {
  const deltas = new Map<string, { account: bigint; currency: string; available: bigint; frozen: bigint }>();
  for (const leg of legs) {
    if (leg.account < SYSTEM_ACCOUNT_LIMIT) continue;
    const key = `${leg.account}/${leg.currency}`;
    const delta = deltas.get(key) ?? { account: leg.account, currency: leg.currency, available: 0n, frozen: 0n };
    delta.available += leg.available;
    delta.frozen += leg.frozen;
    deltas.set(key, delta);
  }
  const ordered = [...deltas.values()].sort((a, b) => (a.account === b.account ? (a.currency < b.currency ? -1 : 1) : a.account < b.account ? -1 : 1));
  const updated: Array<{ account: bigint; currency: string; available: bigint; frozen: bigint }> = [];
  for (const delta of ordered) {
    let row = await selectForUpdate(client, delta.account, delta.currency);
    if (row === undefined) {
      await client.query('INSERT INTO balances (account, currency, available, frozen) VALUES ($1, $2, 0, 0) ON CONFLICT DO NOTHING', [delta.account.toString(), delta.currency]);
      row = (await selectForUpdate(client, delta.account, delta.currency))!;
    }
    const available = row.available + delta.available;
    const frozen = row.frozen + delta.frozen;
    if (available < 0n) throw new Rejection('INSUFFICIENT_AVAILABLE');
    if (frozen < 0n) throw new Rejection('INSUFFICIENT_FROZEN');
    updated.push({ account: delta.account, currency: delta.currency, available, frozen });
  }
  for (const row of updated) {
    await client.query('UPDATE balances SET available = $3, frozen = $4, updated_at = now() WHERE account = $1 AND currency = $2',
      [row.account.toString(), row.currency, row.available.toString(), row.frozen.toString()]);
  }
  const values: string[] = [];
  const parameters: unknown[] = [txId];
  for (const leg of legs) {
    const at = parameters.length;
    values.push(`($1, $${at + 1}, $${at + 2}, $${at + 3}, $${at + 4})`);
    parameters.push(leg.account.toString(), leg.currency, leg.available.toString(), leg.frozen.toString());
  }
  await client.query(`INSERT INTO journal (tx_id, account, currency, delta_available, delta_frozen) VALUES ${values.join(', ')}`, parameters);
  return updated.map((row) => {
    const scale = scales.get(row.currency)!;
    return { account: row.account.toString(), currency: row.currency, available: formatAmount(row.available, scale), frozen: formatAmount(row.frozen, scale) };
  });
}

async function selectForUpdate(client: pg.PoolClient, account: bigint, currency: string): Promise<{ available: bigint; frozen: bigint } | undefined> {
  const result = await client.query<{ available: string; frozen: string }>(
    'SELECT available, frozen FROM balances WHERE account = $1 AND currency = $2 FOR UPDATE', [account.toString(), currency]);
  if (result.rowCount === 0) return undefined;
  return { available: BigInt(result.rows[0]!.available), frozen: BigInt(result.rows[0]!.frozen) };
}

/** The double-entry legs of a command (ARCHITECTURE.md section 3); throws Rejection if it is invalid. */
function legsOf(command: Command, scales: ReadonlyMap<string, number>): Leg[] {
  const type = command['type'];
  if (type === 'settle') return settleLegs(command, scales);
  const currency = currencyOf(command['currency'], scales);
  const amount = parseAmount(command['amount'], scales.get(currency)!);
  if (amount === undefined || amount <= 0n) throw new Rejection('BAD_AMOUNT');
  if (type === 'transfer') {
    const from = accountOf(command['from']);
    const to = accountOf(command['to']);
    return [{ account: from, currency, available: -amount, frozen: 0n }, { account: to, currency, available: amount, frozen: 0n }];
  }
  const account = accountOf(command['account']);
  switch (type) {
    case 'deposit': return [{ account, currency, available: amount, frozen: 0n }, { account: 0n, currency, available: -amount, frozen: 0n }];
    case 'withdraw': return [{ account, currency, available: -amount, frozen: 0n }, { account: 0n, currency, available: amount, frozen: 0n }];
    case 'freeze': return [{ account, currency, available: -amount, frozen: amount }];
    case 'unfreeze': return [{ account, currency, available: amount, frozen: -amount }];
    default: throw new Rejection('MALFORMED');
  }
}

function settleLegs(command: Command, scales: ReadonlyMap<string, number>): Leg[] {
  const legs = command['legs'];
  if (!Array.isArray(legs) || legs.length === 0 || legs.length > 12) throw new Rejection('MALFORMED');
  const sums = new Map<string, bigint>();
  const result = legs.map((raw: Record<string, unknown>) => {
    const currency = currencyOf(raw['currency'], scales);
    const scale = scales.get(currency)!;
    const available = parseAmount(raw['available'], scale);
    const frozen = parseAmount(raw['frozen'], scale);
    if (available === undefined || frozen === undefined) throw new Rejection('BAD_AMOUNT');
    sums.set(currency, (sums.get(currency) ?? 0n) + available + frozen);
    return { account: accountOf(raw['account']), currency, available, frozen };
  });
  for (const sum of sums.values()) if (sum !== 0n) throw new Rejection('LEGS_NOT_BALANCED');
  return result;
}

function currencyOf(value: unknown, scales: ReadonlyMap<string, number>): string {
  if (typeof value !== 'string') throw new Rejection('MALFORMED');
  if (!scales.has(value)) throw new Rejection('UNKNOWN_CURRENCY');
  return value;
}

function accountOf(value: unknown): bigint {
  if (typeof value !== 'string' || !/^\d{1,20}$/.test(value)) throw new Rejection('MALFORMED');
  return BigInt(value);
}
