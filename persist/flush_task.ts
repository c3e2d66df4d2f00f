// The Piscina flush worker: makes one ring range of one partition group durable in ONE
// PostgreSQL transaction (docs/persistence.md). Each worker thread keeps one connection
// across tasks (opened lazily, dropped on any error and reopened by the next task) with its
// temporary staging tables, and reusable COPY buffers.
//
// The transaction, for the task's partitions P with their fencing tokens, in as few round
// trips as it can (each costs both processes a system call or two and a wake-up; at low rates
// the fixed cost per flush is most of the work):
//   BEGIN; SELECT … FROM partition_leases WHERE topic = 't' AND partition = ANY('{P}') FOR UPDATE
//       one simple query; a missing row or another token ⇒ ROLLBACK, fenced; a next_offset
//       past some commands (a retry of a flush whose COMMIT did commit) ⇒ those are skipped
//   (once per connection and currency id: check it exists in currencies, see 002)
//   COPY tx_outcomes, journal, transfer_outbox, tx_replies FROM STDIN (FORMAT binary)   straight into the tables
//   WITH upserted AS (INSERT INTO balances SELECT … FROM unnest($balance arrays) ON CONFLICT
//                     DO UPDATE … WHERE balances.last_offset < EXCLUDED.last_offset)
//   UPDATE partition_leases SET next_offset = last + 1 FROM unnest(…)
//       WHERE topic = $t AND partition = p AND fencing_token = token AND next_offset <= last + 1
//       RETURNING partition          one statement; fewer rows than partitions ⇒ ROLLBACK, fenced
//   COMMIT
//
// Balances travel as binary array parameters (binary_arrays.ts), the last leg per balance,
// not through a staging table: no COPY round trips and no temp table truncated at COMMIT.
//
// Why straight COPY: COPY inserts in bulk (multi-insert, one WAL record per page), an
// INSERT … SELECT from staging inserts row by row; journal and tx_outcomes take only new rows.
// The one exception is a tx_id recorded again after it left the engine's dedup window (the
// window is the contract, so it was applied again): its tx_outcomes row exists. The COPY then
// fails with a unique violation and the transaction is run again with the outcomes staged
// and upserted (newest outcome wins, as recovery must load it; DISTINCT ON should a batch
// hold the tx_id twice). An outcome at or below its stored offset is refused there: the
// journal has no key (migration 005), so this is what stops a command being journalled twice.
//
// Fencing answers with a result ({ status: 'fenced' }); database errors throw (the batcher
// retries the same task).

import { performance } from 'node:perf_hooks';
import { finished } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { BinaryCopyEncoder } from './copy_binary';
import type { CopyEncoder } from './copy_encoder';
import { TextCopyEncoder } from './copy_text';
import { closeWithin, isOverdue, withinDeadline } from './pg_socket';
import { FLUSH_APPLICATION_NAME, RECLAIM_HOLDER_OPEN_MS_MIN } from './lease';
import {
  BALANCE_COLUMNS, CREATE_STAGING_TABLES_SQL, FlushRows, JOURNAL_COLUMNS, OUTBOX_COLUMNS, OUTCOME_COLUMNS, OutputRingView, PartitionSelection, REPLY_COLUMNS,
  STAGED_OUTCOMES_TABLE, encodeFlushRows,
} from './flush_rows';

export type CopyFormat = 'binary' | 'text';

