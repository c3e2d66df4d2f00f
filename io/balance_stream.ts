// WebSocket /v1/stream: clients subscribe to accounts and get every durable balance change
// of them, in commit order:
//   → {"op":"subscribe","accounts":["1001","1002"]}      ← {"op":"subscribed","accounts":[…]}
//   → {"op":"unsubscribe","accounts":["1001"]}            ← {"op":"unsubscribed","accounts":[…]}
//   ← {"op":"balance","account":"1001","currency":"USDT","available":"90.25","frozen":"0",
//      "tx_id":"…","partition":3,"offset":"1234"}
//   ← {"op":"error","error":"BAD_MESSAGE","message":"…"}   (the connection stays open)
// A subscriber whose unsent data passes streamBufferBytesMax is closed with code 4008
// (SLOW_CONSUMER) instead of being buffered without bound; it reconnects and reads the
// current balances over HTTP. Pushes are built once per change and sent to every subscriber.
// Only accounts whose home partition this instance applies can be subscribed (others get
// PARTITION_NOT_OWNED or PARTITION_UNAVAILABLE, as over HTTP); when a partition stops being
// applied here (handed over, lease lost), its subscribers are closed with code 4009
// (PARTITION_MOVED), and when a durable change's pushes could not be built (its fan-out
// failed) the subscribers of its partition are closed with code 4010 (PUSHES_LOST), so a
// subscription never goes quiet unnoticed. Subscriptions are bounded per connection and in all.

import uWS from 'uWebSockets.js';
import type { DurableOutcome } from './durable_outcome';
import type { Logger } from './logger';
import { PartitionOwnership, partitionNotHere } from './balance_routes';
import { homePartitionOfAccountDecimal } from '../engine/partitioner';

export const CLOSE_SLOW_CONSUMER = 4008;
export const CLOSE_PARTITION_MOVED = 4009;
export const CLOSE_PUSHES_LOST = 4010;
const SUBSCRIPTIONS_PER_CONNECTION_MAX = 10_000;
/**
 * Subscriptions (connection, account) of all connections together: each costs a few hundred
 * bytes of heap, so without this bound the connections allowed could hold gigabytes.
 */
export const SUBSCRIPTIONS_MAX = 1_000_000;
/** System accounts (ids below 1000) are on every partition and are never pushed. */
const SYSTEM_ACCOUNT_DIGITS_MAX = 3;
/**
 * Unsent data all subscribers together may hold: the connection cap is this divided by what
 * one may hold (at the default 1 MiB bound, about 1 600 connections). More are refused at
 * the upgrade (503) rather than held without bound.
 */
const STREAM_BUFFERS_BYTES_BUDGET = 2 * 1024 * 1024 * 1024;
/** uWS's answer to send() when it dropped the message (its backpressure limit was passed). */
const SEND_DROPPED = 2;
const MESSAGE_BYTES_MAX = 256 * 1024;
const ACCOUNT_PATTERN = /^(0|[1-9][0-9]{0,19})$/;

interface Subscriber {
  readonly accounts: Set<string>;
  closed: boolean;
}

export class BalanceStream {
  private readonly byAccount = new Map<string, Set<uWS.WebSocket<Subscriber>>>();
  /** Subscriptions of all connections together (the sum of their accounts' sizes). */
  subscriptions = 0;
  connections = 0;
  pushes = 0;
  slowConsumersClosed = 0;

  /** Connections at once (STREAM_BUFFERS_BYTES_BUDGET over one connection's worst case). */
  readonly connectionsMax: number;

  constructor(private readonly bufferBytesMax: number, private readonly log: Logger, private readonly ownership?: PartitionOwnership, private readonly subscriptionsMax = SUBSCRIPTIONS_MAX) {
    this.connectionsMax = Math.max(16, Math.floor(STREAM_BUFFERS_BYTES_BUDGET / (bufferBytesMax + MESSAGE_BYTES_MAX)));
  }

