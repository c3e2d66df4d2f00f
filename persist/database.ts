// Control-plane helpers for reaching PostgreSQL: connection strings and creating the
// database on first use. The data plane (flush workers) opens its own connections.

import pg from 'pg';

export function withDatabase(pgUrl: string, database: string): string {
  const url = new URL(pgUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

/**
 * A database name Tally accepts: letters, digits and _, not starting with a digit, at most
 * 63 characters (PostgreSQL's limit), so it needs no escaping anywhere it is written.
 */
export function isDatabaseName(name: string): boolean {
  return /^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name);
}

export function databaseName(pgUrl: string): string {
  const name = decodeURIComponent(new URL(pgUrl).pathname.replace(/^\//, ''));
  if (!isDatabaseName(name)) {
    throw new Error(`TALLY_PG_URL: database name "${name}" must match [A-Za-z_][A-Za-z0-9_]* (at most 63 characters)`);
  }
  return name;
}

// Creates the database named in pgUrl if it does not exist. It connects to that database
// first: a role (or pg_hba rule) allowed only there must not need the maintenance database.
// Only when the server answers that the database does not exist (SQLSTATE 3D000) does it
// connect to the `postgres` maintenance database to create it.
export async function ensureDatabase(pgUrl: string): Promise<boolean> {
  const name = databaseName(pgUrl);
  const probe = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 10_000 });
  try {
    await probe.connect();
    return false;
  } catch (error) {
    if ((error as { code?: string }).code !== '3D000') throw error;
  } finally {
    await probe.end().catch(() => undefined);
  }
  const client = new pg.Client({ connectionString: withDatabase(pgUrl, 'postgres'), connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount !== 0) return false;
    try {
      await client.query(`CREATE DATABASE "${name}"`);
    } catch (error) {
      // Another process may have created it between our check and our CREATE.
      if ((error as { code?: string }).code !== '42P04') throw error;
      return false;
    }
    return true;
  } finally {
    await client.end();
  }
}