export interface FlushTask {
  /** The output ring's slots (shared, read in place) and its geometry. */
  readonly ringData: SharedArrayBuffer;
  readonly slotCount: number;
  readonly slotBytes: number;
  /** Ring positions of the range; whole commands only. */
  readonly firstPosition: number;
  readonly lastPosition: number;
  /** The partitions whose commands this task writes (others in the range are skipped) … */
  readonly partitions: readonly number[];
  /** … and the fencing token of each, as a decimal string (bigint in the database). */
  readonly fencingTokens: readonly string[];
  readonly topic: string;
  readonly pgUrl: string;
  /** Bench only: the COPY format to compare; flushes use binary. */
  readonly copyFormat?: CopyFormat;
  /** Bound of the whole flush on the client side (default FLUSH_DEADLINE_MS); tests set a short one. */
  readonly deadlineMs?: number;
  /**
   * The lease TTL: a flush moves the expiry of the lease rows it advances at least this far
   * ahead. Renewals skip rows a flush holds locked, so under back-to-back flushes they alone
   * let a busy owner's expiry lapse, and a lapsed row may be reclaimed by another instance
   * (io/service.ts reclaim). Absent (tests, benches): the expiry is left as it is.
   */
  readonly leaseTtlMs?: number;
}

export interface FlushResult {
  readonly status: 'committed' | 'fenced';
  /** Fenced: the partitions whose lease row did not carry the task's token (nothing was written). */
  readonly fencedPartitions: readonly number[];
  /** Committed: the task's partitions that had commands in the range, now durable … */
  readonly partitions: readonly number[];
  /** … and the highest Kafka offset of each in the range. */
  readonly lastOffsets: readonly number[];
  readonly commandCount: number;
  readonly journalRows: number;
  readonly outcomeRows: number;
  /** Commands skipped because an earlier flush had committed them already. */
  readonly skippedCommandCount: number;
  /** Where the time went (ms): encoding rows, then each database step. */
  readonly steps: FlushSteps;
  /** The PostgreSQL backend process of the worker's connection (for metrics and benches). */
  readonly backendPid: number;
}

export interface FlushSteps {
  encodeMs: number;
  lockMs: number;
  outcomesMs: number;
  journalMs: number;
  balancesMs: number;
  commitMs: number;
}

function noSteps(): FlushSteps {
  return { encodeMs: 0, lockMs: 0, outcomesMs: 0, journalMs: 0, balancesMs: 0, commitMs: 0 };
}

const CONNECT_TIMEOUT_MS = 10_000;
// Every wait is bounded. A flush runs for well under a second; these only end a stuck one
// (its error makes the batcher retry). A flush never idles inside its transaction, so a
// paused (zombie) process loses its session and its lease row locks after the idle timeout.
const STATEMENT_TIMEOUT_MS = 120_000;
const LOCK_TIMEOUT_MS = 30_000;
const IDLE_IN_TRANSACTION_TIMEOUT_MS = 15_000;
// The server-side timeouts above need a server that answers (persist/pg_socket.ts), so the
// client bounds the whole flush too: past this, the socket is destroyed and the flush fails
// (and is retried on a new connection; a batch whose COMMIT answer was lost is found durable).
const FLUSH_DEADLINE_MS = STATEMENT_TIMEOUT_MS + 30_000;
if (FLUSH_DEADLINE_MS >= RECLAIM_HOLDER_OPEN_MS_MIN) throw new Error('flush task: a reclaim could end a live flush (RECLAIM_HOLDER_OPEN_MS_MIN must exceed the flush deadline)');
/** How long a connection being dropped may take to close politely before its socket is destroyed. */
const CLOSE_GRACE_MS = 1_000;

// Session settings: temp_buffers must be set before the first use of a temporary table, and
// big enough that a batch's staged outcomes (the rare upsert) stay in memory. JIT compiling
// the INSERT … SELECTs costs more than it saves at these row counts.
//
// Server-side TCP keepalives (15 s idle, then 5 probes 5 s apart) and a 30 s bound on
// unacknowledged data: when the network between us and PostgreSQL fails, the server ends our
// orphaned session (and releases the lease rows it holds) within about 40 s by itself.
const SESSION_SQL = `SET temp_buffers = '128MB'; SET jit = off;
  SET tcp_keepalives_idle = 15; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 5; SET tcp_user_timeout = 30000;
  ${CREATE_STAGING_TABLES_SQL}`;

