import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  AMOUNT_SCALE_MAX,
  AMOUNT_TEXT_BYTES_MAX,
  AmountSign,
  DecimalAmount,
  canonicalFitsInt64,
  formatAmount,
  formatAmountBigInt,
  parseAmount,
  readDecimalMantissa,
  readDecimalText,
  scaleDecimal,
} from './amount';
import { RejectCode } from './reject_code';
import { SeededRandom } from './wire_fixtures';

const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);
const TWO_POW_53 = 1n << 53n;

/** Straightforward BigInt reference of the amount rules (amount.ts header). */
function referenceParse(text: string, scale: number, sign: AmountSign): { rejectCode: RejectCode; minorUnits: bigint } {
  const bad = { rejectCode: RejectCode.BadAmount, minorUnits: 0n };
  if (text.length === 0 || text.length > AMOUNT_TEXT_BYTES_MAX) return bad;
  const match = /^(-?)([0-9]+)(?:\.([0-9]+))?$/.exec(text);
  if (match === null) return bad;
  const negative = match[1] === '-';
  const fraction = match[3] ?? '';
  const magnitude = BigInt(match[2] + fraction);
  if (sign === AmountSign.Positive && (negative || magnitude === 0n)) return bad;
  if (fraction.length > scale) return bad;
  const value = (negative ? -magnitude : magnitude) * 10n ** BigInt(scale - fraction.length);
  if (value > I64_MAX || value < I64_MIN) return { rejectCode: RejectCode.AmountOverflow, minorUnits: 0n };
  return { rejectCode: RejectCode.None, minorUnits: value };
}

/** Canonical (mantissa, scale) of a syntactically valid decimal string. */
function referenceCanonical(text: string): { mantissa: bigint; scale: number } {
  const match = /^(-?)([0-9]+)(?:\.([0-9]+))?$/.exec(text) as RegExpExecArray;
  const fraction = (match[3] ?? '').replace(/0+$/, '');
  const magnitude = BigInt(match[2] + fraction);
  return { mantissa: match[1] === '-' ? -magnitude : magnitude, scale: fraction.length };
}

function referenceFormat(value: bigint, scale: number): string {
  const negative = value < 0n;
  const digits = (negative ? -value : value).toString().padStart(scale + 1, '0');
  const integer = digits.slice(0, digits.length - scale);
  const fraction = digits.slice(digits.length - scale).replace(/0+$/, '');
  const text = fraction === '' ? integer : `${integer}.${fraction}`;
  return negative ? `-${text}` : text;
}

/** A decimal string at `scale` whose minor units are `value` ("-12.345" for -12345, 3). */
function literalOf(value: bigint, scale: number): string {
  const negative = value < 0n;
  const digits = (negative ? -value : value).toString().padStart(scale + 1, '0');
  const text = scale === 0 ? digits : `${digits.slice(0, digits.length - scale)}.${digits.slice(digits.length - scale)}`;
  return negative ? `-${text}` : text;
}

function check(text: string, scale: number, sign: AmountSign): void {
  assert.deepEqual(parseAmount(text, scale, sign), referenceParse(text, scale, sign), `${JSON.stringify(text)} scale ${scale} sign ${sign}`);
}

test('examples of the contract', () => {
  assert.deepEqual(parseAmount('100.25', 8, AmountSign.Positive), { rejectCode: RejectCode.None, minorUnits: 10_025_000_000n });
  assert.deepEqual(parseAmount('007.5', 8, AmountSign.Positive), { rejectCode: RejectCode.None, minorUnits: 750_000_000n });
  assert.deepEqual(parseAmount('1.10', 8, AmountSign.Positive), { rejectCode: RejectCode.None, minorUnits: 110_000_000n });
  assert.deepEqual(parseAmount('1.10', 2, AmountSign.Positive), { rejectCode: RejectCode.None, minorUnits: 110n });
  assert.deepEqual(parseAmount('-0.001', 8, AmountSign.Signed), { rejectCode: RejectCode.None, minorUnits: -100_000n });
  assert.deepEqual(parseAmount('-0', 8, AmountSign.Signed), { rejectCode: RejectCode.None, minorUnits: 0n });
  assert.deepEqual(parseAmount('0', 8, AmountSign.Signed), { rejectCode: RejectCode.None, minorUnits: 0n });
  assert.deepEqual(parseAmount('0.000000000000000001', 18, AmountSign.Positive), { rejectCode: RejectCode.None, minorUnits: 1n });
});

