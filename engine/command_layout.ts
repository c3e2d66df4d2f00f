// The decoded command as it travels through the command ring: one fixed-size slot per
// command. Decoders (io/, engine/json_codec.ts, engine/binary_codec.ts) write it; the
// engine reads it. Declared once here so both sides agree on every byte.
//
// All integers are little-endian. 64-bit integers are stored as two 32-bit words
// (low word first, then high word), which is exactly the in-memory layout of a
// BigInt64Array/BigUint64Array element, so a slot can be read either through
// Uint32Array/Int32Array views (no allocation) or through a BigInt64Array view.
//
//  offset  size  field
//  ------  ----  --------------------------------------------------------------
//     0      1   type            CommandType (0 = unparseable)
//     1      1   rejectCode      RejectCode set by the decoder (0 = none): MALFORMED,
//                                BAD_AMOUNT, AMOUNT_OVERFLOW, UNKNOWN_CURRENCY
//     2      1   legCount        settle only: number of legs (1..SETTLE_LEGS_MAX)
//     3      1   txIdLength      bytes of tx_id in TX_ID (0 = no usable tx_id)
//     4      4   partition       Kafka partition the command was read from (u32)
//     8      8   offset          Kafka offset (float64; exact below 2^53)
//    16      8   payloadHash     64-bit hash of the canonical payload (u32 lo, u32 hi)
//    24      8   txIdHash        64-bit hash of the tx_id bytes (u32 lo, u32 hi)
//    32      8   account         account / transfer `from` / settle user / credit account (u64)
//    40      8   counterAccount  transfer `to` (u64); 0 otherwise
//    48      4   currency        currency id from the registry (u32)
//    52      2   accountHome     home partition of `account` (u16), computed by the decoder
//    54      2   counterHome     home partition of `counterAccount` (u16)
//    56      8   amount          minor units (i64); > 0 for the single-amount types
//    64     64   txId            tx_id bytes (ASCII/UTF-8), zero padded
//   128    384   legs[12]        settle legs, LEG_BYTES each:
//                                  +0  account (u64)
//                                  +8  currency id (u32)
//                                 +12  home partition of the leg's account (u32)
//                                 +16  available delta (i64)
//                                 +24  frozen delta (i64)
//   512          end of slot
//
//  ┌type┬rej┬legs┬txlen┬partition┬ offset ┬ payloadHash ┬ txIdHash ┬ account ┬ counter ┬cur┬hm┬hm┬amount┐
//  │ 1  │ 1 │ 1  │  1  │    4    │   8    │      8      │    8     │    8    │    8    │ 4 │2 │2 │  8   │
//  ├────┴───┴────┴─────┴─────────┴────────┴─────────────┴──────────┴─────────┴─────────┴───┴───┴────────┤
//  │ txId[64]                                                                                            │
//  ├─────────────────────────────────────────────────────────────────────────────────────────────────────┤
//  │ leg[0..11]: account(8) currency(4) home(4) availableDelta(8) frozenDelta(8)                            │
//  └─────────────────────────────────────────────────────────────────────────────────────────────────────┘

export const enum CommandType {
  Unparseable = 0,
  Deposit = 1,
  Withdraw = 2,
  Freeze = 3,
  Unfreeze = 4,
  Transfer = 5,
  Settle = 6,
  /**
   * The second half of a transfer whose `to` lives on another partition: moves the amount
   * from the partition's transit account (3) to `account`. Shaped like a deposit.
   */
  Credit = 7,
}

/**
 * Every offset and size of the slot, declared once. A const enum because TypeScript
 * inlines its members as literals, while each use of an exported `const` compiles to a
 * property load on the module object; the decoders' hot paths use these members
 * (measured: about 4% of a binary decode). The named constants below are the same values
 * for everyone else.
 */
