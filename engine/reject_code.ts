// Stable rejection codes of the public contract (ARCHITECTURE.md section 3). The numeric
// values travel in ring slots and the database; the names travel on the wire. Append only:
// never renumber or reuse a value.

export const enum RejectCode {
  None = 0,
  Malformed = 1,
  BadAmount = 2,
  AmountOverflow = 3,
  UnknownCurrency = 4,
  InsufficientAvailable = 5,
  InsufficientFrozen = 6,
  LegsNotBalanced = 7,
  WrongPartition = 8,
  DuplicateTxIdConflict = 9,
  BalanceTableFull = 10,
}

const REJECT_CODE_NAMES: readonly string[] = [
  'NONE',
  'MALFORMED',
  'BAD_AMOUNT',
  'AMOUNT_OVERFLOW',
  'UNKNOWN_CURRENCY',
  'INSUFFICIENT_AVAILABLE',
  'INSUFFICIENT_FROZEN',
  'LEGS_NOT_BALANCED',
  'WRONG_PARTITION',
  'DUPLICATE_TX_ID_CONFLICT',
  'BALANCE_TABLE_FULL',
];

export function rejectCodeName(code: number): string {
  const name = REJECT_CODE_NAMES[code];
  if (name === undefined) throw new Error(`unknown reject code ${code}`);
  return name;
}

export function rejectCodeFromName(name: string): RejectCode | undefined {
  const index = REJECT_CODE_NAMES.indexOf(name);
  return index < 0 ? undefined : (index as RejectCode);
}