test('BAD_AMOUNT for every malformed spelling', () => {
  const malformed = ['', ' ', ' 1', '1 ', '1e5', '1E5', '1e-5', '0x10', '0b1', '.5', '5.', '.', '-', '+', '--1', '-+1', '1..2', '1.2.3', '1,5', '1_000', 'NaN', 'Infinity', '\u0661', '１', '1\n', '\t1', '"1"', '-.5', '-5.'];
  for (const text of malformed) {
    for (const sign of [AmountSign.Positive, AmountSign.Signed]) {
      assert.equal(parseAmount(text, 8, sign).rejectCode, RejectCode.BadAmount, JSON.stringify(text));
    }
  }
});

test('sign rules: positive types take no sign and no zero; deltas take "-" but never "+"', () => {
  for (const text of ['+1', '-1', '0', '0.0', '-0', '000', '0.00000000', '-0.5']) assert.equal(parseAmount(text, 8, AmountSign.Positive).rejectCode, RejectCode.BadAmount, text);
  assert.equal(parseAmount('+1', 8, AmountSign.Signed).rejectCode, RejectCode.BadAmount);
  assert.equal(parseAmount('+0', 8, AmountSign.Signed).rejectCode, RejectCode.BadAmount);
  assert.deepEqual(parseAmount('-1', 8, AmountSign.Signed), { rejectCode: RejectCode.None, minorUnits: -100_000_000n });
});

test('more digits after the point than the scale is BAD_AMOUNT, trailing zeros included', () => {
  assert.equal(parseAmount('1.123456789', 8, AmountSign.Positive).rejectCode, RejectCode.BadAmount);
  assert.equal(parseAmount('1.100000000', 8, AmountSign.Positive).rejectCode, RejectCode.BadAmount);
  assert.equal(parseAmount('1.5', 0, AmountSign.Positive).rejectCode, RejectCode.BadAmount);
  assert.equal(parseAmount('1.0', 0, AmountSign.Positive).rejectCode, RejectCode.BadAmount);
  assert.equal(parseAmount('1', 0, AmountSign.Positive).rejectCode, RejectCode.None);
  // BAD_AMOUNT wins over AMOUNT_OVERFLOW.
  assert.equal(parseAmount('99999999999999999999999.123', 2, AmountSign.Positive).rejectCode, RejectCode.BadAmount);
});

test('signed 64-bit edges at scale 0, 2, 8 and 18', () => {
  for (const scale of [0, 2, 8, 18]) {
    assert.deepEqual(parseAmount(literalOf(I64_MAX, scale), scale, AmountSign.Positive), { rejectCode: RejectCode.None, minorUnits: I64_MAX });
    assert.equal(parseAmount(literalOf(I64_MAX + 1n, scale), scale, AmountSign.Positive).rejectCode, RejectCode.AmountOverflow);
    assert.deepEqual(parseAmount(literalOf(I64_MIN, scale), scale, AmountSign.Signed), { rejectCode: RejectCode.None, minorUnits: I64_MIN });
    assert.equal(parseAmount(literalOf(I64_MIN - 1n, scale), scale, AmountSign.Signed).rejectCode, RejectCode.AmountOverflow);
    assert.equal(parseAmount(literalOf(1n << 64n, scale), scale, AmountSign.Positive).rejectCode, RejectCode.AmountOverflow);
  }
  assert.equal(parseAmount('9.223372036854775807', 18, AmountSign.Positive).minorUnits, I64_MAX);
  assert.equal(parseAmount('9.223372036854775808', 18, AmountSign.Positive).rejectCode, RejectCode.AmountOverflow);
  assert.equal(parseAmount('-9.223372036854775808', 18, AmountSign.Signed).minorUnits, I64_MIN);
  // Overflow only through scaling: the digits fit, the minor units do not.
  assert.equal(parseAmount('92233720368.54775807', 8, AmountSign.Positive).minorUnits, I64_MAX);
  assert.equal(parseAmount('92233720368.54775808', 8, AmountSign.Positive).rejectCode, RejectCode.AmountOverflow);
  assert.equal(parseAmount('92233720369', 8, AmountSign.Positive).rejectCode, RejectCode.AmountOverflow);
  assert.equal(parseAmount('1' + '0'.repeat(40), 0, AmountSign.Positive).rejectCode, RejectCode.AmountOverflow);
});

