// POST /v1/wallet/balance_transfer (docs/api.md): a signed wallet transfer. The body is
// checked (signature first, then shape), turned into a transfer command keyed by the debited
// account and produced to the commands topic like any upstream command; the answer is the
// command's durable outcome: 200 accepted, 422 rejected with its reason, 409 tx_id conflict,
// 400 malformed, 504 when no outcome arrives within the timeout (the command may still be
// applied later; retrying with the same transaction_id is safe and returns its outcome).

import type uWS from 'uWebSockets.js';
import type pg from 'pg';
import { CurrencyRegistry, UNKNOWN_CURRENCY_ID } from '../engine/currency_registry';
import { AmountSign, parseAmount } from '../engine/amount';
import { RejectCode, rejectCodeName } from '../engine/reject_code';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';
import type { CommandPosition, CommandProducer } from './command_producer';
import { createCommandSlotViews, readCommandSlot } from '../engine/command_slot';
import { decodeJsonCommand } from '../engine/json_codec';
import { isReservedTxId } from '../engine/reserved_tx_id';
import type { OutcomeCache } from './outcome_cache';
import { BODY_IN_FLIGHT_BYTES_MAX, BODY_RECEIVE_MS, BodyLimits, readBody } from './http_body';
import { json } from './http_server';
import { checkSignature, checkSignatureHeaders } from './request_signature';
import { CreditStatus, TransactionBody, creditOf, withCredit } from './transaction_routes';
import type { Logger } from './logger';

export interface TransferRouteOptions {
  readonly secret: string;
  readonly signatureWindowMs: number;
  /** A request without x-tally-timestamp may sign the body alone (TALLY_SIGNATURE_TIMESTAMP=optional). */
  readonly signatureTimestampOptional?: boolean;
  readonly timeoutMs: number;
  readonly bodyBytesMax: number;
  /** Bytes all transfer bodies being received at once may reserve (default BODY_IN_FLIGHT_BYTES_MAX). */
  readonly bodyInFlightBytesMax?: number;
  /** How long a whole body may take to arrive (default BODY_RECEIVE_MS). */
  readonly bodyReceiveMs?: number;
  readonly partitionCount: number;
  /** The commands topic (partition_leases rows are per topic). */
  readonly commandsTopic: string;
  readonly registry: CurrencyRegistry;
  readonly producer: () => CommandProducer | undefined;
  readonly cache: OutcomeCache;
  readonly db: pg.Pool;
  /** Whether this instance applies the partition (else the outcome is polled from PostgreSQL). */
  readonly ownsPartition: (partition: number) => boolean;
  readonly log: Logger;
}

const FIELDS = ['from_account', 'to_account', 'amount', 'currency', 'transaction_id'] as const;
type TransferRequest = Record<(typeof FIELDS)[number], string>;
const ACCOUNT_PATTERN = /^(0|[1-9][0-9]{0,19})$/;
const POLL_INTERVAL_MS = 50;
/** How long past the request's deadline the credit half of an accepted transfer may still be read. */
const CREDIT_READ_GRACE_MS = 2_000;

class BadRequest extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

