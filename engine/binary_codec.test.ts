import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BINARY_COMMAND_BYTES_MAX, BINARY_VERSION_1, decodeBinaryCommand } from './binary_codec';
import { encodeCommandBinary, encodeCommandBinaryInto } from './binary_encoder';
import { COMMAND_SLOT_BYTES, CommandType } from './command_layout';
import { DecodedCommand, createCommandSlotViews, readCommandSlot } from './command_slot';
import { CurrencyRegistry } from './currency_registry';
import { hash64BigInt } from './hash64';
import { decodeJsonCommand } from './json_codec';
import { RejectCode } from './reject_code';
import { WireCommand, encodeCommandJson } from './wire_command';
import { BENCH_CURRENCIES, SeededRandom, randomWireCommand } from './wire_fixtures';

const REGISTRY = CurrencyRegistry.fromConfig(BENCH_CURRENCIES.map((currency) => ({ ...currency })));
const PARTITION_COUNT = 12;
const views = createCommandSlotViews(2);
const JSON_SLOT = 0;
const BINARY_SLOT = COMMAND_SLOT_BYTES;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function decodeBinary(message: Uint8Array): DecodedCommand {
  decodeBinaryCommand(message, 5, 77, PARTITION_COUNT, REGISTRY, views, BINARY_SLOT);
  return readCommandSlot(views, BINARY_SLOT);
}

function slotBytes(slotOffset: number): Buffer {
  return Buffer.from(views.bytes.subarray(slotOffset, slotOffset + COMMAND_SLOT_BYTES));
}

/** Decodes the JSON and the binary form; the two slots must be byte for byte equal. */
function assertSameSlot(json: string, binary: Uint8Array): number {
  const jsonCode = decodeJsonCommand(Buffer.from(json, 'utf8'), 5, 77, PARTITION_COUNT, REGISTRY, views, JSON_SLOT);
  const binaryCode = decodeBinaryCommand(binary, 5, 77, PARTITION_COUNT, REGISTRY, views, BINARY_SLOT);
  assert.equal(binaryCode, jsonCode, json);
  assert.deepEqual(slotBytes(BINARY_SLOT), slotBytes(JSON_SLOT), json);
  return binaryCode;
}

test('JSON and binary of the same command give identical slots (hashes included)', () => {
  const random = new SeededRandom(201);
  for (let round = 0; round < 20_000; round++) {
    const command = randomWireCommand(random, { accountCount: 1_000_000, currencies: BENCH_CURRENCIES, credits: true }, round);
    assert.equal(assertSameSlot(encodeCommandJson(command), encodeCommandBinary(command)), RejectCode.None);
  }
});

/** Changes that both encodings can carry and that the decoders must reject the same way. */
function perturbEncodable(command: WireCommand, random: SeededRandom): WireCommand {
  const copy = JSON.parse(JSON.stringify(command)) as WireCommand;
  const amount = random.pick(['0', '-0', '-5', '1.1234567891', '1.10', '1.100000000', '0.000000000000000001', '9223372036854775807', '92233720368.5477581', '100000000000', '-9223372036854775808', '007.50', '5']);
  const currency = random.pick(['DOGE', 'usdt', 'BTC', 'ETH', 'A1B2C3D4E5F6G7H8']);
  const account = random.pick(['0', '1', '999', '18446744073709551615', '9007199254740993', '4294967296']);
  if (copy.type === 'settle') {
    const leg = copy.legs[random.int(copy.legs.length)];
    if (random.chance(0.5)) leg.available = amount;
    else if (random.chance(0.5)) leg.frozen = amount;
    else leg.currency = currency;
    if (random.chance(0.3)) leg.account = account;
  } else {
    if (random.chance(0.6)) copy.amount = amount;
    if (random.chance(0.3)) copy.currency = currency;
    if (random.chance(0.3) && copy.type !== 'transfer') copy.account = account;
  }
  return copy;
}

test('rule rejections (sign, scale, overflow, unknown currency) agree between JSON and binary', () => {
  const random = new SeededRandom(202);
  const seen = new Set<number>();
  for (let round = 0; round < 20_000; round++) {
    const command = perturbEncodable(randomWireCommand(random, { accountCount: 1_000_000, currencies: BENCH_CURRENCIES, credits: true }, round), random);
    seen.add(assertSameSlot(encodeCommandJson(command), encodeCommandBinary(command)));
  }
  assert.deepEqual([...seen].sort(), [RejectCode.None, RejectCode.BadAmount, RejectCode.AmountOverflow, RejectCode.UnknownCurrency]);
});

