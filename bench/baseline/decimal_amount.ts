// The baseline's amounts: decimal strings of the contract to BigInt minor units of the
// currency's scale and back, the way a team stores money as integers of cents.

const DECIMAL = /^(-?)(\d{1,19})(?:\.(\d{1,18}))?$/;
const INT64_MAX = (1n << 63n) - 1n;

/** Minor units of `text` at `scale`, or undefined if it is malformed, has more digits than the scale, or leaves the i64 range. */
export function parseAmount(text: unknown, scale: number): bigint | undefined {
  if (typeof text !== 'string') return undefined;
  const match = DECIMAL.exec(text);
  if (match === null) return undefined;
  const fraction = match[3] ?? '';
  if (fraction.length > scale) return undefined;
  const magnitude = BigInt(match[2]!) * 10n ** BigInt(scale) + BigInt(fraction.padEnd(scale, '0') || '0');
  if (magnitude > INT64_MAX) return undefined;
  return match[1] === '-' ? -magnitude : magnitude;
}

export function formatAmount(minor: bigint, scale: number): string {
  const negative = minor < 0n;
  const digits = (negative ? -minor : minor).toString().padStart(scale + 1, '0');
  const integer = digits.slice(0, digits.length - scale);
  const fraction = scale === 0 ? '' : digits.slice(digits.length - scale).replace(/0+$/, '');
  return `${negative ? '-' : ''}${integer}${fraction === '' ? '' : `.${fraction}`}`;
}