export const enum SlotLayout {
  SlotBytes = 512,
  TypeOffset = 0,
  RejectCodeOffset = 1,
  LegCountOffset = 2,
  TxIdLengthOffset = 3,
  PartitionOffset = 4,
  KafkaOffsetOffset = 8,
  PayloadHashOffset = 16,
  TxIdHashOffset = 24,
  AccountOffset = 32,
  CounterAccountOffset = 40,
  CurrencyOffset = 48,
  AccountHomeOffset = 52,
  CounterHomeOffset = 54,
  AmountOffset = 56,
  TxIdOffset = 64,
  TxIdBytesMax = 64,
  LegsOffset = 128,
  LegBytes = 32,
  LegAccountOffset = 0,
  LegCurrencyOffset = 8,
  LegHomeOffset = 12,
  LegAvailableDeltaOffset = 16,
  LegFrozenDeltaOffset = 24,
  SettleLegsMax = 12,
}

export const COMMAND_SLOT_BYTES = SlotLayout.SlotBytes;

export const TYPE_OFFSET = SlotLayout.TypeOffset;
export const REJECT_CODE_OFFSET = SlotLayout.RejectCodeOffset;
export const LEG_COUNT_OFFSET = SlotLayout.LegCountOffset;
export const TX_ID_LENGTH_OFFSET = SlotLayout.TxIdLengthOffset;
export const PARTITION_OFFSET = SlotLayout.PartitionOffset;
export const KAFKA_OFFSET_OFFSET = SlotLayout.KafkaOffsetOffset;
export const PAYLOAD_HASH_OFFSET = SlotLayout.PayloadHashOffset;
export const TX_ID_HASH_OFFSET = SlotLayout.TxIdHashOffset;
export const ACCOUNT_OFFSET = SlotLayout.AccountOffset;
export const COUNTER_ACCOUNT_OFFSET = SlotLayout.CounterAccountOffset;
export const CURRENCY_OFFSET = SlotLayout.CurrencyOffset;
export const ACCOUNT_HOME_OFFSET = SlotLayout.AccountHomeOffset;
export const COUNTER_HOME_OFFSET = SlotLayout.CounterHomeOffset;
export const AMOUNT_OFFSET = SlotLayout.AmountOffset;
export const TX_ID_OFFSET = SlotLayout.TxIdOffset;
export const TX_ID_BYTES_MAX = SlotLayout.TxIdBytesMax;
export const LEGS_OFFSET = SlotLayout.LegsOffset;

export const LEG_BYTES = SlotLayout.LegBytes;
export const LEG_ACCOUNT_OFFSET = SlotLayout.LegAccountOffset;
export const LEG_CURRENCY_OFFSET = SlotLayout.LegCurrencyOffset;
export const LEG_HOME_OFFSET = SlotLayout.LegHomeOffset;
export const LEG_AVAILABLE_DELTA_OFFSET = SlotLayout.LegAvailableDeltaOffset;
export const LEG_FROZEN_DELTA_OFFSET = SlotLayout.LegFrozenDeltaOffset;
export const SETTLE_LEGS_MAX = SlotLayout.SettleLegsMax;

function assertLayout(): void {
  if (TX_ID_OFFSET + TX_ID_BYTES_MAX !== LEGS_OFFSET) throw new Error('command layout: txId must end where legs begin');
  if (LEGS_OFFSET + SETTLE_LEGS_MAX * LEG_BYTES !== COMMAND_SLOT_BYTES) throw new Error('command layout: legs must fill the slot');
  for (const offset of [KAFKA_OFFSET_OFFSET, PAYLOAD_HASH_OFFSET, TX_ID_HASH_OFFSET, ACCOUNT_OFFSET, COUNTER_ACCOUNT_OFFSET, AMOUNT_OFFSET, LEGS_OFFSET]) {
    if (offset % 8 !== 0) throw new Error(`command layout: 64-bit field at ${offset} is not 8-byte aligned`);
  }
  if (COMMAND_SLOT_BYTES % 64 !== 0) throw new Error('command layout: slot must be a whole number of cache lines');
}
assertLayout();