/**
 * BEGIN and the lease lock in one simple query, so the values are literals: the topic
 * escaped, the partitions as numbers (PartitionSelection.select has checked them to be
 * partition ids).
 */
function lockLeasesSql(client: pg.Client, topic: string, partitions: readonly number[]): string {
  return `BEGIN; SELECT partition, fencing_token::text AS fencing_token, next_offset::float8 AS next_offset
    FROM partition_leases WHERE topic = ${client.escapeLiteral(topic)} AND partition = ANY('{${partitions.join(',')}}'::integer[])
   ORDER BY partition FOR UPDATE`;
}

// The balance upsert and the fenced offset advance as one statement (a data-modifying WITH
// runs to completion whether or not the UPDATE reads it). The UPDATE's RETURNING says which
// partitions moved; fewer than expected and the transaction is rolled back, upsert included.
const UPSERT_BALANCES_ADVANCE_OFFSETS_SQL = `
  WITH upserted AS (
    INSERT INTO balances (${BALANCE_COLUMNS})
    SELECT ${BALANCE_COLUMNS} FROM unnest($5::integer[], $6::bigint[], $7::smallint[], $8::bigint[], $9::bigint[], $10::bigint[])
        AS b(${BALANCE_COLUMNS})
     ORDER BY partition, account, currency_id
    ON CONFLICT (partition, account, currency_id) DO UPDATE
       SET available = EXCLUDED.available, frozen = EXCLUDED.frozen, last_offset = EXCLUDED.last_offset
     WHERE balances.last_offset < EXCLUDED.last_offset
  )
  UPDATE partition_leases AS l
     SET next_offset = u.next_offset,
         lease_expiry = CASE WHEN $11::bigint IS NULL THEN l.lease_expiry ELSE GREATEST(l.lease_expiry, clock_timestamp() + $11::bigint * interval '1 millisecond') END
    FROM unnest($2::integer[], $3::bigint[], $4::bigint[]) AS u(partition, fencing_token, next_offset)
   WHERE l.topic = $1 AND l.partition = u.partition AND l.fencing_token = u.fencing_token AND l.next_offset <= u.next_offset
  RETURNING l.partition`;

// Refuses the batch when any staged outcome lies at or below the offset stored for its tx_id
// (`stale`, counted before the insert: every CTE reads the same snapshot): that command was
// written before, and the journal has no key of its own to stop its legs being written again
// (migration 005). Otherwise the newest staged outcome per tx_id is inserted or moves the
// stored one forward, and `written` must equal `staged`. The outcomes it displaces (the
// stored one it moves, and older ones of the same tx_id in the batch) go to tx_replies at
// their offsets, so a republish from below them still announces those commands.
const UPSERT_OUTCOMES_SQL = `
  WITH stale AS (
    SELECT count(*) AS n FROM ${STAGED_OUTCOMES_TABLE} s JOIN tx_outcomes o USING (partition, tx_id) WHERE s.kafka_offset <= o.kafka_offset
  ), newest AS (
    SELECT DISTINCT ON (partition, tx_id) ${OUTCOME_COLUMNS} FROM ${STAGED_OUTCOMES_TABLE} ORDER BY partition, tx_id, kafka_offset DESC
  ), displaced AS (
    INSERT INTO tx_replies (${REPLY_COLUMNS})
    SELECT o.partition, o.kafka_offset, o.tx_id, o.accepted, o.reason, NULL::bigint FROM tx_outcomes o JOIN newest n USING (partition, tx_id) WHERE o.kafka_offset < n.kafka_offset
    UNION ALL
    SELECT s.partition, s.kafka_offset, s.tx_id, s.accepted, s.reason, NULL::bigint FROM ${STAGED_OUTCOMES_TABLE} s JOIN newest n USING (partition, tx_id) WHERE s.kafka_offset < n.kafka_offset
    ON CONFLICT DO NOTHING
  ), written AS (
    INSERT INTO tx_outcomes (${OUTCOME_COLUMNS}) SELECT ${OUTCOME_COLUMNS} FROM newest
    ON CONFLICT (partition, tx_id) DO UPDATE
       SET kafka_offset = EXCLUDED.kafka_offset, accepted = EXCLUDED.accepted, reason = EXCLUDED.reason, payload_hash = EXCLUDED.payload_hash
     WHERE tx_outcomes.kafka_offset < EXCLUDED.kafka_offset
    RETURNING 1
  )
  SELECT (SELECT n FROM stale)::integer AS stale, (SELECT count(*) FROM newest)::integer AS staged, (SELECT count(*) FROM written)::integer AS written`;

