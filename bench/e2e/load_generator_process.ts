// The load generator's own process: produces the workload's commands to the commands topic
// on the plan's schedule, so that the listener's work on the benchmark's main thread never
// delays a send (and a delay it did cause would still be charged, since latency runs from the
// intended send time). A process rather than a worker thread because the Kafka binding is a
// native addon that loads in one thread per process only.
//
// The producer is configured like an upstream service's (io/command_producer.ts: keyed by
// the debited account, murmur2_random, idempotent) but without per-message delivery reports:
// at 100 000+ commands/s a JavaScript callback per message would cost the generator a large
// share of a core on a 2-core machine. A lost message still shows: its result event never
// arrives and the phase reports it missing.
//
// IPC protocol (see load_generator.ts): in, {plan}, {completed}, {abort} and {stop}; out, {ready},
// {chunk: [phase, firstIndex, count, sendUs]} BEFORE the chunk is produced, {report}, {error}.

import Kafka from '@confluentinc/kafka-javascript';
import { stopPolling } from '../../io/command_producer';
import { E2eWorkload } from './e2e_workload';
import { LoadPlan, LoadReport, nowUs } from './load_plan';

export interface LoadGeneratorInit {
  readonly brokers: string;
  readonly topic: string;
  readonly accounts: number;
  readonly lingerMs: number;
}

const CHUNK_COMMANDS_MAX = 512;
const IDLE_WAIT_MS = 1;
/** librdkafka copies each payload (RK_MSG_COPY), so commands are encoded into one reused slab. */
const SLAB_BYTES = 1 << 20;
const COMMAND_BYTES_MAX = 2048;

const init = JSON.parse(process.env['E2E_LOAD_GENERATOR'] ?? '{}') as LoadGeneratorInit;
const workload = new E2eWorkload(init.accounts);
/** Result events the benchmark has seen so far, per phase (window and preload modes). */
const completed = new Map<number, number>();
/** Phases the benchmark gave up on: their sending stops at once. */
const aborted = new Set<number>();
const slab = Buffer.allocUnsafe(SLAB_BYTES);
let slabPosition = 0;

/** The command's UTF-8 bytes, as a view of the slab valid until the next call wraps around. */
function encode(text: string): Buffer {
  if (slabPosition + COMMAND_BYTES_MAX > SLAB_BYTES) slabPosition = 0;
  const length = slab.write(text, slabPosition, COMMAND_BYTES_MAX, 'utf8');
  const view = slab.subarray(slabPosition, slabPosition + length);
  slabPosition += length;
  return view;
}

function send(message: unknown): void {
  process.send!(message);
}

function connect(): Promise<Kafka.Producer> {
  const producer = new Kafka.Producer({
    'bootstrap.servers': init.brokers,
    'enable.idempotence': true,
    'linger.ms': init.lingerMs,
    'queue.buffering.max.messages': 1_000_000,
    'batch.num.messages': 10_000,
    partitioner: 'murmur2_random',
    // No delivery report per message: polling for them cost the generator more than producing.
    'delivery.report.only.error': true,
  });
  return new Promise((resolve, reject) => {
    producer.once('ready', () => {
      producer.setPollInterval(100);
      resolve(producer);
    });
    producer.connect({ timeout: 15_000 }, (error) => {
      if (error) reject(new Error(`load generator cannot reach Kafka at ${init.brokers}: ${error.message}`));
    });
  });
}

/** How many commands may have been sent by `now` under the plan. */
function dueCount(plan: LoadPlan, sent: number, now: number): number {
  if (now < plan.startUs) return 0;
  if (plan.mode === 'fixed') return Math.min(plan.count, Math.floor(((now - plan.startUs) * plan.rate) / 1e6) + 1);
  if (plan.mode === 'window' && now - plan.startUs >= plan.durationUs) return sent;
  return Math.min(plan.count, (completed.get(plan.phase) ?? 0) + plan.window);
}

function run(producer: Kafka.Producer, plan: LoadPlan): Promise<LoadReport> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let lastSendUs = 0;
    let queueFullWaits = 0;
    const finished = (now: number): boolean => sent >= plan.count || aborted.has(plan.phase) || (plan.mode === 'window' && now - plan.startUs >= plan.durationUs);
    const tick = (): void => {
      const now = nowUs();
      if (finished(now)) {
        producer.flush(60_000, (error) => (error ? reject(new Error(`flush failed: ${error.message}`)) : resolve({ phase: plan.phase, sent, lastSendUs, queueFullWaits })));
        return;
      }
      const due = Math.min(dueCount(plan, sent, now), sent + CHUNK_COMMANDS_MAX);
      if (due > sent) {
        send({ chunk: [plan.phase, sent, due - sent, now] });
        try {
          for (; sent < due; sent++) {
            const command = plan.mode === 'preload' ? workload.preloadCommand(plan.phase, sent) : workload.steadyCommand(plan.phase, sent);
            producer.produce(init.topic, null, encode(command.value), command.key);
          }
        } catch (error) {
          if ((error as { code?: number }).code !== Kafka.CODES.ERRORS.ERR__QUEUE_FULL) return reject(error);
          // The rest of the chunk is announced again, with its new send time, when it goes out.
          queueFullWaits++;
          setTimeout(tick, IDLE_WAIT_MS);
          return;
        }
        lastSendUs = now;
      }
      if (dueCount(plan, sent, nowUs()) > sent) setImmediate(tick);
      else setTimeout(tick, IDLE_WAIT_MS);
    };
    tick();
  });
}

async function main(): Promise<void> {
  const producer = await connect();
  process.on('message', (message: { plan?: LoadPlan; completed?: [number, number]; abort?: number; stop?: true }) => {
    if (message.completed !== undefined) {
      completed.set(message.completed[0], message.completed[1]);
    } else if (message.abort !== undefined) {
      aborted.add(message.abort);
    } else if (message.stop === true) {
      stopPolling(producer);
      producer.disconnect(() => process.exit(0));
    } else if (message.plan !== undefined) {
      completed.set(message.plan.phase, 0);
      run(producer, message.plan).then(
        (report) => send({ report }),
        (error: unknown) => send({ error: String((error as Error).stack ?? error) }),
      );
    }
  });
  process.on('disconnect', () => process.exit(0));
  send({ ready: true });
}

main().catch((error: unknown) => send({ error: String((error as Error).stack ?? error) }));
