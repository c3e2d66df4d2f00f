// A Disruptor-style ring of fixed-size slots in a SharedArrayBuffer, for one producer
// thread and one consumer thread.
//
// Two SharedArrayBuffers make a ring: `data` holds slotCount × slotBytes bytes of slots,
// `control` holds the configuration and the two sequences (ring_layout.ts). Both travel to
// another worker_thread inside the plain `descriptor` object (workerData or postMessage
// share SharedArrayBuffers, they do not copy them); RingBuffer.attach(descriptor) rebuilds
// the ring there. The ring itself does not interpret slots: callers make their own typed
// views over `data` and find a slot with slotOffset(sequence).
//
// Roles. One thread acquires the Sequencer (producer side), one the SequenceBarrier
// (consumer side); the roles word in the control block makes a second acquisition fail
// loudly instead of silently breaking the single-producer / single-consumer assumption.

import {
  CONTROL_BYTES,
  CONTROL_MAGIC,
  CONTROL_VERSION,
  CONSUMER_SEQUENCE_OFFSET,
  INITIAL_SEQUENCE_OFFSET,
  MAGIC_OFFSET,
  PRODUCER_SEQUENCE_OFFSET,
  ROLES_OFFSET,
  ROLE_BARRIER,
  ROLE_SEQUENCER,
  SLOT_BYTES_OFFSET,
  SLOT_COUNT_MAX,
  SLOT_COUNT_OFFSET,
  VERSION_OFFSET,
  int32Index,
} from './ring_layout';
import { Sequence, SEQUENCE_MAX } from './sequence';
import { SequenceBarrier } from './sequence_barrier';
import { Sequencer } from './sequencer';
import type { WaitStrategy } from './wait_strategy';

export interface RingBufferOptions {
  /** A power of two in [1, 2^30]. */
  readonly slotCount: number;
  /** A positive multiple of 8, so 64-bit fields can be aligned inside every slot. */
  readonly slotBytes: number;
  /** The first sequence to be claimed (default 0); at most 2^53 - 1. */
  readonly initialSequence?: number;
}

/** Everything another thread needs to attach; structured-cloneable, shares the memory. */
export interface RingBufferDescriptor {
  readonly control: SharedArrayBuffer;
  readonly data: SharedArrayBuffer;
}

const DATA_BYTES_MAX = 2 ** 31;

export class RingBuffer {
  readonly slotCount: number;
  readonly slotBytes: number;
  readonly initialSequence: number;
  readonly control: SharedArrayBuffer;
  /** The slots: slotCount × slotBytes bytes. Make typed views over it. */
  readonly data: SharedArrayBuffer;
  /** slotCount - 1: sequence & mask is the slot index (exact up to 2^53, see sequence.ts). */
  readonly mask: number;
  private readonly cursor: Sequence;
  private readonly consumerSequence: Sequence;

  private constructor(descriptor: RingBufferDescriptor) {
    const view = new DataView(descriptor.control);
    this.control = descriptor.control;
    this.data = descriptor.data;
    this.slotCount = view.getUint32(SLOT_COUNT_OFFSET, true);
    this.slotBytes = view.getUint32(SLOT_BYTES_OFFSET, true);
    this.initialSequence = view.getFloat64(INITIAL_SEQUENCE_OFFSET, true);
    this.mask = this.slotCount - 1;
    this.cursor = new Sequence(this.control, PRODUCER_SEQUENCE_OFFSET);
    this.consumerSequence = new Sequence(this.control, CONSUMER_SEQUENCE_OFFSET);
  }

  /** Allocates a new ring. Call from the thread that sets the system up. */
  static create(options: RingBufferOptions): RingBuffer {
    const { slotCount, slotBytes } = options;
    const initialSequence = options.initialSequence ?? 0;
    assertOptions(slotCount, slotBytes, initialSequence);
    const control = new SharedArrayBuffer(CONTROL_BYTES);
    const data = new SharedArrayBuffer(slotCount * slotBytes);
    const view = new DataView(control);
    view.setUint32(MAGIC_OFFSET, CONTROL_MAGIC, true);
    view.setUint32(VERSION_OFFSET, CONTROL_VERSION, true);
    view.setUint32(SLOT_COUNT_OFFSET, slotCount, true);
    view.setUint32(SLOT_BYTES_OFFSET, slotBytes, true);
    view.setFloat64(INITIAL_SEQUENCE_OFFSET, initialSequence, true);
    // Both sequences start just before the first slot: nothing published, nothing consumed.
    new Sequence(control, PRODUCER_SEQUENCE_OFFSET).set(initialSequence - 1);
    new Sequence(control, CONSUMER_SEQUENCE_OFFSET).set(initialSequence - 1);
    return new RingBuffer({ control, data });
  }