const DEPOSIT: WireCommand = { type: 'deposit', tx_id: 'tx-9', account: '1001', currency: 'USDT', amount: '100.25' };

test('amounts around the edges of the float64 fast path decode exactly as their JSON strings', () => {
  // The binary decoder reads mantissas up to 2^53 in magnitude, and minor units below 2^53,
  // in float64 arithmetic and falls back to two-word arithmetic beyond; the JSON decoder
  // always takes the general path, so equal slots (payload hash included) check the edges.
  const mantissas = [0n, 1n, 10n, 100n, (1n << 31n) - 1n, 1n << 31n, (1n << 32n) - 1n, 1n << 32n, 10n ** 15n, (1n << 53n) - 10n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, (1n << 53n) + 10n, 10n ** 16n, (1n << 63n) - 1n, 9223372036854775800n];
  const amounts: string[] = [];
  for (const mantissa of mantissas) {
    for (const scale of [0, 1, 2, 6, 8, 9, 18]) {
      for (const negative of [false, true]) {
        const digits = mantissa.toString().padStart(scale + 1, '0');
        const text = scale === 0 ? digits : `${digits.slice(0, digits.length - scale)}.${digits.slice(digits.length - scale)}`;
        amounts.push(negative ? `-${text}` : text);
      }
    }
  }
  amounts.push('-9223372036854775808', '-922337203685477.5808', '-0.000000000000000001');
  const seen = new Set<number>();
  for (const amount of amounts) {
    for (const currency of ['USDT', 'BTC', 'SOL', 'DOGE']) {
      seen.add(assertSameSlot(encodeCommandJson({ ...DEPOSIT, currency, amount }), encodeCommandBinary({ ...DEPOSIT, currency, amount })));
      const legs = [{ account: '5', currency, available: amount, frozen: '0' }, { account: '6', currency, available: '0', frozen: amount }];
      const settle: WireCommand = { type: 'settle', tx_id: 's', account: '5', legs };
      seen.add(assertSameSlot(encodeCommandJson(settle), encodeCommandBinary(settle)));
    }
  }
  assert.deepEqual([...seen].sort(), [RejectCode.None, RejectCode.BadAmount, RejectCode.AmountOverflow, RejectCode.UnknownCurrency]);
});

test('a NUL anywhere in a tx_id of any length is MALFORMED; bytes 0x01 and 0x80.. are not NUL', () => {
  for (let length = 1; length <= 64; length++) {
    for (let at = 0; at < length; at++) {
      const txId = 'x'.repeat(at) + '\u0000' + 'y'.repeat(length - at - 1);
      const slot = decodeBinary(encodeCommandBinary({ ...DEPOSIT, tx_id: txId }));
      assert.deepEqual([slot.rejectCode, slot.txId], [RejectCode.Malformed, ''], `NUL at ${at} of ${length}`);
    }
    // Bytes 0x01 and, in a two-byte character, 0xc3 0xa9: neither is NUL.
    const clean = decodeBinary(encodeCommandBinary({ ...DEPOSIT, tx_id: length < 2 ? '\u0001' : '\u0001A'.repeat(32).slice(0, length - 2) + '\u00e9' }));
    assert.equal(clean.rejectCode, RejectCode.None, `no NUL, length ${length}`);
  }
});

test('binary layout of a deposit, byte by byte', () => {
  const bytes = encodeCommandBinary(DEPOSIT);
  const expected = Buffer.concat([
    Buffer.from([BINARY_VERSION_1, CommandType.Deposit, 4]),
    Buffer.from([0xe9, 0x03, 0, 0, 0, 0, 0, 0]), // account 1001
    Buffer.from('tx-9'),
    Buffer.from([4]), Buffer.from('USDT'),
    Buffer.from([0x29, 0x27, 0, 0, 0, 0, 0, 0]), Buffer.from([2]), // 10025, scale 2
  ]);
  assert.deepEqual(Buffer.from(bytes), expected);
  const slot = decodeBinary(bytes);
  assert.deepEqual([slot.type, slot.rejectCode, slot.txId, slot.account, slot.currency, slot.amount], [CommandType.Deposit, RejectCode.None, 'tx-9', 1001n, 1, 100_250_000n]);
});

