// Reads the result events of the system under test (ARCHITECTURE.md section 3) with the
// project's Kafka client and charges each to the command it answers, found by its tx_id
// `p<phase>-<index>` (e2e_workload.ts): latency = event seen − intended send time (fixed
// schedule) or − actual send time (window mode), into an HDR histogram per phase.
//
// Events are matched by scanning the message bytes for the tx_id, not by JSON.parse: at
// 150 000 events/s a parse per event would make this listener, not the system under test,
// the bottleneck on a 2-core machine. One clock reading per consumed batch times every
// event of the batch (a batch is handled in well under a millisecond).
//
// The listener reads with the project's native consumer (io/native_consumer.ts), as Tally
// reads its commands: through the JavaScript binding each event cost this process about 6 µs
// of CPU (an object per message), taken from the two cores the systems under test share with
// it. consume() never blocks; with nothing fetched it looks again after 1 ms, so an event is
// charged at most about a millisecond after librdkafka has it (both systems alike).

import * as hdr from 'hdr-histogram-js';
import { ConsumerHandle, RECORD_HEADER_BYTES, RECORD_VALUE_BYTES_AT, VALUE_OVERSIZED, configPairs, nativeConsumer } from '../../io/native_consumer';
import { uniqueName } from '../../io/test_services';
import { LoadPlan, nowUs } from './load_plan';

const CONSUME_BATCH_MAX = 4096;
const RECORDS_BYTES = 8 << 20;
const IDLE_POLL_MS = 1;
const TX_ID_FIELD = Buffer.from('"tx_id":"p');
const ACCEPTED = Buffer.from('"status":"accepted"');
const REASON_FIELD = Buffer.from('"reason":"');
const QUOTE = 0x22;
const DASH = 0x2d;

export interface PhaseRecord {
  readonly plan: LoadPlan;
  /** Latency from the intended send time (fixed) or the send time (window, preload), µs. */
  readonly latencyUs: hdr.Histogram;
  /** Fixed mode only: latency from the actual send time, which hides coordinated omission. */
  readonly uncorrectedUs: hdr.Histogram;
  received: number;
  accepted: number;
  duplicates: number;
  readonly rejectReasons: Map<string, number>;
  firstEventUs: number;
  lastEventUs: number;
  /** Events seen per second since the plan's start: the timeline of durable throughput. */
  readonly perSecond: number[];
  /** One flag per command index: its event has been seen. */
  readonly seen: Uint8Array;
  /** When each command was actually sent (µs), filled by the load generator. */
  readonly sendTimes: Float64Array;
}

export class ResultEventListener {
  private readonly native = nativeConsumer();
  private readonly consumer: ConsumerHandle;
  private readonly records = Buffer.allocUnsafe(RECORDS_BYTES);
  private readonly phases = new Map<number, PhaseRecord>();
  private running = false;
  private stopped: (() => void) | undefined;
  unmatched = 0;
  /** Events whose command's send time had not been announced yet (never expected: it is announced before the send). */
  unknownSendTimes = 0;

  constructor(
    private readonly brokers: string,
    topic: string,
    private readonly partitions: number,
  ) {
    this.consumer = this.native.create(configPairs({
      'bootstrap.servers': brokers, 'group.id': uniqueName('e2e-listener'), 'enable.auto.commit': false, 'auto.offset.reset': 'earliest',
      // A fetch returns as soon as one byte is there (fetch.min.bytes), so a long wait costs no
      // latency; a short one only makes the shared broker answer empty fetches all the time.
      'fetch.wait.max.ms': 100, 'fetch.min.bytes': 1, 'max.partition.fetch.bytes': 8388608, 'queued.max.messages.kbytes': 65536,
    }), topic, false);
  }

  async connect(): Promise<void> {
    try {
      await this.native.probe(this.consumer, 15_000);
    } catch (error) {
      throw new Error(`listener cannot reach Kafka at ${this.brokers}: ${(error as Error).message}`);
    }
    const partitions = Array.from({ length: this.partitions }, (_, partition) => partition);
    this.native.incrementalAssign(this.consumer, partitions, partitions.map(() => 0));
    this.running = true;
    this.poll();
  }