const KNOWN_CURRENCIES_SQL = 'SELECT id FROM currencies WHERE id = ANY($1::smallint[])';
const UNIQUE_VIOLATION = '23505';
const TX_OUTCOMES_KEY = 'tx_outcomes_pkey';

/** How outcome rows reach tx_outcomes: straight COPY, or staged and upserted (a tx_id recorded again). */
type OutcomeWrite = 'copy' | 'upsert';

// Per worker thread: the connection, the encoders and the selection are reused by every task.
let connection: pg.Client | null = null;
let connectionUrl = '';
let backendPid = 0;
/**
 * The session of a connection dropped at its deadline, which the server may still keep open
 * (holding its transaction's locks: the lease rows the retry needs) until it notices the peer
 * is gone: the next connection ends it. Identified by pid and start time (pids are reused).
 */
let orphan: { pid: number; startedAt: string } | undefined;
let backendStartedAt = '';
/** Currency ids this connection has seen in currencies (append-only, so they stay). */
const knownCurrencies = new Uint8Array(1 << 16);
const selection = new PartitionSelection();
const rowsByFormat: Record<CopyFormat, FlushRows> = {
  binary: new FlushRows(new BinaryCopyEncoder(1 << 20), new BinaryCopyEncoder(1 << 20)),
  text: new FlushRows(new TextCopyEncoder(1 << 20), new TextCopyEncoder(1 << 20), new TextCopyEncoder(1 << 16), new TextCopyEncoder(1 << 16)),
};

export default async function flush(task: FlushTask): Promise<FlushResult> {
  if (task.partitions.length === 0 || task.partitions.length !== task.fencingTokens.length) {
    throw new Error(`flush: ${task.partitions.length} partitions with ${task.fencingTokens.length} fencing tokens`);
  }
  selection.select(task.partitions);
  try {
    return await flushSelected(task);
  } finally {
    selection.clear();
  }
}

async function flushSelected(task: FlushTask): Promise<FlushResult> {
  const steps = noSteps();
  const encodeStartedMs = performance.now();
  const ring = new OutputRingView(task.ringData, task.slotCount, task.slotBytes);
  const rows = rowsByFormat[task.copyFormat ?? 'binary'];
  encodeFlushRows(ring, task.firstPosition, task.lastPosition, selection, rows);
  steps.encodeMs = performance.now() - encodeStartedMs;
  const durable = durablePartitions();
  const client = await connectionFor(task.pgUrl);
  try {
    const outcome = await withinDeadline([client], task.deadlineMs ?? FLUSH_DEADLINE_MS, 'flush', async () => {
      const first = await transact(client, task, ring, rows, 'copy', steps);
      return first === UNIQUE_VIOLATION ? transact(client, task, ring, rows, 'upsert', steps) : first;
    });
    if (outcome === UNIQUE_VIOLATION) throw new Error('flush: tx_outcomes upsert reported a unique violation');
    if (outcome !== undefined) return fencedResult(outcome, steps);
    const written = countWritten();
    return {
      status: 'committed', fencedPartitions: [], partitions: durable.partitions, lastOffsets: durable.lastOffsets,
      commandCount: written, journalRows: rows.journal.rowCount, outcomeRows: rows.outcomes.rowCount,
      skippedCommandCount: durable.commandCount - written, steps, backendPid,
    };
  } catch (error) {
    await dropConnection(client);
    // The batcher's retry may run on another flush worker, whose connection is fine and would
    // wait on the orphan's lease-row locks: end it now, from a connection of its own.
    if (isOverdue(error)) await endOrphan(task.pgUrl, { pid: backendPid, startedAt: backendStartedAt });
    throw describeFailure(task, error);
  }
}

