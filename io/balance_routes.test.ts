// The balance routes answer byte for byte what the contract's reference gives: a plain
// object per answer, built from the balance table reader and passed to JSON.stringify (how
// the routes answered before their 200 path was built as text). Real uWS server, real HTTP.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BalanceTable, BalanceTableReader, USER_PARTITION, attach } from '../engine/balance_table';
import { CurrencyRegistry, UNKNOWN_CURRENCY_ID } from '../engine/currency_registry';
import { formatAmountBigInt } from '../engine/amount';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';
import { listen } from './http_server';
import { PartitionOwnership, canonicalAccountText, registerBalanceRoutes } from './balance_routes';

const PARTITIONS = 4;
const ACCOUNT_MAX = (1n << 64n) - 1n;

function words(value: bigint): [number, number] {
  const unsigned = BigInt.asUintN(64, value);
  return [Number(unsigned & 0xffffffffn) | 0, Number(unsigned >> 32n) | 0];
}

function put(table: BalanceTable, account: bigint, currency: number, keyPartition: number, available: bigint, frozen: bigint, home: number): void {
  const [accountLo, accountHi] = words(account);
  const [availableLo, availableHi] = words(available);
  const [frozenLo, frozenHi] = words(frozen);
  table.insert(accountLo, accountHi, currency, keyPartition, availableLo, availableHi, frozenLo, frozenHi, home);
}

// The reference: the contract's fields in the contract's order, through JSON.stringify.
function referenceAnswer(reader: BalanceTableReader, registry: CurrencyRegistry, ownership: PartitionOwnership | undefined, accountText: string, code: string | undefined, query: string): { status: number; body: string } {
  const answer = (status: number, body: unknown): { status: number; body: string } => ({ status, body: JSON.stringify(body) });
  if (!/^[0-9]{1,20}$/.test(accountText) || BigInt(accountText) > ACCOUNT_MAX) return answer(400, { error: 'BAD_ACCOUNT', message: `account must be an unsigned 64-bit decimal id, got "${accountText}"` });
  const account = BigInt(accountText);
  const match = /(?:^|&)partition=([^&]*)/.exec(query);
  const partition = match === null ? undefined : /^[0-9]{1,5}$/.test(match[1]!) && Number(match[1]) < 65536 ? Number(match[1]) : null;
  if (partition === null) return answer(400, { error: 'BAD_PARTITION', message: 'partition must be an integer from 0 to 65535' });
  let partial: object | undefined;
  if (ownership !== undefined) {
    const system = account < 1000n;
    const home = system ? partition : homePartitionOfAccountDecimal(account.toString(), ownership.partitionCount);
    if (home !== undefined && home >= ownership.partitionCount) return answer(400, { error: 'BAD_PARTITION', message: `partition must be below ${ownership.partitionCount}` });
    if (home !== undefined && !ownership.owns(home)) {
      const owner = ownership.ownerOf(home);
      if (owner === ownership.self) return answer(503, { error: 'PARTITION_UNAVAILABLE', partition: home, message: `partition ${home} is not applied right now (its lease was lost); this instance is taking it back, retry` });
      return answer(421, { error: 'PARTITION_NOT_OWNED', partition: home, ...(owner === undefined ? {} : { owner }), message: `partition ${home} is applied by ${owner === undefined ? 'another instance' : `instance ${owner}`}; ask it` });
    }
    const owned = ownership.owned();
    if (system && home === undefined && owned.length < ownership.partitionCount) partial = { partial: true, partitions: owned };
  }
  const body = (r: { currency: number; available: bigint; frozen: bigint }): object => {
    const scale = registry.scaleOf(r.currency);
    return { currency: registry.codeOf(r.currency), available: formatAmountBigInt(r.available, scale), frozen: formatAmountBigInt(r.frozen, scale) };
  };
  // With ownership, a system account summed over partitions sums only the owned ones (the
  // table also holds the others' balances here, as it does for a stopped partition).
  const ownedSum = ownership !== undefined && account < 1000n && partition === undefined;
  const read = (currency: number): { currency: number; available: bigint; frozen: bigint } | undefined => {
    if (!ownedSum) return reader.readBalance(account, currency, partition);
    let found: { currency: number; available: bigint; frozen: bigint } | undefined;
    for (const p of ownership.owned()) {
      const reading = reader.readBalance(account, currency, p);
      if (reading !== undefined) found = { currency, available: (found?.available ?? 0n) + reading.available, frozen: (found?.frozen ?? 0n) + reading.frozen };
    }
    return found;
  };
  if (code === undefined) {
    const balances = [];
    for (let currency = 1; currency <= registry.count; currency++) {
      const reading = read(currency);
      if (reading !== undefined) balances.push(body(reading));
    }
    return answer(200, { account: account.toString(), balances, ...partial });
  }
  const currency = registry.idOfCode(code);
  if (currency === UNKNOWN_CURRENCY_ID) return answer(404, { error: 'UNKNOWN_CURRENCY', message: `unknown currency "${code}"` });
  const reading = read(currency);
  return answer(200, { account: account.toString(), balances: [reading === undefined ? { currency: code, available: '0', frozen: '0' } : body(reading)], ...partial });
}

