import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMAND_SLOT_BYTES, CommandType } from './command_layout';
import { CommandSlotViews, DecodedCommand, createCommandSlotViews, readCommandSlot } from './command_slot';
import { CurrencyRegistry } from './currency_registry';
import { hash64BigInt } from './hash64';
import { decodeJsonCommand } from './json_codec';
import { RejectCode } from './reject_code';
import { WireCommand } from './wire_command';
import { BENCH_CURRENCIES, SeededRandom, randomWireCommand } from './wire_fixtures';
import { ReferenceCommand, referenceDecodeJson } from './wire_reference_model';

const REGISTRY = CurrencyRegistry.fromConfig(BENCH_CURRENCIES.map((currency) => ({ ...currency })));
const PARTITION_COUNT = 12;
const views = createCommandSlotViews(4);

function decode(message: string | Uint8Array, slot = 0): DecodedCommand {
  const bytes = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
  decodeJsonCommand(bytes, 7, 4242, PARTITION_COUNT, REGISTRY, views, slot * COMMAND_SLOT_BYTES);
  return readCommandSlot(views, slot * COMMAND_SLOT_BYTES);
}

function slotBytes(slotViews: CommandSlotViews, slot: number): Buffer {
  return Buffer.from(slotViews.bytes.subarray(slot * COMMAND_SLOT_BYTES, (slot + 1) * COMMAND_SLOT_BYTES));
}

function assertMatchesReference(message: Uint8Array, actual: DecodedCommand, expected: ReferenceCommand): void {
  const context = `message ${JSON.stringify(Buffer.from(message).toString('latin1'))}`;
  assert.equal(actual.rejectCode, expected.rejectCode, context);
  assert.equal(actual.partition, 7);
  assert.equal(actual.offset, 4242);
  if (expected.rejectCode === RejectCode.Malformed) {
    assert.equal(actual.payloadHash, hash64BigInt(message), context);
    assert.deepEqual([actual.account, actual.counterAccount, actual.currency, actual.amount, actual.legs.length], [0n, 0n, 0, 0n, 0], context);
    if (!expected.jsonValid) return;
  }
  assert.equal(actual.type, expected.type, context);
  // No usable tx_id (too long, NUL, not a string, a duplicated key): the slot says none.
  assert.equal(actual.txId, expected.txId ?? '', context);
  if (expected.rejectCode === RejectCode.Malformed) return;
  const { jsonValid, payloadHash, txId, ...fields } = expected;
  void jsonValid;
  void txId;
  assert.deepEqual(
    { type: actual.type, rejectCode: actual.rejectCode, account: actual.account, counterAccount: actual.counterAccount, currency: actual.currency, accountHome: actual.accountHome, counterHome: actual.counterHome, amount: actual.amount, legs: actual.legs },
    fields,
    context,
  );
  if (payloadHash !== null) assert.equal(actual.payloadHash, payloadHash, context);
  assert.equal(actual.txIdHash, hash64BigInt(Buffer.from(actual.txId, 'utf8')));
}

/** Decodes `message`, checks the slot against the model, returns the rejectCode. */
function checkAgainstReference(message: Uint8Array): number {
  const actual = decode(message);
  assertMatchesReference(message, actual, referenceDecodeJson(message, REGISTRY, PARTITION_COUNT));
  return actual.rejectCode;
}

/** How often each rejectCode came out, so a test can prove it exercised every path. */
function countCodes(codes: number[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const code of codes) counts[code] = (counts[code] ?? 0) + 1;
  return counts;
}