test('binary layout of a credit: a deposit\'s shape with type 7', () => {
  const credit: WireCommand = { ...DEPOSIT, type: 'credit' };
  const bytes = Buffer.from(encodeCommandBinary(credit));
  const deposit = Buffer.from(encodeCommandBinary(DEPOSIT));
  assert.equal(bytes[1], CommandType.Credit);
  assert.deepEqual(Buffer.concat([bytes.subarray(0, 1), bytes.subarray(2)]), Buffer.concat([deposit.subarray(0, 1), deposit.subarray(2)]));
  const slot = decodeBinary(bytes);
  assert.deepEqual([slot.type, slot.rejectCode, slot.txId, slot.account, slot.currency, slot.amount], [CommandType.Credit, RejectCode.None, 'tx-9', 1001n, 1, 100_250_000n]);
  assertSameSlot(encodeCommandJson(credit), bytes);
  assert.notEqual(slot.payloadHash, decodeBinary(deposit).payloadHash);
  for (const amount of ['0', '-1', '1.1234567', '9223372036855']) assertSameSlot(encodeCommandJson({ ...credit, amount }), encodeCommandBinary({ ...credit, amount }));
});

test('every MALFORMED binary path; the tx_id is kept whenever the header holds one', () => {
  const valid = Buffer.from(encodeCommandBinary(DEPOSIT));
  const edit = (at: number, value: number): Buffer => {
    const copy = Buffer.from(valid);
    copy[at] = value;
    return copy;
  };
  const currencyAt = 11 + 4;
  const cases: [string, Uint8Array, string][] = [
    ['empty', Buffer.alloc(0), ''],
    ['header cut', valid.subarray(0, 10), ''],
    ['wrong version', edit(0, 0xb2), ''],
    ['type 0', edit(1, 0), 'tx-9'],
    ['type 8', edit(1, 8), 'tx-9'],
    ['tx_id length 0', edit(2, 0), ''],
    ['tx_id length 65', edit(2, 65), ''],
    ['tx_id past the end', edit(2, 60), ''],
    ['tx_id not UTF-8', edit(11, 0xff), ''],
    ['currency length 0', edit(currencyAt, 0), 'tx-9'],
    ['currency length 17', edit(currencyAt, 17), 'tx-9'],
    ['scale 19', edit(valid.length - 1, 19), 'tx-9'],
    ['trailing byte', Buffer.concat([valid, Buffer.from([0])]), 'tx-9'],
  ];
  for (let cut = 11 + 4; cut < valid.length; cut++) cases.push([`cut at ${cut}`, valid.subarray(0, cut), 'tx-9']);
  for (const [name, message, txId] of cases) {
    const slot = decodeBinary(message);
    assert.equal(slot.rejectCode, RejectCode.Malformed, name);
    assert.equal(slot.txId, txId, name);
    assert.equal(slot.payloadHash, hash64BigInt(message), name);
    assert.deepEqual([slot.account, slot.currency, slot.amount, slot.legs.length], [0n, 0, 0n, 0], name);
  }
  const settle = Buffer.from(encodeCommandBinary({ type: 'settle', tx_id: 's', account: '5', legs: [{ account: '5', currency: 'BTC', available: '1', frozen: '-1' }] }));
  const legCountAt = 11 + 1;
  for (const count of [0, 2, 13]) {
    const copy = Buffer.from(settle);
    copy[legCountAt] = count;
    assert.equal(decodeBinary(copy).rejectCode, RejectCode.Malformed, `legCount ${count}`);
  }
  assert.equal(decodeBinary(settle).rejectCode, RejectCode.None);
});

test('the encoder refuses what the format cannot carry, and writes at an offset', () => {
  const bad: [string, WireCommand][] = [
    ['empty tx_id', { ...DEPOSIT, tx_id: '' }],
    ['long tx_id', { ...DEPOSIT, tx_id: 'x'.repeat(65) }],
    ['account', { ...DEPOSIT, account: '01' }],
    ['currency', { ...DEPOSIT, currency: '' }],
    ['long currency', { ...DEPOSIT, currency: 'X'.repeat(17) }],
    ['exponent', { ...DEPOSIT, amount: '1e5' }],
    ['plus', { ...DEPOSIT, amount: '+5' }],
    ['19 decimals', { ...DEPOSIT, amount: '0.0000000000000000001' }],
    ['digits beyond i64', { ...DEPOSIT, amount: '9223372036854775808' }],
    ['no legs', { type: 'settle', tx_id: 's', account: '1', legs: [] }],
  ];
  for (const [name, command] of bad) assert.throws(() => encodeCommandBinary(command), Error, name);
  const target = new Uint8Array(200);
  const length = encodeCommandBinaryInto(DEPOSIT, target, 100);
  assert.deepEqual(target.subarray(100, 100 + length), encodeCommandBinary(DEPOSIT));
  assert.throws(() => encodeCommandBinaryInto(DEPOSIT, new Uint8Array(20), 0), RangeError);
  const legs = Array.from({ length: 12 }, () => ({ account: '18446744073709551615', currency: 'A1B2C3D4E5F6G7H8', available: '-9223372036854775808', frozen: '-0.000000000000000001' }));
  assert.equal(encodeCommandBinary({ type: 'settle', tx_id: '\u{1F600}'.repeat(16), account: '1', legs }).length, BINARY_COMMAND_BYTES_MAX);
});

