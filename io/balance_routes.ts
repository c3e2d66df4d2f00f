// Balance queries of the public contract, answered from the shared balance table through
// its seqlock: the engine thread is never asked, so queries cannot slow it down.
//
//   GET /v1/accounts/{account}/balances[?partition=N]
//   GET /v1/accounts/{account}/balances/{currency}[?partition=N]
//
// System accounts (ids below 1000) exist once per partition: without `partition` they
// answer with the sum over partitions.

import type uWS from 'uWebSockets.js';
import { BalanceReading, BalanceTableReader } from '../engine/balance_table';
import { CurrencyRegistry, UNKNOWN_CURRENCY_ID } from '../engine/currency_registry';
import { formatAmountBigInt } from '../engine/amount';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';
import { json } from './http_server';

/**
 * Which partitions this instance applies. A balance of a partition owned elsewhere is
 * answered 421 with the partition and its owner, never with a zero read from a table that
 * does not hold it.
 */
export interface PartitionOwnership {
  readonly partitionCount: number;
  /** This instance's id: a lease row still naming it means the partition is being taken back. */
  readonly self: string;
  owns(partition: number): boolean;
  ownerOf(partition: number): string | undefined;
  /** Partitions applied here, ascending. */
  owned(): number[];
}

const ACCOUNT_MAX = (1n << 64n) - 1n;

interface BalanceBody {
  readonly currency: string;
  readonly available: string;
  readonly frozen: string;
}

function parseAccount(text: string): bigint | undefined {
  if (!/^[0-9]{1,20}$/.test(text)) return undefined;
  const account = BigInt(text);
  return account <= ACCOUNT_MAX ? account : undefined;
}

function parsePartition(query: string): number | undefined | null {
  const match = /(?:^|&)partition=([^&]*)/.exec(query);
  if (match === null) return undefined;
  return /^[0-9]{1,5}$/.test(match[1]!) && Number(match[1]) < 65536 ? Number(match[1]) : null;
}

function body(registry: CurrencyRegistry, reading: BalanceReading): BalanceBody {
  const scale = registry.scaleOf(reading.currency);
  return { currency: registry.codeOf(reading.currency), available: formatAmountBigInt(reading.available, scale), frozen: formatAmountBigInt(reading.frozen, scale) };
}

function notOwned(res: uWS.HttpResponse, ownership: PartitionOwnership, partition: number): void {
  const owner = ownership.ownerOf(partition);
  if (owner === ownership.self) {
    json(res, '503 Service Unavailable', { error: 'PARTITION_UNAVAILABLE', partition, message: `partition ${partition} is not applied right now (its lease was lost); this instance is taking it back, retry` });
    return;
  }
  json(res, '421 Misdirected Request', {
    error: 'PARTITION_NOT_OWNED', partition, ...(owner === undefined ? {} : { owner }),
    message: `partition ${partition} is applied by ${owner === undefined ? 'another instance' : `instance ${owner}`}; ask it`,
  });
}

export function registerBalanceRoutes(app: uWS.TemplatedApp, table: BalanceTableReader, registry: CurrencyRegistry, ownership?: PartitionOwnership): void {
  const handle = (res: uWS.HttpResponse, req: uWS.HttpRequest, withCurrency: boolean): void => {
    const accountText = req.getParameter(0) ?? '';
    const account = parseAccount(accountText);
    if (account === undefined) return json(res, '400 Bad Request', { error: 'BAD_ACCOUNT', message: `account must be an unsigned 64-bit decimal id, got "${accountText}"` });
    const partition = parsePartition(req.getQuery() ?? '');
    if (partition === null) return json(res, '400 Bad Request', { error: 'BAD_PARTITION', message: 'partition must be an integer from 0 to 65535' });
    let partial: { partial: true; partitions: number[] } | undefined;
    if (ownership !== undefined) {
      const system = account < 1000n;
      const home = system ? partition : homePartitionOfAccountDecimal(account.toString(), ownership.partitionCount);
      if (home !== undefined && home >= ownership.partitionCount) return json(res, '400 Bad Request', { error: 'BAD_PARTITION', message: `partition must be below ${ownership.partitionCount}` });
      if (home !== undefined && !ownership.owns(home)) return notOwned(res, ownership, home);
      const owned = ownership.owned();
      // A system account summed over partitions: say so when only some are applied here.
      if (system && home === undefined && owned.length < ownership.partitionCount) partial = { partial: true, partitions: owned };
    }
    if (!withCurrency) {
      const balances = table.listBalancesOfAccount(account, partition).map((r) => body(registry, r));
      return json(res, '200 OK', { account: account.toString(), balances, ...partial });
    }
    const code = req.getParameter(1) ?? '';
    const currency = registry.idOfCode(code);
    if (currency === UNKNOWN_CURRENCY_ID) return json(res, '404 Not Found', { error: 'UNKNOWN_CURRENCY', message: `unknown currency "${code}"` });
    const reading = table.readBalance(account, currency, partition);
    const balance = reading === undefined ? { currency: code, available: '0', frozen: '0' } : body(registry, reading);
    return json(res, '200 OK', { account: account.toString(), balances: [balance], ...partial });
  };
  app.get('/v1/accounts/:account/balances', (res, req) => handle(res, req, false));
  app.get('/v1/accounts/:account/balances/:currency', (res, req) => handle(res, req, true));
}
