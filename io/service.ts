// The running service: Kafka consumer → command ring → engine worker → output ring →
// drain, and the HTTP server reading the shared balance table.
//
// Stage note: outcomes are drained and counted but not yet persisted (the durable pipeline
// is issue #4). Every partition therefore starts at the next offset stored in PostgreSQL,
// which stays 0 until flushes advance it, and the engine replays the partition's log from
// there; because the engine is deterministic the replay rebuilds exactly the same balances.

import pg from 'pg';
import { EngineThread } from '../engine/engine_thread';
import { OutputDrain } from '../engine/output_drain';
import { CurrencyRegistry } from '../engine/currency_registry';
import { CommandConsumer } from './command_consumer';
import { registerBalanceRoutes } from './balance_routes';
import { HttpServer, listen } from './http_server';
import type { TallyConfig } from './config';
import type { Logger } from './logger';

const DRAIN_INTERVAL_MS = 1;

export class Service {
  // Highest Kafka offset applied by the engine, per partition.
  readonly appliedOffsets = new Map<number, number>();
  commandsApplied = 0;
  private drainTimer: NodeJS.Timeout | undefined;
  private ready = false;

  private constructor(
    readonly config: TallyConfig,
    readonly registry: CurrencyRegistry,
    readonly engine: EngineThread,
    private readonly drain: OutputDrain,
    readonly consumer: CommandConsumer,
    readonly http: HttpServer,
    private readonly log: Logger,
  ) {}

  static async start(config: TallyConfig, log: Logger): Promise<Service> {
    const registry = CurrencyRegistry.fromConfig(config.currencies);
    const nextOffsets = await loadNextOffsets(config);
    const engine = await EngineThread.start({
      commandSlotCount: 1 << 14,
      outputSlotCount: 1 << 16,
      balanceCapacity: config.balanceCapacity,
      dedupWindow: config.dedupWindow,
    });
    // A single instance owns every partition for now: the engine takes them all up front so
    // no command can reach it for a partition it does not know.
    for (let partition = 0; partition < config.commandPartitions; partition++) await engine.assign(partition);
    const drain = new OutputDrain(engine.outputRing);
    const consumer = new CommandConsumer({
      brokers: config.kafkaBrokers,
      topic: config.commandsTopic,
      groupId: config.consumerGroup,
      partitionCount: config.commandPartitions,
      registry,
      commandRing: engine.commandRing,
      log,
    });
    let service: Service | undefined;
    const http = await listen({
      host: config.httpHost,
      port: config.httpPort,
      isReady: () => service?.ready === true,
      routes: (app) => registerBalanceRoutes(app, engine.tableReader(), registry),
    });
    service = new Service(config, registry, engine, drain, consumer, http, log);
    service.startDraining();
    await consumer.connect();
    consumer.assign(Array.from({ length: config.commandPartitions }, (_, partition) => ({ partition, offset: nextOffsets.get(partition) ?? 0 })));
    service.ready = true;
    log.info({ port: http.port, partitions: config.commandPartitions }, 'tally started');
    return service;
  }

  async stop(): Promise<void> {
    this.ready = false;
    await this.consumer.disconnect();
    const report = await this.engine.report();
    while (this.commandsApplied < report.sequence) this.drainOnce();
    clearInterval(this.drainTimer);
    const stopped = await this.engine.stop();
    this.http.close();
    this.log.info({ sequence: stopped.sequence, stateHash: stopped.stateHash }, 'tally stopped');
  }

  private startDraining(): void {
    this.drainTimer = setInterval(() => this.drainOnce(), DRAIN_INTERVAL_MS);
  }

  private drainOnce(): void {
    this.commandsApplied += this.drain.drain(this.visit);
  }

  private readonly visit = (_ring: unknown, position: number): void => {
    this.appliedOffsets.set(this.drain.partitionAt(position), this.drain.kafkaOffsetAt(position));
  };
}

async function loadNextOffsets(config: TallyConfig): Promise<Map<number, number>> {
  const client = new pg.Client({ connectionString: config.pgUrl, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    const result = await client.query<{ partition: number; next_offset: string }>(
      'SELECT partition, next_offset FROM partition_leases WHERE topic = $1', [config.commandsTopic]);
    return new Map(result.rows.map((row) => [row.partition, Number(row.next_offset)]));
  } finally {
    await client.end();
  }
}