test('2^53 neighbours are exact (fast path ends at 15 digits)', () => {
  for (const value of [TWO_POW_53 - 1n, TWO_POW_53, TWO_POW_53 + 1n, 999_999_999_999_999n, 1_000_000_000_000_000n, 1_000_000_000_000_001n]) {
    for (const scale of [0, 3, 8]) {
      assert.equal(parseAmount(literalOf(value, scale), scale, AmountSign.Positive).minorUnits, value, `${value} at ${scale}`);
      assert.equal(parseAmount(literalOf(-value, scale), scale, AmountSign.Signed).minorUnits, -value);
    }
    assert.equal(parseAmount(value.toString(), 2, AmountSign.Positive).minorUnits, value * 100n);
  }
});

test('leading zeros and the length bound', () => {
  assert.equal(parseAmount('0'.repeat(100) + '1.5', 8, AmountSign.Positive).minorUnits, 150_000_000n);
  const longest = '0'.repeat(AMOUNT_TEXT_BYTES_MAX - 1) + '1';
  assert.equal(parseAmount(longest, 0, AmountSign.Positive).minorUnits, 1n);
  assert.equal(parseAmount('0' + longest, 0, AmountSign.Positive).rejectCode, RejectCode.BadAmount);
});

/** Random strings around the grammar: valid, near-valid and near the 64-bit edges. */
function randomAmountText(random: SeededRandom): string {
  const kind = random.int(10);
  if (kind < 5) {
    const sign = random.pick(['', '', '', '-', '+']);
    const leading = random.chance(0.2) ? '0'.repeat(random.int(4)) : '';
    const integer = leading + random.digits(random.int(22));
    const fraction = random.chance(0.6) ? '.' + random.digits(random.int(21)) + (random.chance(0.3) ? '0'.repeat(random.int(4)) : '') : '';
    return sign + integer + fraction;
  }
  if (kind < 8) {
    const edge = random.pick([I64_MAX, I64_MIN, 1n << 64n, TWO_POW_53, 0n, 1n]) + BigInt(random.int(5) - 2);
    const scale = random.int(AMOUNT_SCALE_MAX + 1);
    return literalOf(edge, scale) + (random.chance(0.3) && scale > 0 ? '0'.repeat(random.int(3)) : '');
  }
  let text = '';
  for (let length = random.int(10); length > 0; length--) text += random.pick([...'0123456789.-+eE x']);
  return text;
}

test('property: parseAmount equals the BigInt reference (seeded)', () => {
  const random = new SeededRandom(0x5eed);
  for (let round = 0; round < 200_000; round++) {
    const text = randomAmountText(random);
    check(text, random.int(AMOUNT_SCALE_MAX + 1), random.chance(0.5) ? AmountSign.Positive : AmountSign.Signed);
  }
});

test('property: canonical form of text equals the reference', () => {
  const random = new SeededRandom(77);
  const amount = new DecimalAmount();
  for (let round = 0; round < 50_000; round++) {
    const text = randomAmountText(random);
    const bytes = Buffer.from(text, 'latin1');
    const valid = readDecimalText(bytes, 0, bytes.length, amount);
    assert.equal(valid, text.length > 0 && /^-?[0-9]+(\.[0-9]+)?$/.test(text), text);
    if (!valid) continue;
    const expected = referenceCanonical(text);
    assert.equal(amount.canonicalScale, expected.scale, text);
    const fits = expected.mantissa >= I64_MIN && expected.mantissa <= I64_MAX && expected.scale <= AMOUNT_SCALE_MAX;
    assert.equal(canonicalFitsInt64(amount), fits, text);
    if (fits) assert.equal((amount.negative ? -1n : 1n) * ((BigInt(amount.magnitudeHi) << 32n) | BigInt(amount.magnitudeLo)), expected.mantissa, text);
  }
});