  /** Rebuilds a ring from a descriptor, typically in another worker_thread. */
  static attach(descriptor: RingBufferDescriptor): RingBuffer {
    const { control, data } = descriptor;
    if (!(control instanceof SharedArrayBuffer) || !(data instanceof SharedArrayBuffer)) throw new TypeError('ring descriptor needs two SharedArrayBuffers');
    if (control.byteLength !== CONTROL_BYTES) throw new Error(`ring control block is ${control.byteLength} bytes, expected ${CONTROL_BYTES}`);
    const view = new DataView(control);
    if (view.getUint32(MAGIC_OFFSET, true) !== CONTROL_MAGIC || view.getUint32(VERSION_OFFSET, true) !== CONTROL_VERSION) {
      throw new Error('ring control block has a wrong magic or version');
    }
    const ring = new RingBuffer(descriptor);
    if (data.byteLength !== ring.slotCount * ring.slotBytes) throw new Error('ring data size does not match its control block');
    return ring;
  }

  /** The plain object to hand to another thread (workerData or postMessage). */
  get descriptor(): RingBufferDescriptor {
    return { control: this.control, data: this.data };
  }

  /** The slot index of a sequence. */
  slotIndex(sequence: number): number {
    return sequence & this.mask;
  }

  /** The byte offset of a sequence's slot in `data`. */
  slotOffset(sequence: number): number {
    return (sequence & this.mask) * this.slotBytes;
  }

  /** Takes the producer role; throws if another Sequencer holds it. */
  acquireSequencer(waitStrategy: WaitStrategy): Sequencer {
    this.acquireRole(ROLE_SEQUENCER, 'sequencer');
    return new Sequencer(this.control, this.slotCount, waitStrategy);
  }

  /** Takes the consumer role; throws if another SequenceBarrier holds it. */
  acquireBarrier(waitStrategy: WaitStrategy): SequenceBarrier {
    this.acquireRole(ROLE_BARRIER, 'sequence barrier');
    return new SequenceBarrier(this.control, this.slotCount, waitStrategy);
  }

  /** The producer's cursor as last written; a racy snapshot, for metrics. */
  publishedSequence(): number {
    return this.cursor.value();
  }

  /** The consumer's sequence as last written; a racy snapshot, for metrics. */
  consumedSequence(): number {
    return this.consumerSequence.value();
  }

  private acquireRole(role: number, what: string): void {
    const before = Atomics.or(new Int32Array(this.control), int32Index(ROLES_OFFSET), role);
    if ((before & role) !== 0) throw new Error(`ring already has a ${what}: single producer, single consumer only`);
  }
}

function assertOptions(slotCount: number, slotBytes: number, initialSequence: number): void {
  if (!Number.isInteger(slotCount) || slotCount < 1 || slotCount > SLOT_COUNT_MAX || (slotCount & (slotCount - 1)) !== 0) {
    throw new RangeError(`slotCount must be a power of two in [1, 2^30], got ${slotCount}`);
  }
  if (!Number.isInteger(slotBytes) || slotBytes < 8 || slotBytes % 8 !== 0) {
    throw new RangeError(`slotBytes must be a positive multiple of 8, got ${slotBytes}`);
  }
  if (slotCount * slotBytes > DATA_BYTES_MAX) throw new RangeError(`ring data would exceed ${DATA_BYTES_MAX} bytes`);
  if (!Number.isInteger(initialSequence) || initialSequence < 0 || initialSequence > SEQUENCE_MAX) {
    throw new RangeError(`initialSequence must be an integer in [0, 2^53 - 1], got ${initialSequence}`);
  }
}
