// What the load generator is asked to do in one phase, and the clock every part of the
// benchmark shares.
//
// Modes:
//   fixed    command i is due at startUs + i / rate: an open-loop schedule. Latency is measured
//            from that INTENDED send time, so a stall anywhere (broker, system under test, this
//            generator) shows up in every command it delayed: no coordinated omission.
//   window   as fast as possible while at most `window` commands are in flight (sent, result
//            event not yet seen), for `durationUs`: the system's sustained capacity. There is
//            no schedule here, so latency is measured from the actual send time.
//   preload  like window, over the workload's preload commands; not reported.

export type LoadMode = 'fixed' | 'window' | 'preload';

export interface LoadPlan {
  readonly phase: number;
  readonly mode: LoadMode;
  /** Commands per second (fixed mode). */
  readonly rate: number;
  /** Commands to send at most. */
  readonly count: number;
  /** Sending stops this long after startUs (window mode). */
  readonly durationUs: number;
  /** In-flight commands at most (window and preload modes). */
  readonly window: number;
  /** When the schedule starts, on the shared clock. */
  readonly startUs: number;
}

export interface LoadReport {
  readonly phase: number;
  readonly sent: number;
  readonly lastSendUs: number;
  /** Times the librdkafka queue was full and the generator had to wait. */
  readonly queueFullWaits: number;
}

/**
 * Microseconds on CLOCK_MONOTONIC, the same clock in every thread and process of the machine,
 * so the generator's worker thread and the result-event listener compare times directly.
 */
export function nowUs(): number {
  const [seconds, nanoseconds] = process.hrtime();
  return seconds * 1e6 + nanoseconds / 1e3;
}