test('the contract examples decode into the slot', () => {
  const deposit = decode('{"type":"deposit",  "tx_id":"d-1", "account":"1001", "currency":"USDT", "amount":"100.25"}');
  assert.deepEqual(
    { type: deposit.type, rejectCode: deposit.rejectCode, txId: deposit.txId, account: deposit.account, currency: deposit.currency, amount: deposit.amount, accountHome: deposit.accountHome },
    { type: CommandType.Deposit, rejectCode: RejectCode.None, txId: 'd-1', account: 1001n, currency: 1, amount: 100_250_000n, accountHome: 0 },
  );
  assert.equal(decode('{"type":"withdraw", "tx_id":"w", "account":"1001", "currency":"USDT", "amount":"10"}').type, CommandType.Withdraw);
  assert.equal(decode('{"type":"freeze",   "tx_id":"f", "account":"1001", "currency":"USDT", "amount":"50"}').amount, 50_000_000n);
  assert.equal(decode('{"type":"unfreeze", "tx_id":"u", "account":"1001", "currency":"USDT", "amount":"50"}').type, CommandType.Unfreeze);
  const credit = decode('{"type":"credit", "tx_id":"c", "account":"1002", "currency":"USDT", "amount":"5"}');
  assert.deepEqual([credit.type, credit.rejectCode, credit.account, credit.accountHome, credit.counterAccount, credit.amount], [CommandType.Credit, RejectCode.None, 1002n, 3, 0n, 5_000_000n]);
  for (const [amount, code] of [['0', RejectCode.BadAmount], ['-5', RejectCode.BadAmount], ['1.1234567', RejectCode.BadAmount], ['9223372036855', RejectCode.AmountOverflow]] as const) {
    assert.equal(decode(`{"type":"credit","tx_id":"c","account":"1002","currency":"USDT","amount":"${amount}"}`).rejectCode, code, amount);
  }
  assert.equal(decode('{"type":"credit","tx_id":"c","from":"1002","currency":"USDT","amount":"5"}').rejectCode, RejectCode.Malformed, 'a credit names `account`');
  assert.equal(decode('{"type":"credit","tx_id":"c","account":"1002","currency":"XRP","amount":"5"}').rejectCode, RejectCode.UnknownCurrency);
  const transfer = decode('{"type":"transfer", "tx_id":"t", "from":"1001", "to":"1002", "currency":"USDT", "amount":"5"}');
  assert.deepEqual([transfer.account, transfer.counterAccount, transfer.accountHome, transfer.counterHome, transfer.amount], [1001n, 1002n, 0, 3, 5_000_000n]);
  const settle = decode(`{"type":"settle", "tx_id":"s", "account":"1001", "legs":[
    {"account":"1001","currency":"USDT","available":"0","frozen":"-100"},
    {"account":"1","currency":"USDT","available":"0.1","frozen":"0"},
    {"account":"2","currency":"USDT","available":"99.9","frozen":"0"},
    {"account":"2","currency":"BTC","available":"-0.001","frozen":"0"},
    {"account":"1001","currency":"BTC","available":"0.001","frozen":"0"}]}`);
  assert.equal(settle.rejectCode, RejectCode.None);
  assert.deepEqual(
    settle.legs.map((leg) => [leg.account, leg.currency, leg.home, leg.availableDelta, leg.frozenDelta]),
    [[1001n, 1, 0, 0n, -100_000_000n], [1n, 1, 3, 100_000n, 0n], [2n, 1, 8, 99_900_000n, 0n], [2n, 2, 8, -100_000n, 0n], [1001n, 2, 0, 100_000n, 0n]],
  );
});

const VALID_DEPOSIT = { type: 'deposit', tx_id: 'tx-1', account: '1001', currency: 'USDT', amount: '1.5' };

