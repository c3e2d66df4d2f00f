// tx_ids reserved for the halves Tally itself sends of a cross-partition transfer: the credit
// `~x<partition>-<offset>` and its refund `~r<partition>-<offset>` (docs/persistence.md,
// io/durable_outcome.ts creditTxIdOf/refundTxIdOf, tally_credit_tx_id() in SQL). Both share
// the credited partition's dedup window with every client command, so a client command that
// took such a tx_id first would make the real credit a DUPLICATE_TX_ID_CONFLICT, which is
// not recorded: the credit would be lost while its transfer was reported applied. Such a
// command of any type but `credit` is therefore MALFORMED (not recorded, so the tx_id stays
// free); only this exact shape is reserved, every other tx_id keeps its meaning.

const TILDE = 0x7e;
/** Every reserved tx_id starts with '~'. */
export const RESERVED_TX_ID_FIRST_BYTE = TILDE;
const LOWER_X = 0x78;
const LOWER_R = 0x72;
const DASH = 0x2d;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

/** Whether bytes[start, start + length) is a reserved tx_id: ~x or ~r, digits, '-', digits. */
export function isReservedTxIdBytes(bytes: Uint8Array, start: number, length: number): boolean {
  if (length < 5 || bytes[start] !== TILDE) return false;
  const kind = bytes[start + 1];
  if (kind !== LOWER_X && kind !== LOWER_R) return false;
  let at = start + 2;
  const end = start + length;
  const digitsFrom = (from: number): number => {
    let to = from;
    while (to < end && bytes[to]! >= DIGIT_0 && bytes[to]! <= DIGIT_9) to++;
    return to;
  };
  const partitionEnd = digitsFrom(at);
  if (partitionEnd === at || partitionEnd >= end || bytes[partitionEnd] !== DASH) return false;
  at = partitionEnd + 1;
  const offsetEnd = digitsFrom(at);
  return offsetEnd > at && offsetEnd === end;
}

export function isReservedTxId(txId: string): boolean {
  const bytes = Buffer.from(txId, 'utf8');
  return isReservedTxIdBytes(bytes, 0, bytes.length);
}