function seedTable(registry: CurrencyRegistry): { table: BalanceTable; users: string[] } {
  const table = BalanceTable.create({ capacity: 4096 });
  const amounts = [0n, 1n, 10n, 123_456_789n, 100_000_000n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n), -5n, 1_000_000_000_000_000_000n];
  // Homes on every partition (4 partitions: 1000 → 2, 1001 → 0, 4242424242 → 1, 9007199254740993 → 3, …).
  const users = ['1000', '1001', '4242424242', '9007199254740993', '18446744073709551615', '12345678901234567890', '1002', '1004', '5000001'];
  for (const [index, user] of users.entries()) {
    const home = homePartitionOfAccountDecimal(user, PARTITIONS);
    // Each user holds a different subset of the currencies, in a scrambled insert order.
    for (let currency = registry.count; currency >= 1; currency--) {
      if ((index + currency) % 3 === 0) continue;
      put(table, BigInt(user), currency, USER_PARTITION, amounts[(index * 3 + currency) % amounts.length]!, amounts[(index + currency * 7) % amounts.length]!, home);
    }
  }
  // Zeros, on partition 0 (owned in the ownership test).
  const zeros = '1005';
  put(table, BigInt(zeros), 1, USER_PARTITION, 0n, 0n, homePartitionOfAccountDecimal(zeros, PARTITIONS));
  put(table, BigInt(zeros), 2, USER_PARTITION, 0n, 3n, homePartitionOfAccountDecimal(zeros, PARTITIONS));
  users.push(zeros);
  for (const system of [0n, 7n, 999n]) {
    for (let partition = 0; partition < PARTITIONS; partition++) {
      for (let currency = 1; currency <= registry.count; currency += partition + 1) put(table, system, currency, partition, -BigInt(partition * 1_000_003 + currency), BigInt(currency), partition);
    }
  }
  return { table, users };
}

function requestsToTry(users: readonly string[]): Array<{ account: string; code: string | undefined; query: string }> {
  const accounts = [...users, '0', '000', '7', '0007', '999', '1000', '00001001', '00000000000000000999', '18446744073709551616', '99999999999999999999',
    '000000000000000000001', '1x', '-1', '+1', '１２', ' 1', '5555555'];
  const codes = [undefined, 'USDT', 'BTC', 'ZERO', 'WEI', 'DOGE', 'usdt'];
  const queries = ['', 'partition=0', 'partition=3', 'partition=4', 'partition=65535', 'partition=65536', 'partition=x', 'partition=', 'a=1&partition=2', 'xpartition=1'];
  const requests = [];
  for (const account of accounts) for (const code of codes) for (const query of queries) requests.push({ account, code, query });
  return requests;
}

