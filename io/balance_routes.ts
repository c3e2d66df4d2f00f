// Balance queries of the public contract, answered from the shared balance table through
// its seqlock: the engine thread is never asked, so queries cannot slow it down.
//
//   GET /v1/accounts/{account}/balances[?partition=N]
//   GET /v1/accounts/{account}/balances/{currency}[?partition=N]
//
// System accounts (ids below 1000) exist once per partition: without `partition` they
// answer with the sum over partitions.
//
// These are the most frequent requests the server gets, so a 200 answer is built as text
// (JSON.stringify of the same fields in the same order gives the same bytes, which
// balance_routes.test.ts checks): per-currency pieces are made once at registration, the
// account is validated and echoed as text (a BigInt only as the table reader's key), zero
// amounts skip BigInt formatting, and the partitions owned are asked for only for a system
// account. Errors stay on the plain JSON.stringify path. Profile of the handler path and
// figures: docs/benchmarks.md, bench:query.

import type uWS from 'uWebSockets.js';
import { BalanceReading, BalanceTableReader } from '../engine/balance_table';
import { CurrencyRegistry, UNKNOWN_CURRENCY_ID } from '../engine/currency_registry';
import { formatAmountBigInt } from '../engine/amount';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';
import { answerJson, answerJsonText } from './http_server';

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
  /** Whether the partition is stopped because its stored offset is not in the Kafka log (an operator's case). */
  outsideLog?(partition: number): boolean;
}

/** The answer for a partition stopped outside the log: retrying does not help. */
function stoppedOutsideLog(partition: number): { error: string; partition: number; message: string } {
  return {
    error: 'PARTITION_STOPPED', partition,
    message: `partition ${partition} is stopped: its stored next offset is not in the Kafka log, and nothing of it is applied until an operator resolves it (docs/operations.md, "Offset outside the log")`,
  };
}

const ACCOUNT_MAX_TEXT = '18446744073709551615';
const ACCOUNT_DIGITS_MAX = ACCOUNT_MAX_TEXT.length;
/** Ids below this are system accounts; canonical ids of at most 3 digits are exactly those. */
const SYSTEM_ACCOUNT_DIGITS_MAX = 3;
const DIGIT_ZERO = 0x30;
const DIGIT_NINE = 0x39;

/**
 * The account id text from the URL in canonical form (what the answer echoes), or undefined
 * when it is not an unsigned 64-bit decimal id. Leading zeros are accepted and dropped.
 */
export function canonicalAccountText(text: string): string | undefined {
  const length = text.length;
  if (length < 1) return undefined;
  let first = 0;
  for (let index = 0; index < length; index++) {
    const code = text.charCodeAt(index);
    if (code < DIGIT_ZERO || code > DIGIT_NINE) return undefined;
    if (code === DIGIT_ZERO && first === index && index < length - 1) first++;
  }
  // At most 20 digits as written, leading zeros included (the bound the contract always had).
  if (length > ACCOUNT_DIGITS_MAX) return undefined;
  const canonical = first === 0 ? text : text.slice(first);
  // Same length and all digits: string order is numeric order.
  if (canonical.length === ACCOUNT_DIGITS_MAX && canonical > ACCOUNT_MAX_TEXT) return undefined;
  return canonical;
}

/** `?partition=N` of a query string: undefined when absent, null when not 0 to 65535. */
export function parsePartition(query: string): number | undefined | null {
  if (query.length === 0) return undefined;
  const match = /(?:^|&)partition=([^&]*)/.exec(query);
  if (match === null) return undefined;
  return /^[0-9]{1,5}$/.test(match[1]!) && Number(match[1]) < 65536 ? Number(match[1]) : null;
}

/**
 * Text of one balance object per currency id, cut around the two amounts:
 * `{"currency":"USDT","available":"` + available + `","frozen":"` + frozen + `"}`.
 * Codes are [A-Z0-9] (the registry enforces it), so they need no JSON escaping.
 */
class BalanceText {
  private readonly heads: string[] = [''];
  private readonly scales: number[] = [0];
  readonly currencyCount: number;

  constructor(registry: CurrencyRegistry) {
    this.currencyCount = registry.count;
    for (let currency = 1; currency <= registry.count; currency++) {
      this.heads.push(`{"currency":${JSON.stringify(registry.codeOf(currency))},"available":"`);
      this.scales.push(registry.scaleOf(currency));
    }
  }

  of(currency: number, available: bigint, frozen: bigint): string {
    const scale = this.scales[currency]!;
    return this.heads[currency]! + formatMinor(available, scale) + '","frozen":"' + formatMinor(frozen, scale) + '"}';
  }

  zero(currency: number): string {
    return this.heads[currency]! + '0","frozen":"0"}';
  }

  reading(reading: BalanceReading): string {
    return this.of(reading.currency, reading.available, reading.frozen);
  }
}

function formatMinor(minor: bigint, scale: number): string {
  return minor === 0n ? '0' : formatAmountBigInt(minor, scale);
}

/** `{"account":"…","balances":[` + balances + `]` + tail + `}`; tail is '' or the partial fields. */
function answerText(account: string, balances: string, tail: string): string {
  return '{"account":"' + account + '","balances":[' + balances + ']' + tail + '}';
}

function partialTail(partitions: readonly number[]): string {
  return ',"partial":true,"partitions":' + JSON.stringify(partitions);
}

