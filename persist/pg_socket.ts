// Ending PostgreSQL connections whose peer may be gone. PostgreSQL's own timeouts
// (statement_timeout, lock_timeout) need a server that answers; a peer that vanished without
// closing the connection (its host crashed, a network partition, a failover to another
// host) leaves every wait on it open, and even client.end() waits for a close that never
// comes. TCP keepalive would take minutes to notice. These helpers end such waits.

import type pg from 'pg';

interface SocketOf {
  connection?: { stream?: { destroyed?: boolean; destroy(error?: Error): void } };
}

/**
 * Closes the client's socket at once: whatever waits on it fails with `reason`. The client
 * then emits 'error' too; a listener is added here so that a client without one cannot end
 * the process (the failure reaches its callers through their own promises).
 */
export function destroySocket(client: pg.Client, reason: Error | undefined): void {
  const stream = (client as unknown as SocketOf).connection?.stream;
  if (stream === undefined || stream.destroyed === true) return;
  client.on('error', ignore);
  stream.destroy(reason);
}

function ignore(): void {}

/** Ends the client politely if the server answers within `graceMs`, else destroys its socket. */
export async function closeWithin(client: pg.Client, graceMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, graceMs);
  });
  await Promise.race([client.end().catch(() => undefined), grace]);
  clearTimeout(timer);
  destroySocket(client, undefined);
}

/** The error withinDeadline() throws when the deadline ended the work. */
export class OverdueError extends Error {}

export function isOverdue(error: unknown): boolean {
  return error instanceof OverdueError;
}

/**
 * Runs `work` on `clients`, destroying their sockets if it has not ended within `deadlineMs`;
 * `work` then fails with an OverdueError.
 */
export async function withinDeadline<T>(clients: readonly pg.Client[], deadlineMs: number, what: string, work: () => Promise<T>): Promise<T> {
  let overdue = false;
  const message = `${what}: no answer from PostgreSQL within ${deadlineMs} ms (a dead peer or a network partition): connection dropped`;
  const watchdog = setTimeout(() => {
    overdue = true;
    for (const client of clients) destroySocket(client, new Error(message));
  }, deadlineMs);
  try {
    return await work();
  } catch (error) {
    throw overdue ? new OverdueError(message, { cause: error }) : error;
  } finally {
    clearTimeout(watchdog);
  }
}
