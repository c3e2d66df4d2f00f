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
import { json } from './http_server';

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

export function registerBalanceRoutes(app: uWS.TemplatedApp, table: BalanceTableReader, registry: CurrencyRegistry): void {
  const handle = (res: uWS.HttpResponse, req: uWS.HttpRequest, withCurrency: boolean): void => {
    const accountText = req.getParameter(0) ?? '';
    const account = parseAccount(accountText);
    if (account === undefined) return json(res, '400 Bad Request', { error: 'BAD_ACCOUNT', message: `account must be an unsigned 64-bit decimal id, got "${accountText}"` });
    const partition = parsePartition(req.getQuery() ?? '');
    if (partition === null) return json(res, '400 Bad Request', { error: 'BAD_PARTITION', message: 'partition must be an integer from 0 to 65535' });
    if (!withCurrency) {
      const balances = table.listBalancesOfAccount(account, partition).map((r) => body(registry, r));
      return json(res, '200 OK', { account: account.toString(), balances });
    }
    const code = req.getParameter(1) ?? '';
    const currency = registry.idOfCode(code);
    if (currency === UNKNOWN_CURRENCY_ID) return json(res, '404 Not Found', { error: 'UNKNOWN_CURRENCY', message: `unknown currency "${code}"` });
    const reading = table.readBalance(account, currency, partition);
    const balance = reading === undefined ? { currency: code, available: '0', frozen: '0' } : body(registry, reading);
    return json(res, '200 OK', { account: account.toString(), balances: [balance] });
  };
  app.get('/v1/accounts/:account/balances', (res, req) => handle(res, req, false));
  app.get('/v1/accounts/:account/balances/:currency', (res, req) => handle(res, req, true));
}