/**
 * The answer for a partition this instance does not apply, shared by HTTP and the stream:
 * stopped outside the log (503, no retry helps), being taken back here (503, retry), or
 * applied elsewhere (421, with the owner when known).
 */
export function partitionNotHere(ownership: PartitionOwnership, partition: number): { status: string; body: { error: string; partition: number; owner?: string; message: string } } {
  if (ownership.outsideLog?.(partition) === true) return { status: '503 Service Unavailable', body: stoppedOutsideLog(partition) };
  const owner = ownership.ownerOf(partition);
  if (owner === ownership.self) {
    return { status: '503 Service Unavailable', body: { error: 'PARTITION_UNAVAILABLE', partition, message: `partition ${partition} is not applied right now (its lease was lost); this instance is taking it back, retry` } };
  }
  return {
    status: '421 Misdirected Request',
    body: {
      error: 'PARTITION_NOT_OWNED', partition, ...(owner === undefined ? {} : { owner }),
      message: `partition ${partition} is applied by ${owner === undefined ? 'another instance' : `instance ${owner}`}; ask it`,
    },
  };
}

function notOwned(res: uWS.HttpResponse, ownership: PartitionOwnership, partition: number): void {
  const { status, body } = partitionNotHere(ownership, partition);
  answerJson(res, status, body);
}

/**
 * Where the account's balances live, checked against ownership: '' when they are served
 * here, the partial fields' text for a system account summed over only some partitions,
 * or undefined once an error has been answered.
 */
function ownershipTail(res: uWS.HttpResponse, ownership: PartitionOwnership, account: string, partition: number | undefined): string | undefined {
  const system = account.length <= SYSTEM_ACCOUNT_DIGITS_MAX;
  const home = system ? partition : homePartitionOfAccountDecimal(account, ownership.partitionCount);
  if (home !== undefined && home >= ownership.partitionCount) {
    answerJson(res, '400 Bad Request', { error: 'BAD_PARTITION', message: `partition must be below ${ownership.partitionCount}` });
    return undefined;
  }
  if (home !== undefined && !ownership.owns(home)) {
    notOwned(res, ownership, home);
    return undefined;
  }
  if (!system || home !== undefined) return '';
  // A system account summed over partitions: say so when only some are applied here.
  const owned = ownership.owned();
  return owned.length < ownership.partitionCount ? partialTail(owned) : '';
}

export function registerBalanceRoutes(app: uWS.TemplatedApp, table: BalanceTableReader, registry: CurrencyRegistry, ownership?: PartitionOwnership): void {
  const text = new BalanceText(registry);
  const handle = (res: uWS.HttpResponse, req: uWS.HttpRequest, withCurrency: boolean): void => {
    const accountText = req.getParameter(0) ?? '';
    const account = canonicalAccountText(accountText);
    if (account === undefined) return answerJson(res, '400 Bad Request', { error: 'BAD_ACCOUNT', message: `account must be an unsigned 64-bit decimal id, got "${accountText}"` });
    const partition = parsePartition(req.getQuery() ?? '');
    if (partition === null) return answerJson(res, '400 Bad Request', { error: 'BAD_PARTITION', message: 'partition must be an integer from 0 to 65535' });
    const tail = ownership === undefined ? '' : ownershipTail(res, ownership, account, partition);
    if (tail === undefined) return;
    // A system account summed over partitions sums only those applied here (the table may
    // still hold a stopped partition's balances, or a loading one's), as the tail says.
    const summed = ownership?.owns;
    if (!withCurrency) return answerJsonText(res, '200 OK', answerText(account, balancesText(table, text, BigInt(account), partition, summed), tail));
    const code = req.getParameter(1) ?? '';
    const currency = registry.idOfCode(code);
    if (currency === UNKNOWN_CURRENCY_ID) return answerJson(res, '404 Not Found', { error: 'UNKNOWN_CURRENCY', message: `unknown currency "${code}"` });
    const reading = table.readBalance(BigInt(account), currency, partition, summed);
    return answerJsonText(res, '200 OK', answerText(account, reading === undefined ? text.zero(currency) : text.reading(reading), tail));
  };
  // A read finds no stable value only if the engine thread stopped in the middle of a write
  // (readBalance gives up after a bound): answer 503 rather than let the exception escape a
  // uWS handler, which would end the process.
  const guarded = (res: uWS.HttpResponse, req: uWS.HttpRequest, withCurrency: boolean): void => {
    try {
      handle(res, req, withCurrency);
    } catch (error) {
      answerJson(res, '503 Service Unavailable', { error: 'BALANCE_UNREADABLE', message: (error as Error).message });
    }
  };
  app.get('/v1/accounts/:account/balances', (res, req) => guarded(res, req, false));
  app.get('/v1/accounts/:account/balances/:currency', (res, req) => guarded(res, req, true));
}

/**
 * Every balance of the account, ordered by currency id, as comma-separated objects. The ids
 * are the registry's, 1 to count: the table holds no others (the engine rejects unknown
 * currencies), and asking for id 0 too, as listBalancesOfAccount does, costs a lookup that
 * always misses and probes to the next empty bucket.
 */
function balancesText(table: BalanceTableReader, text: BalanceText, account: bigint, partition: number | undefined, summed: ((partition: number) => boolean) | undefined): string {
  let joined = '';
  for (let currency = 1; currency <= text.currencyCount; currency++) {
    const reading = table.readBalance(account, currency, partition, summed);
    if (reading !== undefined) joined += (joined.length === 0 ? '' : ',') + text.reading(reading);
  }
  return joined;
}