function parseTransfer(body: Buffer, registry: CurrencyRegistry): TransferRequest {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new BadRequest('MALFORMED_JSON', 'the body is not valid JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new BadRequest('MALFORMED', 'the body must be a JSON object');
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!(FIELDS as readonly string[]).includes(key)) throw new BadRequest('UNKNOWN_FIELD', `unknown field "${key}"; expected ${FIELDS.join(', ')}`);
  }
  for (const field of FIELDS) {
    if (typeof record[field] !== 'string' || record[field] === '') throw new BadRequest('BAD_FIELD', `"${field}" must be a non-empty string`);
  }
  const request = record as TransferRequest;
  for (const field of ['from_account', 'to_account'] as const) {
    if (!ACCOUNT_PATTERN.test(request[field]) || BigInt(request[field]) >= 1n << 64n) throw new BadRequest('BAD_ACCOUNT', `"${field}" must be an unsigned 64-bit decimal account id`);
    if (BigInt(request[field]) < 1000n) throw new BadRequest('BAD_ACCOUNT', `"${field}" is a system account; transfers move money between user accounts`);
  }
  if (Buffer.byteLength(request.transaction_id) > 64) throw new BadRequest('BAD_TX_ID', '"transaction_id" must be 1 to 64 bytes');
  // What the command decoder would refuse as MALFORMED (with no tx_id, so no outcome could be
  // waited for): a NUL (PostgreSQL text cannot hold it) or a lone surrogate (not UTF-8).
  if (/[\u0000\p{Cs}]/u.test(request.transaction_id)) throw new BadRequest('BAD_TX_ID', '"transaction_id" must be UTF-8 text without NUL characters');
  if (isReservedTxId(request.transaction_id)) throw new BadRequest('BAD_TX_ID', '"transaction_id" of the form ~x<n>-<n> or ~r<n>-<n> is reserved for the credits of cross-partition transfers');
  if (registry.idOfCode(request.currency) === UNKNOWN_CURRENCY_ID) throw new BadRequest('UNKNOWN_CURRENCY', `unknown currency "${request.currency}"`);
  return request;
}

function statusOf(body: TransactionBody): string {
  if (body.status === 'accepted') return '200 OK';
  // Not a verdict on the transfer: the partition's balance table is full, nothing was applied
  // or recorded, and the same transaction_id may be retried once the operator made room.
  if (body.reason === rejectCodeName(RejectCode.BalanceTableFull)) return '503 Service Unavailable';
  if (body.reason === rejectCodeName(RejectCode.DuplicateTxIdConflict)) return '409 Conflict';
  if (body.reason === rejectCodeName(RejectCode.Malformed)) return '400 Bad Request';
  return '422 Unprocessable Entity';
}

export function registerTransferRoutes(app: uWS.TemplatedApp, options: TransferRouteOptions): void {
  const bodyLimits: BodyLimits = {
    bytesMax: options.bodyBytesMax,
    inFlightBytesMax: options.bodyInFlightBytesMax ?? BODY_IN_FLIGHT_BYTES_MAX,
    receiveMs: options.bodyReceiveMs ?? BODY_RECEIVE_MS,
  };
  app.post('/v1/wallet/balance_transfer', (res, req) => {
    // ?wait=debit answers once the debit is durable; by default a cross-partition transfer
    // also waits for its credit (within the same timeout).
    const waitCredit = !/(?:^|&)wait=debit(?:&|$)/.test(req.getQuery() ?? '');
    const timestamp = req.getHeader('x-tally-timestamp');
    const signature = req.getHeader('x-tally-signature');
    // Refused on its headers alone without reading the body: nobody without the secret makes
    // the server buffer bodies (a request with plausible headers still needs a valid signature).
    if (options.secret === '') return json(res, '503 Service Unavailable', { error: 'TRANSFER_API_DISABLED', message: 'set TALLY_TRANSFER_SECRET to enable the transfer API' });
    const headers = checkSignatureHeaders(options.signatureWindowMs, Date.now(), timestamp, signature, options.signatureTimestampOptional === true);
    if (headers !== 'ok') return json(res, '401 Unauthorized', { error: headers, message: 'sign the raw body with HMAC-SHA256 as docs/api.md describes' });
    readBody(res, req.getHeader('content-length'), bodyLimits, (body, request) => {
      const answer = (status: string, payload: unknown): void => {
        if (!request.aborted) json(res, status, payload);
      };
      const check = checkSignature(options.secret, options.signatureWindowMs, Date.now(), timestamp, signature, body, options.signatureTimestampOptional === true);
      if (check !== 'ok') return answer('401 Unauthorized', { error: check, message: 'sign the raw body with HMAC-SHA256 as docs/api.md describes' });
      let transfer: TransferRequest;
      try {
        transfer = parseTransfer(body, options.registry);
      } catch (error) {
        if (error instanceof BadRequest) return answer('400 Bad Request', { error: error.code, message: error.message });
        throw error;
      }
      const scale = options.registry.scaleOf(options.registry.idOfCode(transfer.currency));
      const amount = parseAmount(transfer.amount, scale, AmountSign.Positive);
      if (amount.rejectCode !== RejectCode.None) {
        const reason = rejectCodeName(amount.rejectCode);
        return answer('400 Bad Request', { error: reason, message: `amount ${JSON.stringify(transfer.amount)} is not a positive decimal with at most ${scale} digits after the point` });
      }
      submit(options, transfer, waitCredit).then((outcome) => {
        if (outcome === undefined) return answer('504 Gateway Timeout', { error: 'OUTCOME_TIMEOUT', message: `no durable outcome within ${options.timeoutMs} ms; retry with the same transaction_id to learn it`, tx_id: transfer.transaction_id });
        return answer(statusOf(outcome), outcome);
      }, (error: unknown) => {
        if (error instanceof RecordUnreadable) {
          options.log.warn({ err: error, txId: transfer.transaction_id }, 'transfer not submitted: its transaction_id could not be checked against the stored outcomes');
          return answer('503 Service Unavailable', { error: 'DATABASE_UNAVAILABLE', message: 'the transfer was not submitted: its transaction_id could not be checked against the stored outcomes; retry with the same transaction_id' });
        }
        if (error instanceof OutcomeUnreadable) {
          options.log.error({ err: error, txId: transfer.transaction_id }, 'transfer outcome could not be read');
          return answer('503 Service Unavailable', { error: 'OUTCOME_UNREADABLE', message: 'the transfer was handed to Kafka, but its outcome could not be read right now; retry with the same transaction_id to learn it', tx_id: transfer.transaction_id });
        }
        options.log.error({ err: error, txId: transfer.transaction_id }, 'transfer could not be submitted');
        answer('503 Service Unavailable', { error: 'KAFKA_UNAVAILABLE', message: 'the transfer could not be handed to Kafka; retry with the same transaction_id' });
      });
    });
  });
}