/** Ends the session a deadline left behind; if that fails too, the next connection of this worker tries again. */
async function endOrphan(pgUrl: string, session: { pid: number; startedAt: string }): Promise<void> {
  orphan = session;
  const client = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, application_name: FLUSH_APPLICATION_NAME });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await terminateOrphan(client);
  } catch {
    // The database may be as unreachable as the session was; the next connection retries.
  } finally {
    await closeWithin(client, CLOSE_GRACE_MS);
  }
}

async function terminateOrphan(client: pg.Client): Promise<void> {
  if (orphan === undefined) return;
  await client.query(bounded('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2::timestamptz', [orphan.pid, orphan.startedAt]));
  orphan = undefined;
}

/**
 * One attempt at the transaction. Returns undefined once committed, the fenced partitions
 * after a rollback, or UNIQUE_VIOLATION after a rollback when outcomes must be upserted.
 */
async function transact(
  client: pg.Client, task: FlushTask, ring: OutputRingView, rows: FlushRows, outcomeWrite: OutcomeWrite, steps: FlushSteps,
): Promise<number[] | typeof UNIQUE_VIOLATION | undefined> {
  let lapMs = performance.now();
  const lap = (): number => {
    const startedMs = lapMs;
    lapMs = performance.now();
    return lapMs - startedMs;
  };
  const fenced = await beginAndLockLeases(client, task);
  if (fenced.length > 0) return rollBack(client, fenced);
  if (skipDurableCommands()) encodeFlushRows(ring, task.firstPosition, task.lastPosition, selection, rows);
  await checkCurrencies(client, rows);
  steps.lockMs += lap();
  try {
    if (outcomeWrite === 'copy') await copyIn(client, `tx_outcomes (${OUTCOME_COLUMNS})`, rows.outcomes);
  } catch (error) {
    const { code, constraint } = error as { code?: string; constraint?: string };
    if (code !== UNIQUE_VIOLATION || constraint !== TX_OUTCOMES_KEY) throw error;
    await client.query('ROLLBACK');
    return UNIQUE_VIOLATION;
  }
  if (outcomeWrite === 'upsert') {
    await client.query(`TRUNCATE ${STAGED_OUTCOMES_TABLE}`);
    await copyIn(client, STAGED_OUTCOMES_TABLE, rows.outcomes);
    const counts = await client.query<{ stale: number; staged: number; written: number }>({ name: 'tally_flush_upsert_outcomes', text: UPSERT_OUTCOMES_SQL });
    const { stale, staged, written } = counts.rows[0]!;
    if (stale > 0 || written !== staged) {
      throw new Error(`flush: ${Math.max(stale, staged - written)} outcomes are at or below the offset already stored for their tx_id: those commands were written before (refused, nothing written)`);
    }
  }
  steps.outcomesMs += lap();
  await copyIn(client, `journal (${JOURNAL_COLUMNS})`, rows.journal);
  // Credits owed to other partitions commit with the debit that owes them (no dual write).
  await copyIn(client, `transfer_outbox (${OUTBOX_COLUMNS})`, rows.outbox);
  // What the events of unrecorded outcomes said, for a republish after a crash (migration 007).
  await copyIn(client, `tx_replies (${REPLY_COLUMNS})`, rows.replies);
  steps.journalMs += lap();
  const notAdvanced = await upsertBalancesAdvanceOffsets(client, task, rows);
  steps.balancesMs += lap();
  if (notAdvanced.length > 0) return rollBack(client, notAdvanced);
  await client.query('COMMIT');
  steps.commitMs += lap();
  return undefined;
}

