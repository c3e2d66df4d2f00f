// The control block of a ring: one small SharedArrayBuffer that sits beside the data
// SharedArrayBuffer and holds the ring's configuration and its two sequences. Declared once
// here so every thread that attaches agrees on every byte.
//
// Why 128 bytes between the sequences and not 64: a SharedArrayBuffer's base address is
// only guaranteed to be 16-byte aligned (V8 allocates backing stores with calloc), so we
// cannot place a field at the start of a cache line. With each 16-byte sequence record at a
// multiple of 128 bytes from the others, each record lies inside one 64-byte line and no two
// records share a line, whatever the base alignment; the extra line also defeats the
// adjacent-line prefetcher that would otherwise couple neighbouring lines, as in the LMAX
// Disruptor's 128-byte padding.
//
//  byte    0 ┌─ line group 0: configuration, written once at create, read-mostly ──────────┐
//            │ magic u32 │ version u32 │ slotCount u32 │ slotBytes u32 │ initialSequence f64 │
//         24 │ roles i32 (bit 0: a sequencer is acquired, bit 1: a barrier is acquired)    │
//        128 ├─ line group 1: producer cursor, written by the producer only ───────────────┤
//            │ low i32 │ sleepers i32 │ value f64 │                                 padding │
//        256 ├─ line group 2: consumer sequence, written by the consumer only ─────────────┤
//            │ low i32 │ sleepers i32 │ value f64 │                                 padding │
//        384 └─ end ───────────────────────────────────────────────────────────────────────┘
//
// A sequence record (see sequence.ts):
//   low       the low 32 bits of the sequence; the only word read across threads in the hot
//             path, always through Atomics, so it carries the happens-before edge that makes
//             slot contents visible. Also the word Atomics.wait / Atomics.notify use.
//   sleepers  how many threads are blocked in Atomics.wait on `low`; the writer calls
//             Atomics.notify only when it is non-zero, so publishing costs no syscall or
//             futex lock unless somebody actually sleeps.
//   value     the full sequence as a float64, written just before `low`; read by the owner
//             when it (re)attaches and by metrics. Never used to synchronise.

export const CONTROL_MAGIC = 0x52494e47; // 'RING'
export const CONTROL_VERSION = 1;

export const MAGIC_OFFSET = 0;
export const VERSION_OFFSET = 4;
export const SLOT_COUNT_OFFSET = 8;
export const SLOT_BYTES_OFFSET = 12;
export const INITIAL_SEQUENCE_OFFSET = 16;
export const ROLES_OFFSET = 24;

export const PRODUCER_SEQUENCE_OFFSET = 128;
export const CONSUMER_SEQUENCE_OFFSET = 256;
export const CONTROL_BYTES = 384;

/** Byte offsets inside one sequence record. */
export const SEQUENCE_LOW_OFFSET = 0;
export const SEQUENCE_SLEEPERS_OFFSET = 4;
export const SEQUENCE_VALUE_OFFSET = 8;
export const SEQUENCE_RECORD_BYTES = 16;
/** Sequence records are this far apart so that each owns a cache line (see above). */
export const SEQUENCE_SPACING_BYTES = 128;

export const ROLE_SEQUENCER = 1;
export const ROLE_BARRIER = 2;

/** The largest slot count: keeps every sequence difference inside a signed 32-bit word. */
export const SLOT_COUNT_MAX = 2 ** 30;

/** Int32Array index of a byte offset (the offset must be 4-byte aligned). */
export function int32Index(byteOffset: number): number {
  return byteOffset >>> 2;
}

/** Float64Array index of a byte offset (the offset must be 8-byte aligned). */
export function float64Index(byteOffset: number): number {
  return byteOffset >>> 3;
}

function assertControlLayout(): void {
  const fail = (why: string): never => {
    throw new Error(`ring control layout: ${why}`);
  };
  if (INITIAL_SEQUENCE_OFFSET % 8 !== 0) fail('initialSequence must be 8-byte aligned');
  if (ROLES_OFFSET + 4 > PRODUCER_SEQUENCE_OFFSET) fail('configuration overlaps the producer cursor');
  if (SEQUENCE_VALUE_OFFSET % 8 !== 0) fail('sequence value must be 8-byte aligned');
  if (SEQUENCE_SLEEPERS_OFFSET !== SEQUENCE_LOW_OFFSET + 4) fail('sleepers must follow low (wait strategies rely on it)');
  if (SEQUENCE_VALUE_OFFSET + 8 !== SEQUENCE_RECORD_BYTES) fail('sequence record size is wrong');
  // A 16-byte record at a 16-aligned address never straddles a 64-byte line.
  if (SEQUENCE_RECORD_BYTES > 16) fail('sequence record must fit 16 bytes to stay inside one line');
  for (const offset of [PRODUCER_SEQUENCE_OFFSET, CONSUMER_SEQUENCE_OFFSET]) {
    if (offset % SEQUENCE_SPACING_BYTES !== 0) fail(`sequence record at ${offset} is not on a 128-byte boundary`);
  }
  if (CONSUMER_SEQUENCE_OFFSET - PRODUCER_SEQUENCE_OFFSET < SEQUENCE_SPACING_BYTES) fail('sequences too close');
  if (CONTROL_BYTES - CONSUMER_SEQUENCE_OFFSET < SEQUENCE_SPACING_BYTES) fail('consumer sequence needs trailing padding');
}
assertControlLayout();
