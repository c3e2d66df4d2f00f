// What bench:query asks of a load client (wrk or autocannon) and what it gets back.

export type LoadClientName = 'wrk' | 'autocannon';

export interface LoadRequest {
  readonly port: number;
  /** The seeded paths every client walks in order, wrapping around. */
  readonly paths: readonly string[];
  readonly connections: number;
  readonly pipelining: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
  /** autocannon: child processes; wrk: threads (-t). */
  readonly workers: number;
}

export interface LatencyUs {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p99_9: number;
  readonly max: number;
}

export interface LoadResult {
  readonly client: LoadClientName;
  readonly requests: number;
  readonly seconds: number;
  readonly non2xx: number;
  /** Socket errors: connect, read, write. */
  readonly errors: number;
  readonly timeouts: number;
  readonly bytes: number;
  readonly latencyUs: LatencyUs;
  /**
   * What one latency value times: 'request' (autocannon, and wrk without pipelining) or
   * 'batch' (wrk with pipelining: from the write of a batch of `pipelining` requests to the
   * last answer of the batch).
   */
  readonly latencyPer: 'request' | 'batch';
  /** CPU time the client used while timed (user + system). */
  readonly cpuMs: number;
}

/** Upper bound of the latency histograms, and the client's request timeout's order. */
export const LATENCY_US_MAX = 60_000_000;
export const REQUEST_TIMEOUT_SECONDS = 10;
