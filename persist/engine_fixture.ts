// For tests and benches of persistence: a BalanceEngine applying commands on the calling
// thread straight into a real output ring (RingBuffer + Sequencer), so the flush path reads
// exactly the slots the engine worker would have written. Commands are given as fields
// (CommandSlotWriter) with Kafka offsets assigned per partition in order. Allocates per
// command: control plane only.

import { BalanceEngine } from '../engine/balance_engine';
import { BalanceTable } from '../engine/balance_table';
import { COMMAND_SLOT_BYTES } from '../engine/command_layout';
import { CommandFields, CommandSlotWriter } from '../engine/command_slot_writer';
import { OUTPUT_SLOT_BYTES, OutputRegion } from '../engine/output_layout';
import { RingBuffer, Sequencer, YieldingWaitStrategy } from '../ringbuffer';

/** The output ring as an OutputRegion that never waits: a full ring is the fixture's sizing error. */
class RingOutputRegion implements OutputRegion {
  readonly buffer: ArrayBufferLike;

  constructor(private readonly ring: RingBuffer, private readonly sequencer: Sequencer) {
    this.buffer = ring.data;
  }

  claim(slotCount: number): number {
    const first = this.sequencer.tryClaim(slotCount);
    if (first < 0) throw new Error(`engine fixture: output ring of ${this.ring.slotCount} slots is full`);
    return first;
  }

  slotByteOffset(position: number): number {
    return this.ring.slotOffset(position);
  }
}

export interface InProcessEngineOptions {
  readonly outputSlotCount: number;
  readonly balanceCapacity: number;
  readonly dedupWindow: number;
  readonly partitions: readonly number[];
}

export type FixtureCommand = Omit<CommandFields, 'kafkaOffset'> & { readonly kafkaOffset?: number };

export class InProcessEngine {
  readonly ring: RingBuffer;
  readonly table: BalanceTable;
  readonly engine: BalanceEngine;
  private readonly sequencer: Sequencer;
  private readonly commands = new SharedArrayBuffer(COMMAND_SLOT_BYTES);
  private readonly writer = new CommandSlotWriter(this.commands);
  private readonly nextOffsets = new Map<number, number>();

  constructor(options: InProcessEngineOptions) {
    this.ring = RingBuffer.create({ slotCount: options.outputSlotCount, slotBytes: OUTPUT_SLOT_BYTES });
    this.sequencer = this.ring.acquireSequencer(new YieldingWaitStrategy(100));
    this.table = BalanceTable.create({ capacity: options.balanceCapacity });
    this.engine = new BalanceEngine({ table: this.table, commands: this.commands, output: new RingOutputRegion(this.ring, this.sequencer) });
    for (const partition of options.partitions) this.engine.assignPartition(partition, { dedupWindow: options.dedupWindow });
  }

  /** Applies one command; returns the ring position of its outcome slot. Not visible until publish(). */
  apply(command: FixtureCommand): number {
    const kafkaOffset = command.kafkaOffset ?? this.nextOffsets.get(command.partition) ?? 0;
    this.nextOffsets.set(command.partition, kafkaOffset + 1);
    this.writer.write(0, { ...command, kafkaOffset });
    const position = this.sequencer.claimedSequence + 1;
    this.engine.apply(0);
    return position;
  }

  /** Makes every applied command's output visible to the ring's consumer. */
  publish(): void {
    if (this.sequencer.claimedSequence > this.sequencer.cursorSequence) this.sequencer.publish(this.sequencer.claimedSequence);
  }

  /** The next Kafka offset the fixture would give the partition. */
  nextOffsetOf(partition: number): number {
    return this.nextOffsets.get(partition) ?? 0;
  }
}