  register(app: uWS.TemplatedApp): void {
    app.ws<Subscriber>('/v1/stream', {
      maxPayloadLength: MESSAGE_BYTES_MAX,
      // uWS drops (send() answers 2) what is sent past this limit, 64 KiB by default: it must
      // lie above our own bound, so a slow subscriber is closed, never silently skipped.
      maxBackpressure: this.bufferBytesMax + MESSAGE_BYTES_MAX,
      idleTimeout: 120,
      sendPingsAutomatically: true,
      upgrade: (res, req, context) => {
        if (this.connections >= this.connectionsMax) {
          res.writeStatus('503 Service Unavailable').end(`at most ${this.connectionsMax} stream connections`);
          return;
        }
        res.upgrade<Subscriber>({ accounts: new Set(), closed: false }, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), context);
      },
      open: () => {
        this.connections++;
      },
      message: (ws, message, isBinary) => this.onMessage(ws, message, isBinary),
      close: (ws) => {
        this.connections--;
        const data = ws.getUserData();
        data.closed = true;
        for (const account of data.accounts) this.unsubscribe(ws, account);
        this.subscriptions -= data.accounts.size;
        data.accounts.clear();
      },
    });
  }

  /** True while some connection subscribes to an account (outcomes are then read with their balances). */
  get subscribed(): boolean {
    return this.byAccount.size > 0;
  }

  /** Pushes the balances a durable command changed to their subscribers. */
  publish(outcome: DurableOutcome): void {
    if (this.byAccount.size === 0) return;
    for (const balance of outcome.balances) {
      const subscribers = this.byAccount.get(balance.account);
      if (subscribers === undefined) continue;
      const push = `{"op":"balance","account":"${balance.account}","currency":${JSON.stringify(balance.currency)},"available":"${balance.available}","frozen":"${balance.frozen}",` +
        `"tx_id":${JSON.stringify(outcome.txId)},"partition":${balance.partition},"offset":"${outcome.offset}"}`;
      for (const ws of subscribers) this.send(ws, push);
    }
  }

  private send(ws: uWS.WebSocket<Subscriber>, text: string): void {
    if (ws.getUserData().closed) return;
    if (ws.getBufferedAmount() + text.length > this.bufferBytesMax) return this.closeSlow(ws);
    // Dropped only if the limit above were wrong; a subscriber must never miss a push unnoticed.
    if (ws.send(text, false) === SEND_DROPPED) return this.closeSlow(ws);
    this.pushes++;
  }

  private closeSlow(ws: uWS.WebSocket<Subscriber>): void {
    this.slowConsumersClosed++;
    this.log.warn({ buffered: ws.getBufferedAmount(), limit: this.bufferBytesMax }, 'closing a WebSocket subscriber that cannot keep up');
    ws.getUserData().closed = true;
    ws.end(CLOSE_SLOW_CONSUMER, 'SLOW_CONSUMER: too much unsent data; reconnect and read balances over HTTP');
  }

  private onMessage(ws: uWS.WebSocket<Subscriber>, message: ArrayBuffer, isBinary: boolean): void {
    const fail = (error: string, text: string): void => this.send(ws, JSON.stringify({ op: 'error', error, message: text }));
    if (isBinary) return fail('BAD_MESSAGE', 'messages are JSON text');
    let request: unknown;
    try {
      request = JSON.parse(Buffer.from(message).toString('utf8'));
    } catch {
      return fail('MALFORMED_JSON', 'the message is not valid JSON');
    }
    const { op, accounts } = (request ?? {}) as { op?: unknown; accounts?: unknown };
    if (op !== 'subscribe' && op !== 'unsubscribe') return fail('BAD_OP', 'op must be "subscribe" or "unsubscribe"');
    if (!Array.isArray(accounts) || accounts.length === 0 || !accounts.every((a) => typeof a === 'string' && ACCOUNT_PATTERN.test(a) && BigInt(a) < 1n << 64n)) {
      return fail('BAD_ACCOUNTS', 'accounts must be a non-empty array of unsigned 64-bit decimal account ids');
    }
    const data = ws.getUserData();
    const list = accounts as string[];
    if (op === 'subscribe') {
      const fresh = new Set(list.filter((account) => !data.accounts.has(account)));
      if (data.accounts.size + fresh.size > SUBSCRIPTIONS_PER_CONNECTION_MAX) return fail('TOO_MANY_SUBSCRIPTIONS', `at most ${SUBSCRIPTIONS_PER_CONNECTION_MAX} accounts per connection`);
      if (this.subscriptions + fresh.size > this.subscriptionsMax) return fail('TOO_MANY_SUBSCRIPTIONS', `this server holds at most ${this.subscriptionsMax} subscriptions over all connections; try another instance or later`);
      const elsewhere = this.notAppliedHere(list);
      if (elsewhere !== undefined) return this.send(ws, JSON.stringify(elsewhere));
      for (const account of fresh) {
        data.accounts.add(account);
        // A system account is subscribed but never pushed (docs/api.md): it changes with
        // nearly every command of every partition applied here.
        if (account.length <= SYSTEM_ACCOUNT_DIGITS_MAX) continue;
        let set = this.byAccount.get(account);
        if (set === undefined) this.byAccount.set(account, (set = new Set()));
        set.add(ws);
      }
      this.subscriptions += fresh.size;
      return this.send(ws, JSON.stringify({ op: 'subscribed', accounts: list }));
    }
    for (const account of list) {
      if (data.accounts.delete(account)) this.subscriptions--;
      this.unsubscribe(ws, account);
    }
    this.send(ws, JSON.stringify({ op: 'unsubscribed', accounts: list }));
  }

  /**
   * The error answering a subscribe that names a user account whose home partition this
   * instance does not apply (nothing of it would ever be pushed here), or undefined.
   */
  private notAppliedHere(accounts: readonly string[]): object | undefined {
    const ownership = this.ownership;
    if (ownership === undefined) return undefined;
    for (const account of accounts) {
      if (account.length <= SYSTEM_ACCOUNT_DIGITS_MAX) continue;
      const partition = homePartitionOfAccountDecimal(account, ownership.partitionCount);
      if (ownership.owns(partition)) continue;
      const { body } = partitionNotHere(ownership, partition);
      if (body.error !== 'PARTITION_NOT_OWNED') return { op: 'error', account, ...body };
      const owner = body.owner;
      return { op: 'error', account, ...body, message: `account ${account} lives on partition ${partition}, applied by ${owner === undefined ? 'another instance' : `instance ${owner}`}; subscribe there` };
    }
    return undefined;
  }

  /**
   * The partitions are no longer applied here: their subscribers would hear nothing more, so
   * every connection subscribed to an account of theirs is closed with 4009 (the client
   * reconnects, to the partition's new owner, and reads the current balances over HTTP).
   */
  partitionsLeft(partitions: readonly number[]): void {
    this.closeSubscribersOf(partitions, CLOSE_PARTITION_MOVED, 'PARTITION_MOVED: a subscribed account\'s partition is no longer applied here; reconnect and read balances over HTTP');
  }

  /**
   * A durable change of the partition reached no subscriber (its fan-out failed, and which
   * accounts it changed is not known): every connection subscribed to an account of the
   * partition is closed with 4010, and reads the current balances over HTTP after reconnecting.
   */
  pushesLost(partition: number): void {
    this.closeSubscribersOf([partition], CLOSE_PUSHES_LOST, 'PUSHES_LOST: a durable change of a subscribed account could not be pushed; reconnect and read balances over HTTP');
  }

  // A close frame carries at most 123 bytes of reason (RFC 6455: 125 bytes of payload, 2 of
  // them the code); the reasons above stay within it, so clients read them whole.
  private closeSubscribersOf(partitions: readonly number[], code: number, reason: string): void {
    const ownership = this.ownership;
    if (ownership === undefined || this.byAccount.size === 0 || partitions.length === 0) return;
    const of = new Set(partitions);
    const closing = new Set<uWS.WebSocket<Subscriber>>();
    for (const [account, subscribers] of this.byAccount) {
      if (account.length <= SYSTEM_ACCOUNT_DIGITS_MAX || !of.has(homePartitionOfAccountDecimal(account, ownership.partitionCount))) continue;
      for (const ws of subscribers) closing.add(ws);
    }
    if (closing.size === 0) return;
    this.log.info({ partitions, connections: closing.size, code }, 'closing WebSocket subscribers of partitions');
    for (const ws of closing) {
      if (ws.getUserData().closed) continue;
      ws.getUserData().closed = true;
      ws.end(code, reason);
    }
  }

  private unsubscribe(ws: uWS.WebSocket<Subscriber>, account: string): void {
    const set = this.byAccount.get(account);
    if (set === undefined) return;
    set.delete(ws);
    if (set.size === 0) this.byAccount.delete(account);
  }
}