/** Bodies that are this instance's own result events (waitForOwnEvent), not rows read back. */
const fromEvents = new WeakSet<TransactionBody>();

/** The transfer was produced (and its debit may be durable), but its answer could not be read (the database away). */
class OutcomeUnreadable extends Error {}

async function submit(options: TransferRouteOptions, transfer: TransferRequest, waitCredit: boolean): Promise<TransactionBody | undefined> {
  // One deadline for the whole request: every step before and after the wait (the recorded
  // check, the credit half) counts against the same TALLY_TRANSFER_TIMEOUT_MS, except that the
  // read of an accepted transfer's credit half gets CREDIT_READ_GRACE_MS more (withCreditHalf).
  const deadline = Date.now() + options.timeoutMs;
  const debit = await submitDebit(options, transfer, deadline);
  if (debit === undefined || debit.status !== 'accepted') return debit;
  try {
    return await withCreditHalf(options, debit, waitCredit, deadline);
  } catch (error) {
    throw new OutcomeUnreadable(`transfer ${transfer.transaction_id} is durable but its credit half could not be read: ${(error as Error).message}`);
  }
}

/** An accepted debit with its credit half, if it owes one: as it stands, or (waitCredit) once durable or at the deadline. */
async function withCreditHalf(options: TransferRouteOptions, debit: TransactionBody, waitCredit: boolean, deadline: number): Promise<TransactionBody> {
  // The debit is durable and accepted: its answer must not turn into a 503 because the
  // deadline came while its credit half was read. That read gets a short grace, and an event
  // that names its credit (pending) is answered as it is if the read does not come back.
  let body: TransactionBody;
  try {
    body = await withinDeadline(withCredit(options.db, debit, fromEvents.has(debit)), Math.max(deadline, Date.now() + CREDIT_READ_GRACE_MS), 'reading the credit half');
  } catch (error) {
    if (debit.credit === undefined) throw error;
    options.log.warn({ err: error, txId: debit.tx_id }, 'the credit half of an accepted transfer could not be read in time; answered as pending');
    return debit;
  }
  if (!waitCredit || body.credit === undefined || body.credit.status !== 'pending') return body;
  return { ...body, credit: await waitForCredit(options, body, body.credit, deadline) };
}

