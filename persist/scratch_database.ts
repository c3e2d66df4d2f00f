// A migrated database of its own for one test or benchmark run, dropped at the end, so runs
// can go in parallel and leave nothing behind (the pattern of migrate.test.ts).

import pg from 'pg';
import { ensureDatabase, withDatabase } from './database';
import { migrate } from './migrate';
import { uniqueName } from '../io/test_services';

export interface ScratchDatabase {
  readonly name: string;
  readonly url: string;
  /** Drops the database, closing any connection still open to it. */
  drop(): Promise<void>;
}

export async function createScratchDatabase(serverUrl: string, prefix: string): Promise<ScratchDatabase> {
  const name = uniqueName(prefix);
  const url = withDatabase(serverUrl, name);
  await ensureDatabase(url);
  const drop = async (): Promise<void> => {
    const admin = new pg.Client({ connectionString: withDatabase(serverUrl, 'postgres') });
    await admin.connect();
    try {
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    } finally {
      await admin.end();
    }
  };
  try {
    await migrate(url);
  } catch (error) {
    await drop();
    throw error;
  }
  return { name, url, drop };
}