test('property: binary (mantissa, scale) reads like the same digits as text', () => {
  const random = new SeededRandom(78);
  const fromBinary = new DecimalAmount();
  for (let round = 0; round < 50_000; round++) {
    const mantissa = BigInt.asIntN(64, random.u64() >> BigInt(random.int(64))) * (random.chance(0.3) ? 1000n : 1n);
    const value = BigInt.asIntN(64, mantissa);
    const literalScale = random.int(AMOUNT_SCALE_MAX + 1);
    const pattern = BigInt.asUintN(64, value);
    readDecimalMantissa(Number(pattern & 0xffffffffn), Number(pattern >> 32n), literalScale, fromBinary);
    const text = literalOf(value, literalScale);
    const expected = referenceCanonical(text);
    assert.equal(fromBinary.literalScale, literalScale);
    assert.equal(fromBinary.canonicalScale, expected.scale, text);
    assert.equal((fromBinary.negative ? -1n : 1n) * ((BigInt(fromBinary.magnitudeHi) << 32n) | BigInt(fromBinary.magnitudeLo)), expected.mantissa, text);
    const currencyScale = random.int(AMOUNT_SCALE_MAX + 1);
    const code = scaleDecimal(fromBinary, currencyScale);
    const reference = referenceParse(text, currencyScale, AmountSign.Signed);
    assert.equal(code, reference.rejectCode, `${text} at ${currencyScale}`);
    if (code === RejectCode.None) assert.equal(BigInt.asIntN(64, (BigInt(fromBinary.minorHi >>> 0) << 32n) | BigInt(fromBinary.minorLo)), reference.minorUnits);
  }
});

test('formatAmount prints the canonical decimal string', () => {
  assert.equal(formatAmount(9025, 0, 2), '90.25');
  assert.equal(formatAmount(0, 0, 8), '0');
  assert.equal(formatAmount(-100_000, -1, 8), '-0.001');
  assert.equal(formatAmount(100_000_000, 0, 8), '1');
  assert.equal(formatAmount(110_000_000, 0, 8), '1.1');
  assert.equal(formatAmount(5, 0, 0), '5');
  assert.equal(formatAmountBigInt(I64_MAX, 18), '9.223372036854775807');
  assert.equal(formatAmountBigInt(I64_MIN, 18), '-9.223372036854775808');
  assert.equal(formatAmountBigInt(I64_MIN, 0), '-9223372036854775808');
  assert.equal(formatAmountBigInt(1n, 18), '0.000000000000000001');
});

test('property: formatAmount equals the reference and parses back to the same minor units', () => {
  const random = new SeededRandom(79);
  const edges = [0n, 1n, -1n, I64_MAX, I64_MIN, TWO_POW_53, TWO_POW_53 - 1n, TWO_POW_53 + 1n, -TWO_POW_53, -TWO_POW_53 - 1n, -TWO_POW_53 + 1n];
  for (let round = 0; round < 100_000; round++) {
    const value = round < edges.length * 19 ? edges[round % edges.length] : BigInt.asIntN(64, random.u64() >> BigInt(random.int(64)));
    const scale = round < edges.length * 19 ? Math.floor(round / edges.length) : random.int(AMOUNT_SCALE_MAX + 1);
    const pattern = BigInt.asUintN(64, value);
    const text = formatAmount(Number(pattern & 0xffffffffn), Number(pattern >> 32n) | 0, scale);
    assert.equal(text, referenceFormat(value, scale), `${value} at ${scale}`);
    assert.equal(formatAmountBigInt(value, scale), text);
    assert.deepEqual(parseAmount(text, scale, AmountSign.Signed), { rejectCode: RejectCode.None, minorUnits: value });
  }
});
