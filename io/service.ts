// The running service (docs/persistence.md):
//   Kafka consumer → command ring → engine worker → output ring → batcher → flush pool
//   → PostgreSQL, and the HTTP server reading the shared balance table.
//
// Start-up, per partition: take the lease (fencing token + 1), load the partition's balances
// and dedup window from PostgreSQL into the engine, then read Kafka from the lease row's next
// offset. A partition whose lease is lost or whose flush is fenced is stopped at once: the
// consumer stops feeding it and the batcher writes nothing more of it.
//
// Stage note: one instance takes every partition of the topic; sharing partitions between
// instances through the consumer group is the serving issue (#5).

import pg from 'pg';
import { EngineThread } from '../engine/engine_thread';
import { CurrencyRegistry } from '../engine/currency_registry';
import { Batcher } from '../persist/batcher';
import { FlushPool } from '../persist/flush_pool';
import { LeaseKeeper, LeaseLostReason } from '../persist/lease';
import { recoverPartition } from '../persist/recovery';
import { syncCurrencies } from '../persist/currencies';
import { CommandConsumer } from './command_consumer';
import { registerBalanceRoutes } from './balance_routes';
import { HttpServer, listen } from './http_server';
import type { TallyConfig } from './config';
import type { Logger } from './logger';

const COMMAND_RING_SLOTS = 1 << 14;
const OUTPUT_RING_SLOTS = 1 << 18;
const STOP_TIMEOUT_MS = 30_000;

interface Parts {
  readonly engine: EngineThread;
  readonly leases: LeaseKeeper;
  readonly pool: FlushPool;
  readonly batcher: Batcher;
  readonly consumer: CommandConsumer;
  readonly http: HttpServer;
}

export class Service {
  private ready = false;
  private readonly stoppedPartitions = new Set<number>();

  private constructor(readonly config: TallyConfig, readonly registry: CurrencyRegistry, private readonly parts: Parts, private readonly log: Logger) {}

  get engine(): EngineThread {
    return this.parts.engine;
  }

  get http(): HttpServer {
    return this.parts.http;
  }

  get batcher(): Batcher {
    return this.parts.batcher;
  }

  // Highest Kafka offset of the partition whose effects are committed in PostgreSQL, or -1.
  durableOffsetOf(partition: number): number {
    return this.parts.batcher.durableOffsetOf(partition);
  }

  isReady(): boolean {
    return this.ready && this.parts.batcher.ready;
  }

  static async start(config: TallyConfig, log: Logger): Promise<Service> {
    const registry = CurrencyRegistry.fromConfig(config.currencies);
    await withClient(config.pgUrl, (client) => syncCurrencies(client, registry));
    const engine = await EngineThread.start({
      commandSlotCount: COMMAND_RING_SLOTS,
      outputSlotCount: OUTPUT_RING_SLOTS,
      balanceCapacity: config.balanceCapacity,
      dedupWindow: config.dedupWindow,
    });
    let service: Service | undefined;
    const leases = new LeaseKeeper({
      pgUrl: config.pgUrl, topic: config.commandsTopic, owner: config.instanceId, ttlMs: config.leaseTtlMs, log,
      onLost: (partitions, reason) => service?.stopPartitions(partitions, reason),
    });
    const assignments = await takePartitions(config, engine, leases, log);
    const pool = new FlushPool({ workers: config.flushWorkers });
    const batcher = new Batcher({
      ring: engine.outputRing, runner: pool, groupCount: config.flushWorkers,
      batchRowsMax: config.batchRowsMax, batchIntervalMs: config.batchIntervalMs,
      topic: config.commandsTopic, pgUrl: config.pgUrl, log,
      fencingTokenOf: (partition) => {
        const token = leases.fencingTokenOf(partition);
        return token === undefined ? undefined : BigInt(token);
      },
      onFenced: (partitions) => service?.stopPartitions(partitions, 'fenced'),
    });
    const consumer = new CommandConsumer({
      brokers: config.kafkaBrokers, topic: config.commandsTopic, groupId: config.consumerGroup,
      partitionCount: config.commandPartitions, registry, commandRing: engine.commandRing, log,
    });
    const http = await listen({
      host: config.httpHost, port: config.httpPort,
      isReady: () => service?.isReady() === true,
      routes: (app) => registerBalanceRoutes(app, engine.tableReader(), registry),
    });
    service = new Service(config, registry, { engine, leases, pool, batcher, consumer, http }, log);
    batcher.start();
    await consumer.connect();
    consumer.assign(assignments);
    service.ready = true;
    log.info({ port: http.port, partitions: assignments.length, instance: config.instanceId }, 'tally started');
    return service;
  }

  // Stops partitions at once: nothing more of them is read, applied downstream or written.
  stopPartitions(partitions: readonly number[], reason: LeaseLostReason | 'fenced'): void {
    const fresh = partitions.filter((p) => !this.stoppedPartitions.has(p));
    if (fresh.length === 0) return;
    for (const p of fresh) this.stoppedPartitions.add(p);
    this.parts.consumer.stopPartitions(fresh);
    this.parts.batcher.stopPartitions(fresh);
    this.log.error({ partitions: fresh, reason }, 'partitions stopped: another instance owns them now; nothing more of them is written');
  }

  // SIGTERM/SIGINT: stop reading, let the engine apply what it has, flush and commit it all,
  // release the leases; bounded by STOP_TIMEOUT_MS.
  async stop(): Promise<void> {
    this.ready = false;
    const { consumer, engine, batcher, pool, leases, http } = this.parts;
    await consumer.disconnect();
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (engine.commandRing.consumedSequence() < engine.commandRing.publishedSequence() && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await batcher.stop(Math.max(1000, deadline - Date.now()));
    await pool.close();
    await leases.stop();
    const stopped = await engine.stop();
    http.close();
    this.log.info({ sequence: stopped.sequence, stateHash: stopped.stateHash }, 'tally stopped');
  }
}

async function takePartitions(config: TallyConfig, engine: EngineThread, leases: LeaseKeeper, log: Logger): Promise<Array<{ partition: number; offset: number }>> {
  const assignments: Array<{ partition: number; offset: number }> = [];
  for (let partition = 0; partition < config.commandPartitions; partition++) {
    const lease = await leases.acquire(partition);
    const recovered = await recoverPartition(config.pgUrl, engine, { partition, nextOffset: lease.nextOffset, dedupWindow: config.dedupWindow });
    log.info({
      partition, fencingToken: lease.fencingToken, nextOffset: lease.nextOffset, balances: recovered.balances.count,
      outcomes: recovered.outcomes.count, readMs: Math.round(recovered.readMs), loadMs: Math.round(recovered.loadMs),
    }, 'partition recovered');
    assignments.push({ partition, offset: lease.nextOffset });
  }
  return assignments;
}

async function withClient<T>(pgUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
