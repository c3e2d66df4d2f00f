// Keeps the database's currencies table in step with the configured registry. Ids are
// positions in TALLY_CURRENCIES (1-based) and are stored in every balance and journal row,
// so the configuration may only ever append currencies: a changed code or scale for an
// existing id would reinterpret stored amounts, and is refused with a message saying so.

import pg from 'pg';
import { CurrencyRegistry } from '../engine/currency_registry';
import { ConfigError } from '../io/config';

export async function syncCurrencies(client: pg.Client, registry: CurrencyRegistry): Promise<void> {
  const wanted = registry.serialize().currencies.map((c, index) => ({ id: index + 1, code: c.code, scale: c.scale }));
  await client.query(
    `INSERT INTO currencies (id, code, scale) SELECT * FROM unnest($1::smallint[], $2::text[], $3::smallint[]) ON CONFLICT DO NOTHING`,
    [wanted.map((c) => c.id), wanted.map((c) => c.code), wanted.map((c) => c.scale)]);
  const stored = (await client.query<{ id: number; code: string; scale: number }>('SELECT id, code, scale FROM currencies ORDER BY id')).rows;
  for (const row of stored) {
    const configured = wanted[row.id - 1];
    if (configured === undefined) {
      throw new ConfigError(`TALLY_CURRENCIES: the database knows currency ${row.code} (id ${row.id}) but the configuration lists only ${wanted.length} currencies; currencies may only be appended`);
    }
    if (configured.code !== row.code || configured.scale !== row.scale) {
      throw new ConfigError(`TALLY_CURRENCIES: currency id ${row.id} is ${row.code}:${row.scale} in the database but ${configured.code}:${configured.scale} in the configuration; keep existing entries and append new ones`);
    }
  }
}