test('every rejection path gets its code; tx_id is kept whenever it could be read', () => {
  const cases: [string, unknown, RejectCode, string][] = [
    ['unknown currency', { ...VALID_DEPOSIT, currency: 'DOGE' }, RejectCode.UnknownCurrency, 'tx-1'],
    ['lower-case currency', { ...VALID_DEPOSIT, currency: 'usdt' }, RejectCode.UnknownCurrency, 'tx-1'],
    ['unknown currency beats a bad amount', { ...VALID_DEPOSIT, currency: 'DOGE', amount: '-1' }, RejectCode.UnknownCurrency, 'tx-1'],
    ['empty currency', { ...VALID_DEPOSIT, currency: '' }, RejectCode.Malformed, 'tx-1'],
    ['17-byte currency', { ...VALID_DEPOSIT, currency: 'ABCDEFGHIJKLMNOPQ' }, RejectCode.Malformed, 'tx-1'],
    ['currency not a string', { ...VALID_DEPOSIT, currency: 1 }, RejectCode.Malformed, 'tx-1'],
    ['too many decimals', { ...VALID_DEPOSIT, amount: '1.1234567' }, RejectCode.BadAmount, 'tx-1'],
    ['zero amount', { ...VALID_DEPOSIT, amount: '0' }, RejectCode.BadAmount, 'tx-1'],
    ['negative amount', { ...VALID_DEPOSIT, amount: '-1' }, RejectCode.BadAmount, 'tx-1'],
    ['plus sign', { ...VALID_DEPOSIT, amount: '+1' }, RejectCode.BadAmount, 'tx-1'],
    ['exponent', { ...VALID_DEPOSIT, amount: '1e3' }, RejectCode.BadAmount, 'tx-1'],
    ['empty amount', { ...VALID_DEPOSIT, amount: '' }, RejectCode.BadAmount, 'tx-1'],
    ['amount as a JSON number', { ...VALID_DEPOSIT, amount: 100.25 }, RejectCode.BadAmount, 'tx-1'],
    ['amount null', { ...VALID_DEPOSIT, amount: null }, RejectCode.Malformed, 'tx-1'],
    ['amount object', { ...VALID_DEPOSIT, amount: {} }, RejectCode.Malformed, 'tx-1'],
    ['amount overflow', { ...VALID_DEPOSIT, amount: '9223372036854.775808' }, RejectCode.AmountOverflow, 'tx-1'],
    ['missing amount', { ...VALID_DEPOSIT, amount: undefined }, RejectCode.Malformed, 'tx-1'],
    ['missing account', { ...VALID_DEPOSIT, account: undefined }, RejectCode.Malformed, 'tx-1'],
    ['account with leading zero', { ...VALID_DEPOSIT, account: '01001' }, RejectCode.Malformed, 'tx-1'],
    ['account as a number', { ...VALID_DEPOSIT, account: 1001 }, RejectCode.Malformed, 'tx-1'],
    ['account above 2^64-1', { ...VALID_DEPOSIT, account: '18446744073709551616' }, RejectCode.Malformed, 'tx-1'],
    ['account signed', { ...VALID_DEPOSIT, account: '-1' }, RejectCode.Malformed, 'tx-1'],
    ['unknown type', { ...VALID_DEPOSIT, type: 'mint' }, RejectCode.Malformed, 'tx-1'],
    ['type not a string', { ...VALID_DEPOSIT, type: 1 }, RejectCode.Malformed, 'tx-1'],
    ['missing type', { ...VALID_DEPOSIT, type: undefined }, RejectCode.Malformed, 'tx-1'],
    ['empty tx_id', { ...VALID_DEPOSIT, tx_id: '' }, RejectCode.Malformed, ''],
    ['65-byte tx_id', { ...VALID_DEPOSIT, tx_id: 'x'.repeat(65) }, RejectCode.Malformed, ''],
    ['tx_id as a number', { ...VALID_DEPOSIT, tx_id: 5 }, RejectCode.Malformed, ''],
    ['transfer without to', { type: 'transfer', tx_id: 'tx-1', from: '1001', currency: 'USDT', amount: '1' }, RejectCode.Malformed, 'tx-1'],
    ['transfer with account instead of from', { type: 'transfer', tx_id: 'tx-1', account: '1001', to: '1002', currency: 'USDT', amount: '1' }, RejectCode.Malformed, 'tx-1'],
    ['settle without legs', { type: 'settle', tx_id: 'tx-1', account: '1001' }, RejectCode.Malformed, 'tx-1'],
    ['settle with no leg', { type: 'settle', tx_id: 'tx-1', account: '1001', legs: [] }, RejectCode.Malformed, 'tx-1'],
    ['settle legs not an array', { type: 'settle', tx_id: 'tx-1', account: '1001', legs: {} }, RejectCode.Malformed, 'tx-1'],
    ['settle leg not an object', { type: 'settle', tx_id: 'tx-1', account: '1001', legs: [[]] }, RejectCode.Malformed, 'tx-1'],
    ['settle leg missing frozen', { type: 'settle', tx_id: 'tx-1', account: '1001', legs: [{ account: '1001', currency: 'USDT', available: '1' }] }, RejectCode.Malformed, 'tx-1'],
    ['settle leg with "+" delta', { type: 'settle', tx_id: 'tx-1', account: '1001', legs: [{ account: '1001', currency: 'USDT', available: '+1', frozen: '0' }] }, RejectCode.BadAmount, 'tx-1'],
    ['settle leg unknown currency', { type: 'settle', tx_id: 'tx-1', account: '1001', legs: [{ account: '1001', currency: 'XRP', available: '1', frozen: '0' }] }, RejectCode.UnknownCurrency, 'tx-1'],
  ];
  for (const [name, command, code, txId] of cases) {
    const slot = decode(JSON.stringify(command));
    assert.equal(slot.rejectCode, code, name);
    assert.equal(slot.txId, txId, name);
    assert.equal(slot.txIdHash, txId === '' ? 0n : hash64BigInt(Buffer.from(txId)), name);
  }
  const legs = (count: number) => Array.from({ length: count }, () => ({ account: '1001', currency: 'USDT', available: '0', frozen: '0' }));
  assert.equal(decode(JSON.stringify({ type: 'settle', tx_id: 's', account: '1001', legs: legs(12) })).rejectCode, RejectCode.None);
  assert.equal(decode(JSON.stringify({ type: 'settle', tx_id: 's', account: '1001', legs: legs(13) })).rejectCode, RejectCode.Malformed);
});