/**
 * Reads a binary message with Buffer methods (a second, independent reader) into the
 * contract's object form; undefined where the layout is broken.
 */
function referenceReadBinary(message: Buffer): { command?: WireCommand; txId?: string; currencyUtf8: boolean } {
  const result: { command?: WireCommand; txId?: string; currencyUtf8: boolean } = { currencyUtf8: true };
  if (message.length < 11 || message[0] !== BINARY_VERSION_1) return result;
  const txIdLength = message[2];
  let txId: string | undefined;
  try {
    txId = txIdLength >= 1 && txIdLength <= 64 && 11 + txIdLength <= message.length ? strictUtf8.decode(message.subarray(11, 11 + txIdLength)) : undefined;
  } catch {
    txId = undefined;
  }
  // NUL is refused: PostgreSQL text cannot store it.
  if (txId !== undefined && txId.includes('\u0000')) txId = undefined;
  result.txId = txId;
  const type = message[1];
  if (txId === undefined || type < 1 || type > 7) return result;
  let at = 11 + txIdLength;
  const need = (count: number): boolean => at + count <= message.length;
  const account = (): string | undefined => (need(8) ? message.readBigUInt64LE((at += 8) - 8).toString() : undefined);
  const currency = (): string | undefined => {
    if (!need(1)) return undefined;
    const length = message[at];
    if (length < 1 || length > 16 || !need(1 + length)) return undefined;
    const bytes = message.subarray(at + 1, at + 1 + length);
    at += 1 + length;
    try {
      return strictUtf8.decode(bytes);
    } catch {
      result.currencyUtf8 = false;
      return bytes.toString('latin1');
    }
  };
  const amount = (): string | undefined => {
    if (!need(9) || message[at + 8] > 18) return undefined;
    const mantissa = message.readBigInt64LE(at);
    const scale = message[at + 8];
    at += 9;
    const digits = (mantissa < 0n ? -mantissa : mantissa).toString().padStart(scale + 1, '0');
    const text = scale === 0 ? digits : `${digits.slice(0, digits.length - scale)}.${digits.slice(digits.length - scale)}`;
    return mantissa < 0n ? `-${text}` : text;
  };
  const user = message.readBigUInt64LE(3).toString();
  let command: WireCommand | undefined;
  if (type === CommandType.Settle) {
    const legCount = need(1) ? message[at++] : 0;
    const legs = [];
    for (let leg = 0; leg < legCount; leg++) legs.push({ account: account(), currency: currency(), available: amount(), frozen: amount() });
    const complete = legCount >= 1 && legCount <= 12 && legs.every((leg) => Object.values(leg).every((value) => value !== undefined));
    if (complete) command = { type: 'settle', tx_id: txId, account: user, legs: legs as { account: string; currency: string; available: string; frozen: string }[] };
  } else if (type === CommandType.Transfer) {
    const to = account();
    const code = to === undefined ? undefined : currency();
    const value = code === undefined ? undefined : amount();
    if (value !== undefined) command = { type: 'transfer', tx_id: txId, from: user, to: to as string, currency: code as string, amount: value };
  } else {
    const code = currency();
    const value = code === undefined ? undefined : amount();
    const name = type === CommandType.Credit ? 'credit' : (['deposit', 'withdraw', 'freeze', 'unfreeze'] as const)[type - 1];
    if (value !== undefined) command = { type: name, tx_id: txId, account: user, currency: code as string, amount: value };
  }
  if (command !== undefined && at === message.length) result.command = command;
  return result;
}