/** Every currency id of the batch must exist (002 replaced the per-row foreign keys with this check). */
async function checkCurrencies(client: pg.Client, rows: FlushRows): Promise<void> {
  const unknown: number[] = [];
  for (let i = 0; i < rows.currencyCount; i++) if (knownCurrencies[rows.currencyIds[i]!] === 0) unknown.push(rows.currencyIds[i]!);
  if (unknown.length === 0) return;
  const found = await client.query<{ id: number }>({ name: 'tally_flush_known_currencies', text: KNOWN_CURRENCIES_SQL, values: [unknown] });
  for (const row of found.rows) knownCurrencies[row.id] = 1;
  const missing = unknown.filter((id) => knownCurrencies[id] === 0);
  if (missing.length > 0) throw new Error(`currency ids ${missing.join(', ')} are not in the currencies table (are the configured currencies synced?)`);
}

/** The selected partitions that have commands in the range, with their last offsets (before any skipping). */
function durablePartitions(): { partitions: number[]; lastOffsets: number[]; commandCount: number } {
  const partitions: number[] = [];
  const lastOffsets: number[] = [];
  let commandCount = 0;
  selection.partitions.forEach((partition, index) => {
    if (selection.commandCount[index] === 0) return;
    partitions.push(partition);
    lastOffsets.push(selection.lastOffset[index]!);
    commandCount += selection.commandCount[index]!;
  });
  return { partitions, lastOffsets, commandCount };
}

function countWritten(): number {
  let count = 0;
  for (let index = 0; index < selection.partitions.length; index++) count += selection.commandCount[index]!;
  return count;
}

/** Begins the transaction and locks the task's lease rows; returns the partitions whose row is missing or carries another token. */
async function beginAndLockLeases(client: pg.Client, task: FlushTask): Promise<number[]> {
  // A multi-statement simple query answers with one result per statement.
  const results = await client.query(lockLeasesSql(client, task.topic, task.partitions)) as unknown;
  if (!Array.isArray(results) || results.length !== 2 || (results[1] as pg.QueryResult).command !== 'SELECT') {
    throw new Error('flush: BEGIN and the lease lock did not answer as two statements (sent as a simple query?)');
  }
  const rows = (results[1] as pg.QueryResult).rows as Array<{ partition: number; fencing_token: string; next_offset: number }>;
  const fenced: number[] = [];
  task.partitions.forEach((partition, index) => {
    const row = rows.find((r) => r.partition === partition);
    if (row === undefined || row.fencing_token !== task.fencingTokens[index]) {
      fenced.push(partition);
      return;
    }
    selection.offsetMin[index] = row.next_offset;
  });
  return fenced;
}

/** True if some partition's stored next offset lies past its first command in the range. */
function skipDurableCommands(): boolean {
  for (let index = 0; index < selection.partitions.length; index++) {
    if (selection.commandCount[index]! > 0 && selection.offsetMin[index]! > selection.firstOffset[index]!) return true;
  }
  return false;
}

/** COPYs the encoder's rows into `target` (a table, with its column list if needed). */
async function copyIn(client: pg.Client, target: string, encoder: CopyEncoder): Promise<void> {
  if (encoder.rowCount === 0) return;
  const stream = client.query(copyFrom(`COPY ${target} FROM STDIN ${encoder.copyOptions}`));
  stream.end(encoder.finish());
  await finished(stream);
}

/**
 * Upserts the batch's balances and moves each written partition's next offset, in one
 * statement; returns the partitions whose fenced update matched no row.
 */