  /** Starts charging events of `plan.phase`; call before the phase's first command is sent. */
  expect(plan: LoadPlan, sendTimes: Float64Array): PhaseRecord {
    const record: PhaseRecord = {
      plan, sendTimes, received: 0, accepted: 0, duplicates: 0, rejectReasons: new Map(), firstEventUs: 0, lastEventUs: 0, perSecond: [],
      latencyUs: hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 }),
      uncorrectedUs: hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 }),
      seen: new Uint8Array(plan.count),
    };
    this.phases.set(plan.phase, record);
    return record;
  }

  disconnect(): Promise<void> {
    if (!this.running) return Promise.resolve();
    this.running = false;
    return new Promise((resolve) => {
      this.stopped = () => {
        this.native.close(this.consumer);
        resolve();
      };
    });
  }

  private poll(): void {
    if (!this.running) {
      this.stopped?.();
      return;
    }
    for (const error of this.native.takeErrors(this.consumer)) console.error(`listener: ${error}`);
    const bytes = this.native.consume(this.consumer, this.records, CONSUME_BATCH_MAX);
    if (bytes === 0) {
      setTimeout(() => this.poll(), IDLE_POLL_MS);
      return;
    }
    this.charge(bytes, nowUs());
    setImmediate(() => this.poll());
  }

  private charge(bytes: number, now: number): void {
    const records = this.records;
    for (let next = 0; next < bytes;) {
      const valueBytes = records.readUInt32LE(next + RECORD_VALUE_BYTES_AT);
      const start = next + RECORD_HEADER_BYTES;
      next = start + (valueBytes === VALUE_OVERSIZED ? 0 : valueBytes);
      if (valueBytes === VALUE_OVERSIZED) {
        this.unmatched++;
        continue;
      }
      const value = records.subarray(start, next);
      // Both systems write the tx_id first; anything else is searched for.
      const at = startsWith(value, TX_ID_FIELD, 1) ? 1 : value.indexOf(TX_ID_FIELD);
      if (at < 0) {
        this.unmatched++;
        continue;
      }
      let position = at + TX_ID_FIELD.length;
      let phase = 0;
      for (; position < value.length && value[position] !== DASH; position++) phase = phase * 10 + value[position]! - 0x30;
      let index = 0;
      for (position++; position < value.length && value[position] !== QUOTE; position++) index = index * 10 + value[position]! - 0x30;
      const record = this.phases.get(phase);
      if (record === undefined || index >= record.seen.length) {
        this.unmatched++;
        continue;
      }
      this.record(record, value, position + 1, index, now);
    }
  }

  /** `afterTxId`: where the tx_id's value ended, where the status usually follows. */
  private record(record: PhaseRecord, value: Buffer, afterTxId: number, index: number, now: number): void {
    if (record.seen[index] === 1) {
      record.duplicates++;
      return;
    }
    record.seen[index] = 1;
    const plan = record.plan;
    const sentUs = record.sendTimes[index]!;
    if (sentUs === 0) this.unknownSendTimes++;
    const fromUs = plan.mode === 'fixed' ? plan.startUs + (index * 1e6) / plan.rate : sentUs;
    record.latencyUs.recordValue(Math.max(1, Math.round(now - fromUs)));
    if (plan.mode === 'fixed') record.uncorrectedUs.recordValue(Math.max(1, Math.round(now - sentUs)));
    if (startsWith(value, ACCEPTED, afterTxId + 1) || value.indexOf(ACCEPTED) >= 0) record.accepted++;
    else {
      const reasonAt = value.indexOf(REASON_FIELD);
      const reason = reasonAt < 0 ? '?' : value.toString('latin1', reasonAt + REASON_FIELD.length, value.indexOf(QUOTE, reasonAt + REASON_FIELD.length));
      record.rejectReasons.set(reason, (record.rejectReasons.get(reason) ?? 0) + 1);
    }
    if (record.received === 0) record.firstEventUs = now;
    record.lastEventUs = now;
    const second = Math.max(0, Math.floor((now - plan.startUs) / 1e6));
    record.perSecond[second] = (record.perSecond[second] ?? 0) + 1;
    record.received++;
  }
}

function startsWith(value: Buffer, prefix: Buffer, at: number): boolean {
  if (at + prefix.length > value.length) return false;
  for (let index = 0; index < prefix.length; index++) if (value[at + index] !== prefix[index]) return false;
  return true;
}