/** Compares every request of requestsToTry; returns how many answers had each status. */
async function compareAll(ownership: PartitionOwnership | undefined): Promise<Map<number, number>> {
  const registry = CurrencyRegistry.fromConfig([{ code: 'USDT', scale: 6 }, { code: 'BTC', scale: 8 }, { code: 'ZERO', scale: 0 }, { code: 'WEI', scale: 18 }]);
  const { table, users } = seedTable(registry);
  const reader = attach(table.descriptor());
  const server = await listen({ host: '127.0.0.1', port: 0, isReady: () => true, routes: (app) => registerBalanceRoutes(app, reader, registry, ownership) });
  const statuses = new Map<number, number>();
  try {
    for (const { account, code, query } of requestsToTry(users)) {
      const path = `/v1/accounts/${encodeURIComponent(account)}/balances${code === undefined ? '' : `/${code}`}${query === '' ? '' : `?${query}`}`;
      const response = await fetch(`http://127.0.0.1:${server.port}${path}`);
      const text = await response.text();
      const expected = referenceAnswer(reader, registry, ownership, encodeURIComponent(account), code, query);
      assert.equal(response.headers.get('content-type'), 'application/json', path);
      assert.deepEqual({ status: response.status, body: text }, expected, path);
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
    }
  } finally {
    server.close();
  }
  return statuses;
}

test('balance answers equal the reference byte for byte, without ownership', { timeout: 60_000 }, async () => {
  const statuses = await compareAll(undefined);
  assert.deepEqual([...statuses.keys()].sort(), [200, 400, 404]);
  assert.ok(statuses.get(200)! > 500);
});

test('balance answers equal the reference byte for byte, with some partitions owned elsewhere or being taken back', { timeout: 60_000 }, async () => {
  const owned = new Set([0, 2]);
  const ownership: PartitionOwnership = {
    partitionCount: PARTITIONS, self: 'here',
    owns: (partition) => owned.has(partition),
    ownerOf: (partition) => (partition === 1 ? 'here' : partition === 3 ? undefined : 'elsewhere'),
    owned: () => [...owned].sort((a, b) => a - b),
  };
  const statuses = await compareAll(ownership);
  assert.deepEqual([...statuses.keys()].sort(), [200, 400, 404, 421, 503]);
  assert.ok(statuses.get(200)! > 300);
});

test('canonical account text: leading zeros dropped, the u64 bound kept', () => {
  assert.equal(canonicalAccountText('0'), '0');
  assert.equal(canonicalAccountText('000'), '0');
  assert.equal(canonicalAccountText('0010'), '10');
  assert.equal(canonicalAccountText('18446744073709551615'), '18446744073709551615');
  assert.equal(canonicalAccountText('18446744073709551616'), undefined);
  assert.equal(canonicalAccountText('000000000000000000001'), undefined);
  assert.equal(canonicalAccountText(''), undefined);
  assert.equal(canonicalAccountText('1e3'), undefined);
});

test('a balance the engine thread stopped writing halfway is answered 503, and the server keeps serving', { timeout: 30_000 }, async () => {
  const table = BalanceTable.create({ capacity: 1024 });
  const registry = CurrencyRegistry.fromConfig([{ code: 'USDT', scale: 6 }]);
  put(table, 1001n, 1, USER_PARTITION, 5_000_000n, 0n, 0);
  const reader = attach(table.descriptor());
  const server = await listen({ host: '127.0.0.1', port: 0, isReady: () => true, routes: (app) => registerBalanceRoutes(app, reader, registry) });
  try {
    const [accountLo, accountHi] = words(1001n);
    const bucket = table.find(accountLo, accountHi, 1, USER_PARTITION);
    // An odd version is a write in progress (the seqlock); a writer that never finishes it is
    // an engine thread stopped in the middle.
    Atomics.add(table.words, bucket * 16, 1);
    const stuck = await fetch(`http://127.0.0.1:${server.port}/v1/accounts/1001/balances/USDT`);
    assert.deepEqual([stuck.status, ((await stuck.json()) as { error: string }).error], [503, 'BALANCE_UNREADABLE']);
    Atomics.add(table.words, bucket * 16, 1);
    const answer = await fetch(`http://127.0.0.1:${server.port}/v1/accounts/1001/balances/USDT`);
    assert.deepEqual([answer.status, await answer.json()], [200, { account: '1001', balances: [{ currency: 'USDT', available: '5', frozen: '0' }] }]);
  } finally {
    server.close();
  }
});