// The credit's own outcome on `to`'s partition: from memory when this instance applies it,
// else from PostgreSQL; still 'pending' at the deadline.
async function waitForCredit(options: TransferRouteOptions, debit: TransactionBody, credit: CreditStatus, deadline: number): Promise<CreditStatus> {
  if (options.ownsPartition(credit.partition)) {
    const stored = options.cache.get(credit.tx_id);
    const outcome = stored?.partition === credit.partition ? stored : await options.cache.waitFor(credit.tx_id, Math.max(1, deadline - Date.now()), credit.partition);
    // BALANCE_TABLE_FULL is not recorded: the relay sends the credit again, it is still pending.
    if (outcome === undefined || outcome.reason === rejectCodeName(RejectCode.BalanceTableFull)) return credit;
    return { ...credit, status: outcome.status === 'accepted' ? 'applied' : 'rejected', ...(outcome.reason === undefined ? {} : { reason: outcome.reason }) };
  }
  while (Date.now() < deadline) {
    const current = await creditOf(options.db, debit.partition, Number(debit.original_offset ?? debit.offset));
    if (current !== undefined && current.status !== 'pending') return current;
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
  return credit;
}

async function submitDebit(options: TransferRouteOptions, transfer: TransferRequest, deadline: number): Promise<TransactionBody | undefined> {
  const producer = options.producer();
  if (producer === undefined) throw new Error('the command producer is not connected');
  const partition = homePartitionOfAccountDecimal(transfer.from_account, options.partitionCount);
  const command = Buffer.from(JSON.stringify({
    type: 'transfer', tx_id: transfer.transaction_id, from: transfer.from_account, to: transfer.to_account, currency: transfer.currency, amount: transfer.amount,
  }));
  const recorded = await recordedAnswer(options, partition, transfer.transaction_id, command, deadline);
  if (recorded !== undefined) return recorded;
  if (options.ownsPartition(partition)) return waitForOwnEvent(options, producer, partition, transfer, command, deadline);
  const position = await acknowledged(producer, transfer.from_account, command, Math.max(1, deadline - Date.now()));
  if (position === undefined) return undefined;
  return pollOutcomeAt(options, position, transfer.transaction_id, payloadHashOf(command, position, options), deadline);
}

/**
 * This instance applies the partition: the fan-out wakes the waiter with the command's own
 * event (accepted, rejected, duplicate or conflict), recognised by the offset the broker gave
 * the command. Another command with the same tx_id (a concurrent request with another
 * payload, an upstream producer reusing it) has its own event, which is not this answer.
 * The waiter is registered before the command is produced, and events seen before the
 * broker's acknowledgement are kept, since the event may come first. If the partition is
 * handed over while the request waits (a rebalance), its new owner applies the command and
 * the answer comes from PostgreSQL, as for a partition applied elsewhere.
 */
async function waitForOwnEvent(
  options: TransferRouteOptions, producer: CommandProducer, partition: number, transfer: TransferRequest, command: Buffer, deadline: number,
): Promise<TransactionBody | undefined> {
  let offset: string | undefined;
  const early: TransactionBody[] = [];
  const waiter = options.cache.waitForMatch(transfer.transaction_id, Math.max(1, deadline - Date.now()), (from, body) => {
    if (from !== partition) return false;
    if (offset === undefined) early.push(body);
    return body.offset === offset;
  });
  let position: CommandPosition | undefined;
  try {
    position = await acknowledged(producer, transfer.from_account, command, Math.max(1, deadline - Date.now()));
  } finally {
    if (position === undefined) waiter.cancel();
  }
  if (position === undefined) return undefined;
  offset = String(position.offset);
  const seen = early.find((body) => body.offset === offset);
  if (seen !== undefined) waiter.cancel();
  const own = seen ?? await untilHandedOver(options, partition, waiter);
  if (own === HANDED_OVER) return pollOutcomeAt(options, position, transfer.transaction_id, payloadHashOf(command, position, options), deadline);
  if (own !== undefined) fromEvents.add(own);
  return own;
}

const HANDED_OVER = Symbol('handed over');

/** The waiter's outcome, or HANDED_OVER (the waiter cancelled) once this instance no longer applies the partition. */
async function untilHandedOver(
  options: TransferRouteOptions, partition: number, waiter: { outcome: Promise<TransactionBody | undefined>; cancel(): void },
): Promise<TransactionBody | undefined | typeof HANDED_OVER> {
  let timer: NodeJS.Timeout | undefined;
  const handedOver = new Promise<typeof HANDED_OVER>((resolve) => {
    timer = setInterval(() => {
      if (options.ownsPartition(partition)) return;
      // Settled before the cancel settles the waiter's outcome, so the race sees this first.
      resolve(HANDED_OVER);
      waiter.cancel();
    }, POLL_INTERVAL_MS);
  });
  try {
    return await Promise.race([waiter.outcome, handedOver]);
  } finally {
    clearInterval(timer);
  }
}

/** The command's position once the broker acknowledged it, or undefined after `timeoutMs` (a slow or absent broker would otherwise hold the request for librdkafka's message timeout). */
async function acknowledged(producer: CommandProducer, key: string, command: Buffer, timeoutMs: number): Promise<CommandPosition | undefined> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    producer.sendAcknowledged(key, command),
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The engine's payload hash of the command (engine/payload_hash.ts), as tx_outcomes stores it (int8). */
function payloadHashOf(command: Buffer, position: CommandPosition, options: TransferRouteOptions): bigint {
  const views = createCommandSlotViews(1, false);
  decodeJsonCommand(command, position.partition, position.offset, options.partitionCount, options.registry, views, 0);
  return BigInt.asIntN(64, readCommandSlot(views, 0).payloadHash);
}

/** The transaction_id could not be checked against the stored outcomes (the database away): nothing was produced. */
class RecordUnreadable extends Error {}

/** `work`, or a rejection once `deadline` passed first (the work is left to finish on its own; queries are bounded anyway). */
function withinDeadline<T>(work: Promise<T>, deadline: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within the request's timeout`)), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

interface RecordedRow { kafka_offset: string; accepted: boolean; reason: string | null; payload_hash: string }

const RECORDED_SQL = 'SELECT kafka_offset::text AS kafka_offset, accepted, reason, payload_hash::text AS payload_hash FROM tx_outcomes WHERE partition = $1 AND tx_id = $2';

/**
 * The answer to a transaction_id its partition has already recorded (tx_outcomes keeps every
 * recorded tx_id), without producing anything: the same payload gets the stored outcome as a
 * duplicate, another payload DUPLICATE_TX_ID_CONFLICT. The engine's dedup window alone would
 * give the same answers only while the tx_id is among the partition's last TALLY_DEDUP_WINDOW
 * recorded commands; a signed request replayed later (within its signature's window, or at any
 * time with TALLY_SIGNATURE_TIMESTAMP=optional) would be applied again. Undefined when nothing
 * is recorded (a command on its way is still caught by the dedup window, seconds apart).
 */
async function recordedAnswer(options: TransferRouteOptions, partition: number, txId: string, command: Buffer, deadline: number): Promise<TransactionBody | undefined> {
  let rows: RecordedRow[];
  try {
    rows = (await withinDeadline(options.db.query<RecordedRow>(RECORDED_SQL, [partition, txId]), deadline, 'checking the stored outcomes')).rows;
  } catch (error) {
    throw new RecordUnreadable(`the stored outcomes could not be read: ${(error as Error).message}`);
  }
  const row = rows[0];
  if (row === undefined) return undefined;
  if (BigInt(row.payload_hash) !== payloadHashOf(command, { partition, offset: 0 }, options)) {
    return { tx_id: txId, status: 'rejected', reason: rejectCodeName(RejectCode.DuplicateTxIdConflict), partition, offset: row.kafka_offset, original_offset: row.kafka_offset };
  }
  return {
    tx_id: txId, status: row.accepted ? 'accepted' : 'rejected', ...(row.reason === null ? {} : { reason: row.reason }), partition,
    offset: row.kafka_offset, duplicate: true, original_offset: row.kafka_offset,
  };
}

const OUTCOME_AT_SQL = `
  SELECT l.next_offset::float8 AS next_offset, o.kafka_offset::float8 AS kafka_offset, o.accepted, o.reason, o.payload_hash::text AS payload_hash,
         r.reason AS reply_reason
    FROM partition_leases l
    LEFT JOIN tx_outcomes o ON o.partition = l.partition AND o.tx_id = $3
    LEFT JOIN tx_replies r ON r.partition = l.partition AND r.kafka_offset = $4 AND r.tx_id = $3
   WHERE l.topic = $1 AND l.partition = $2`;

/**
 * Another instance applies the partition: the command's outcome is known once the partition's
 * durable offset has passed it. Its own tx_outcomes row, if it recorded one; else the tx_id
 * was in the dedup window at an earlier offset: the same payload is a duplicate (the stored
 * outcome), another payload DUPLICATE_TX_ID_CONFLICT (which the engine does not record) —
 * exactly what the applying instance's result event says.
 */
async function pollOutcomeAt(options: TransferRouteOptions, position: CommandPosition, txId: string, payloadHash: bigint, deadline: number): Promise<TransactionBody | undefined> {
  const offset = String(position.offset);
  let failure: Error | undefined;
  while (Date.now() < deadline) {
    let result: pg.QueryResult<{ next_offset: number; kafka_offset: number | null; accepted: boolean | null; reason: string | null; payload_hash: string | null; reply_reason: string | null }>;
    try {
      result = await options.db.query(OUTCOME_AT_SQL, [options.commandsTopic, position.partition, txId, position.offset]);
      failure = undefined;
    } catch (error) {
      // The command is in the log whatever the database says now: a failed read is tried
      // again until the deadline, and only then reported (503 OUTCOME_UNREADABLE, not 504).
      failure = error as Error;
      await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
      continue;
    }
    const row = result.rows[0];
    // Durable and turned away by the full balance table: not recorded, but its reply is kept
    // (tx_replies) until its event is delivered, about a second; a later poll finds nothing
    // and the request ends in 504, as one whose outcome is unknown.
    if (row !== undefined && row.next_offset > position.offset && row.reply_reason === rejectCodeName(RejectCode.BalanceTableFull)) {
      return { tx_id: txId, status: 'rejected', reason: row.reply_reason, partition: position.partition, offset };
    }
    if (row !== undefined && row.next_offset > position.offset && row.kafka_offset !== null) {
      const stored: TransactionBody = {
        tx_id: txId, status: row.accepted ? 'accepted' : 'rejected', ...(row.reason === null ? {} : { reason: row.reason }), partition: position.partition,
        offset: String(row.kafka_offset),
      };
      // At the command's own offset: its outcome. Later: the command passed unrecorded
      // (BALANCE_TABLE_FULL) and a later command with its tx_id was recorded, which answers
      // this request only if it carries the same payload (a retry of it).
      if (row.kafka_offset === position.offset || (row.kafka_offset > position.offset && BigInt(row.payload_hash!) === payloadHash)) return stored;
      if (BigInt(row.payload_hash!) !== payloadHash) {
        return { tx_id: txId, status: 'rejected', reason: rejectCodeName(RejectCode.DuplicateTxIdConflict), partition: position.partition, offset };
      }
      return { ...stored, offset, duplicate: true, original_offset: stored.offset };
    }
    // Not durable yet, or durable without a stored outcome (BALANCE_TABLE_FULL whose reply
    // was already deleted: the operator must make room; the same transaction_id may be
    // retried): wait, then 504.
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
  if (failure !== undefined) throw new OutcomeUnreadable(`transfer ${txId} was produced at ${position.partition}/${position.offset}, but its outcome could not be read: ${failure.message}`);
  return undefined;
}