test('malformed JSON is MALFORMED; a tx_id read before the damage is kept', () => {
  const cases: [string, string][] = [
    ['', ''], ['   ', ''], ['[]', ''], ['"x"', ''], ['null', ''], ['{', ''], ['{}', ''], ['{"tx_id":"a"', 'a'], ['{"tx_id":"a",}', 'a'], ['{"tx_id":"a"}}', 'a'],
    ['{"tx_id":"a"} x', 'a'], ['{"tx_id":"a" "type":"deposit"}', 'a'], ['{"a":01,"tx_id":"b"}', ''], ['{"tx_id":"a\\x"}', ''], ['{"tx_id":"a\u0001"}', ''],
    ['\ufeff{"tx_id":"a"}', ''], ['{"tx_id":"\\ud800"}', ''], ['{"tx_id":"a","type":"deposit","tx_id":"a"}', ''], ['{"type":"deposit","type":"deposit","tx_id":"a"}', 'a'],
  ];
  for (const [text, txId] of cases) {
    const slot = decode(text);
    assert.equal(slot.rejectCode, RejectCode.Malformed, text);
    assert.equal(slot.txId, txId, text);
  }
  assert.equal(decode(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])).rejectCode, RejectCode.Malformed);
  // The oracle agrees on a byte-order mark before an otherwise valid command.
  assert.equal(checkAgainstReference(Buffer.from('\ufeff{"type":"deposit","tx_id":"a","account":"1001","currency":"BTC","amount":"1"}')), RejectCode.Malformed);
  const deep = '{"x":' + '['.repeat(40) + ']'.repeat(40) + ',"type":"deposit","tx_id":"a","account":"1","currency":"BTC","amount":"1"}';
  assert.equal(decode(deep).rejectCode, RejectCode.Malformed);
  const deepEnough = '{"x":' + '['.repeat(31) + ']'.repeat(31) + ',"type":"deposit","tx_id":"a","account":"1","currency":"BTC","amount":"1"}';
  assert.equal(decode(deepEnough).rejectCode, RejectCode.None);
});