async function upsertBalancesAdvanceOffsets(client: pg.Client, task: FlushTask, rows: FlushRows): Promise<number[]> {
  const partitions: number[] = [];
  const tokens: string[] = [];
  const nextOffsets: number[] = [];
  task.partitions.forEach((partition, index) => {
    if (selection.commandCount[index] === 0) return;
    partitions.push(partition);
    tokens.push(task.fencingTokens[index]!);
    nextOffsets.push(selection.lastOffset[index]! + 1);
  });
  if (partitions.length === 0 && rows.balances.rowCount === 0) return [];
  const result = await client.query<{ partition: number }>({
    name: 'tally_flush_balances_offsets', text: UPSERT_BALANCES_ADVANCE_OFFSETS_SQL, values: [task.topic, partitions, tokens, nextOffsets, ...rows.balances.finish(), task.leaseTtlMs ?? null],
  });
  if (result.rows.length === partitions.length) return [];
  const advanced = new Set(result.rows.map((r) => r.partition));
  return partitions.filter((p) => !advanced.has(p));
}

async function rollBack(client: pg.Client, fenced: number[]): Promise<number[]> {
  await client.query('ROLLBACK');
  return fenced;
}

function fencedResult(fenced: readonly number[], steps: FlushSteps): FlushResult {
  return {
    status: 'fenced', fencedPartitions: fenced, partitions: [], lastOffsets: [], commandCount: 0, journalRows: 0, outcomeRows: 0,
    skippedCommandCount: 0, steps, backendPid,
  };
}

/** Closes this thread's connection: for in-process callers (tests); a pool's threads close theirs as they exit. */
export async function closeFlushConnection(): Promise<void> {
  if (connection !== null) await dropConnection(connection);
}

async function connectionFor(pgUrl: string): Promise<pg.Client> {
  if (connection !== null && connectionUrl === pgUrl) return connection;
  if (connection !== null) await dropConnection(connection);
  const client = new pg.Client({
    connectionString: pgUrl,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    lock_timeout: LOCK_TIMEOUT_MS,
    idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_TIMEOUT_MS,
    application_name: FLUSH_APPLICATION_NAME,
  });
  // A connection lost between tasks: forget it; the next task opens a new one.
  client.on('error', () => {
    if (connection === client) connection = null;
  });
  try {
    await client.connect();
    // Bounded here too: the flush's own deadline starts once the session is open.
    await client.query(bounded(SESSION_SQL, []));
    const self = await client.query<{ pid: number; started_at: string }>(bounded('SELECT pid, backend_start::text AS started_at FROM pg_stat_activity WHERE pid = pg_backend_pid()', []));
    backendPid = self.rows[0]!.pid;
    backendStartedAt = self.rows[0]!.started_at;
    await terminateOrphan(client);
  } catch (error) {
    await closeWithin(client, CLOSE_GRACE_MS);
    throw new Error(`flush: cannot open a session on ${redactedUrl(pgUrl)}: ${(error as Error).message}`, { cause: error });
  }
  connection = client;
  connectionUrl = pgUrl;
  return client;
}

/** A query the client gives up on after CONNECT_TIMEOUT_MS (pg reads query_timeout per query; its types omit it). */
function bounded(text: string, values: unknown[]): pg.QueryConfig {
  return { text, values, query_timeout: CONNECT_TIMEOUT_MS } as pg.QueryConfig;
}

async function dropConnection(client: pg.Client): Promise<void> {
  if (connection === client) connection = null;
  await closeWithin(client, CLOSE_GRACE_MS);
}

function describeFailure(task: FlushTask, error: unknown): Error {
  const code = (error as { code?: string }).code;
  const message = `flush of partitions [${task.partitions.join(',')}] ring positions ${task.firstPosition}..${task.lastPosition} failed: ${(error as Error).message}${code === undefined ? '' : ` (SQLSTATE ${code})`}`;
  return new Error(message, { cause: error });
}

function redactedUrl(pgUrl: string): string {
  const url = new URL(pgUrl);
  if (url.password !== '') url.password = '***';
  return url.toString();
}
