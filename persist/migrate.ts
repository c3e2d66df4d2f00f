// Numbered SQL migrations (persist/migrations/NNN_name.sql), each applied once, in order,
// in its own transaction, and recorded in tally_schema_migrations. An advisory lock makes
// concurrent start-ups (several instances, tests in parallel) apply each file exactly once.

import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';

const MIGRATION_LOCK_KEY = 0x7a11_0001;

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export function migrationsDirectory(): string {
  // Compiled code runs from dist/persist; the SQL files stay in the source tree.
  const candidates = [path.join(__dirname, 'migrations'), path.join(__dirname, '..', '..', 'persist', 'migrations')];
  for (const dir of candidates) {
    try {
      if (readdirSync(dir).some((f) => f.endsWith('.sql'))) return dir;
    } catch {
      // Try the next candidate.
    }
  }
  throw new Error(`no migrations found in ${candidates.join(' or ')}`);
}

export function loadMigrations(dir = migrationsDirectory()): Migration[] {
  const migrations = readdirSync(dir)
    .filter((file) => file.endsWith('.sql'))
    .map((file) => {
      const match = /^([0-9]{3})_([a-z0-9_]+)\.sql$/.exec(file);
      if (match === null) throw new Error(`migration file ${file} must be named NNN_name.sql`);
      return { version: Number(match[1]), name: match[2]!, sql: readFileSync(path.join(dir, file), 'utf8') };
    })
    .sort((a, b) => a.version - b.version);
  migrations.forEach((m, index) => {
    if (m.version !== index + 1) throw new Error(`migrations must be numbered 001, 002, … without gaps; found ${m.version} at position ${index + 1}`);
  });
  return migrations;
}

// Applies the pending migrations and returns the versions it applied.
export async function migrate(pgUrl: string, migrations = loadMigrations()): Promise<number[]> {
  const client = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 10_000 });
  await client.connect();
  const applied: number[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS tally_schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set((await client.query<{ version: number }>('SELECT version FROM tally_schema_migrations')).rows.map((r) => r.version));
    for (const migration of migrations) {
      if (done.has(migration.version)) continue;
      await applyOne(client, migration);
      applied.push(migration.version);
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    await client.end();
  }
  return applied;
}

async function applyOne(client: pg.Client, migration: Migration): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(migration.sql);
    await client.query('INSERT INTO tally_schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw new Error(`migration ${String(migration.version).padStart(3, '0')}_${migration.name} failed: ${(error as Error).message}`);
  }
}