test('unknown fields, and known fields the type does not use, are ignored', () => {
  const plain = decode(JSON.stringify(VALID_DEPOSIT), 0);
  const extra = decode(JSON.stringify({ note: { nested: [1, 'two', null, true, { x: -1.5e-3 }] }, ...VALID_DEPOSIT, to: '5', legs: [1], from: 7 }), 1);
  assert.equal(extra.rejectCode, RejectCode.None);
  assert.deepEqual(slotBytes(views, 1), slotBytes(views, 0));
  assert.equal(plain.rejectCode, RejectCode.None);
});

/** The same command spelled differently: shuffled keys, random whitespace, escapes. */
function respell(value: unknown, random: SeededRandom): string {
  const space = (): string => ' \t\n\r'.slice(0, random.int(3)) + (random.chance(0.2) ? '  ' : '');
  if (Array.isArray(value)) return `[${space()}${value.map((item) => respell(item, random) + space()).join(`,${space()}`)}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).filter(([, item]) => item !== undefined);
    for (let index = entries.length - 1; index > 0; index--) {
      const other = random.int(index + 1);
      [entries[index], entries[other]] = [entries[other], entries[index]];
    }
    return `{${space()}${entries.map(([key, item]) => `${respellString(key, random)}${space()}:${space()}${respell(item, random)}`).join(`${space()},${space()}`)}${space()}}`;
  }
  return typeof value === 'string' ? respellString(value, random) : JSON.stringify(value);
}

function respellString(text: string, random: SeededRandom): string {
  let out = '"';
  for (const char of text) {
    const code = char.codePointAt(0) as number;
    if (char === '"' || char === '\\' || code < 0x20) out += JSON.stringify(char).slice(1, -1);
    else if (code < 0x10000 && random.chance(0.15)) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else if (char === '/' && random.chance(0.5)) out += '\\/';
    else out += char;
  }
  return out + '"';
}

test('key order, whitespace and escapes do not change a single slot byte', () => {
  const random = new SeededRandom(101);
  for (let round = 0; round < 5000; round++) {
    const command = randomWireCommand(random, { accountCount: 1_000_000, currencies: BENCH_CURRENCIES, credits: true }, round);
    decode(JSON.stringify(command), 0);
    decode(respell(command, random), 1);
    assert.deepEqual(slotBytes(views, 1), slotBytes(views, 0), JSON.stringify(command));
  }
});

test('a reused slot holds exactly what a fresh slot would', () => {
  const random = new SeededRandom(102);
  const fresh = createCommandSlotViews(1);
  for (let round = 0; round < 3000; round++) {
    const command = randomWireCommand(random, { accountCount: 1000, currencies: BENCH_CURRENCIES, credits: true }, round);
    const text = random.chance(0.1) ? JSON.stringify(command).slice(0, random.int(60)) : JSON.stringify(command);
    decodeJsonCommand(Buffer.from(text), 1, round, PARTITION_COUNT, REGISTRY, views, 2 * COMMAND_SLOT_BYTES);
    fresh.bytes.fill(0);
    decodeJsonCommand(Buffer.from(text), 1, round, PARTITION_COUNT, REGISTRY, fresh, 0);
    assert.deepEqual(slotBytes(views, 2), slotBytes(fresh, 0), text);
  }
});

/** A command with one field made wrong in one of many ways (or left valid). */
function perturb(command: WireCommand, random: SeededRandom): unknown {
  const value: Record<string, unknown> = JSON.parse(JSON.stringify(command));
  const legs = value.legs as Record<string, unknown>[] | undefined;
  const target = legs !== undefined && random.chance(0.6) ? legs[random.int(legs.length)] : value;
  const keys = Object.keys(target);
  const key = random.pick(keys);
  const replacement = random.pick<unknown>([
    undefined, null, 0, 1.5, -3, true, [], {}, '', ' ', '0', '-0', '+1', '-1', '1e2', '01', '1.', '.5', '0.0000000001', '1.123456789', '92233720368547758070',
    '18446744073709551615', '18446744073709551616', '9223372036854775807', 'DOGE', 'usdt', 'BTC', 'SOL', 'x'.repeat(64), 'x'.repeat(65), '\u00e9'.repeat(32), '\u00e9'.repeat(33),
    'deposit', 'settle', 'transfer', 'credit', 'Deposit', 'credits', [{ account: '1', currency: 'BTC', available: '1', frozen: '-1' }],
  ]);
  if (random.chance(0.8)) target[key] = replacement;
  if (random.chance(0.1)) value[random.pick(['extra', 'to', 'from', 'legs', 'amount'])] = replacement;
  return value;
}

test('model: perturbed commands decode exactly as the reference model says (seeded)', () => {
  const random = new SeededRandom(103);
  const codes: number[] = [];
  for (let round = 0; round < 30_000; round++) {
    const command = randomWireCommand(random, { accountCount: 1_000_000, currencies: [...BENCH_CURRENCIES, { code: 'DOGE', scale: 8 }], credits: true }, round);
    const spelled = random.chance(0.5) ? respell(perturb(command, random), random) : JSON.stringify(perturb(command, random));
    codes.push(checkAgainstReference(Buffer.from(spelled, 'utf8')));
  }
  const counts = countCodes(codes);
  for (const code of [RejectCode.None, RejectCode.Malformed, RejectCode.BadAmount, RejectCode.AmountOverflow, RejectCode.UnknownCurrency]) {
    assert.ok((counts[code] ?? 0) >= 100, `code ${code} seen ${counts[code] ?? 0} times: ${JSON.stringify(counts)}`);
  }
});

const FUZZ_TOKENS = ['{', '}', '[', ']', '"', ',', ':', '\\', '\\u', '\\ud83d\\ude00', '\\ud800', 'null', 'true', '1e5', '-', '0', '9', '.', ' ', '\u00ff', '\u20ac', '"type"', '"legs"', '"tx_id"'];

function mutate(bytes: Buffer, random: SeededRandom): Buffer {
  let out = bytes;
  for (let count = 1 + random.int(3); count > 0; count--) {
    const at = random.int(out.length + 1);
    switch (random.int(6)) {
      case 0: out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1 + random.int(4))]); break;
      case 1: out = Buffer.concat([out.subarray(0, at), Buffer.from([random.int(256)]), out.subarray(at)]); break;
      case 2: out = Buffer.concat([out.subarray(0, at), Buffer.from(random.pick(FUZZ_TOKENS)), out.subarray(at)]); break;
      case 3: out = out.subarray(0, at); break;
      case 4: if (at < out.length) { out = Buffer.from(out); out[at] ^= 1 << random.int(8); } break;
      default: out = Buffer.concat([out.subarray(0, at), out.subarray(random.int(out.length + 1))]); break;
    }
  }
  return out;
}

test('fuzz: 100k mutated and random messages never throw and match the model', () => {
  const random = new SeededRandom(104);
  const codes: number[] = [];
  for (let round = 0; round < 100_000; round++) {
    let message: Buffer;
    if (round % 4 === 0) {
      message = Buffer.from(Array.from({ length: random.int(80) }, () => (random.chance(0.5) ? random.int(256) : random.pick([...'{}[]":,\\ 0a-.'].map((c) => c.charCodeAt(0))))));
    } else {
      const command = randomWireCommand(random, { accountCount: 100_000, currencies: BENCH_CURRENCIES, credits: true }, round);
      message = mutate(Buffer.from(round % 3 === 0 ? respell(command, random) : JSON.stringify(command)), random);
    }
    codes.push(checkAgainstReference(message));
  }
  const counts = countCodes(codes);
  assert.ok(counts[RejectCode.None] >= 1000 && counts[RejectCode.BadAmount] >= 100 && counts[RejectCode.UnknownCurrency] >= 100, JSON.stringify(counts));
});