test('fuzz: 100k mutated and random binary messages never throw and match a second reader', () => {
  const random = new SeededRandom(203);
  const seen = new Set<number>();
  for (let round = 0; round < 100_000; round++) {
    const valid = Buffer.from(encodeCommandBinary(perturbEncodable(randomWireCommand(random, { accountCount: 1_000_000, currencies: BENCH_CURRENCIES, credits: true }, round), random)));
    let message: Buffer;
    if (round % 5 === 0) message = Buffer.from(Array.from({ length: random.int(120) }, (_, index) => (index === 0 && random.chance(0.7) ? BINARY_VERSION_1 : random.int(256))));
    else {
      message = Buffer.from(valid);
      for (let count = 1 + random.int(3); count > 0; count--) {
        const at = random.int(message.length);
        if (random.chance(0.8)) message[at] = random.chance(0.5) ? random.int(256) : message[at] ^ (1 << random.int(8));
        else message = random.chance(0.5) ? message.subarray(0, at) : Buffer.concat([message, Buffer.from([random.int(256)])]);
      }
    }
    const slot = decodeBinary(message);
    seen.add(slot.rejectCode);
    const reference = referenceReadBinary(message);
    if (reference.command === undefined) {
      assert.equal(slot.rejectCode, RejectCode.Malformed, message.toString('hex'));
      assert.equal(slot.txId, reference.txId ?? '', message.toString('hex'));
    } else if (!reference.currencyUtf8) {
      assert.equal(slot.rejectCode, RejectCode.UnknownCurrency, message.toString('hex'));
    } else {
      assertSameSlot(encodeCommandJson(reference.command), message);
    }
  }
  assert.equal(seen.size, 5);
});

test('a reused slot holds exactly what a fresh slot would (binary)', () => {
  const random = new SeededRandom(204);
  const fresh = createCommandSlotViews(1);
  for (let round = 0; round < 3000; round++) {
    const whole = Buffer.from(encodeCommandBinary(randomWireCommand(random, { accountCount: 1000, currencies: BENCH_CURRENCIES, credits: true }, round)));
    const message = random.chance(0.1) ? whole.subarray(0, random.int(whole.length)) : whole;
    decodeBinaryCommand(message, 1, round, PARTITION_COUNT, REGISTRY, views, BINARY_SLOT);
    fresh.bytes.fill(0);
    decodeBinaryCommand(message, 1, round, PARTITION_COUNT, REGISTRY, fresh, 0);
    assert.deepEqual(slotBytes(BINARY_SLOT), Buffer.from(fresh.bytes), message.toString('hex'));
  }
});

test('a reused slot holds exactly what a fresh slot would after the fast path declined part way', () => {
  // The fast path writes a slot's fields as it reads and declines a rejected command late
  // (its last leg's amount, say); the general path must then leave no trace of that.
  const random = new SeededRandom(205);
  const fresh = createCommandSlotViews(1);
  for (let round = 0; round < 5000; round++) {
    const command = perturbEncodable(randomWireCommand(random, { accountCount: 1000, currencies: BENCH_CURRENCIES, credits: true }, round), random);
    if (command.type === 'settle' && random.chance(0.5)) while (command.legs.length < 12) command.legs.unshift({ ...command.legs[command.legs.length - 1] });
    const message = Buffer.from(encodeCommandBinary(command));
    decodeBinaryCommand(message, 1, round, PARTITION_COUNT, REGISTRY, views, BINARY_SLOT);
    fresh.bytes.fill(0);
    decodeBinaryCommand(message, 1, round, PARTITION_COUNT, REGISTRY, fresh, 0);
    assert.deepEqual(slotBytes(BINARY_SLOT), Buffer.from(fresh.bytes), message.toString('hex'));
  }
});

test('currency codes of every length 1..16 decode alike in JSON and binary (fast path code words)', () => {
  const codes = ['X', 'AB', 'ABC', 'ABCD', 'ABCDE', 'ABCDEFGH', 'ABCDEFGHI', 'ABCDEFGHIJKL', 'ABCDEFGHIJKLM', 'A1B2C3D4E5F6G7H8'];
  const registry = CurrencyRegistry.fromConfig(codes.map((code, index) => ({ code, scale: index % 10 })));
  const currencies = codes.map((code, index) => ({ code, scale: index % 10 }));
  const random = new SeededRandom(206);
  const seen = new Set<number>();
  for (let round = 0; round < 5000; round++) {
    let command = randomWireCommand(random, { accountCount: 1_000_000, currencies, credits: true }, round);
    if (random.chance(0.3)) command = perturbEncodable(command, random);
    const json = Buffer.from(encodeCommandJson(command), 'utf8');
    const binary = encodeCommandBinary(command);
    const jsonCode = decodeJsonCommand(json, 5, 77, PARTITION_COUNT, registry, views, JSON_SLOT);
    assert.equal(decodeBinaryCommand(binary, 5, 77, PARTITION_COUNT, registry, views, BINARY_SLOT), jsonCode);
    assert.deepEqual(slotBytes(BINARY_SLOT), slotBytes(JSON_SLOT), JSON.stringify(command));
    seen.add(jsonCode);
  }
  assert.ok(seen.has(RejectCode.None) && seen.has(RejectCode.BadAmount) && seen.has(RejectCode.UnknownCurrency), [...seen].join());
});
