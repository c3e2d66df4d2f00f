import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createScratchDatabase } from './scratch_database';
import { syncCurrencies } from './currencies';
import { CurrencyRegistry } from '../engine/currency_registry';
import { testPgUrl } from '../io/test_services';

test('currencies are appended, and a reordered or rescaled configuration is refused', { timeout: 30_000 }, async () => {
  const database = await createScratchDatabase(testPgUrl, 'tally_currencies');
  const url = database.url;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await syncCurrencies(client, CurrencyRegistry.fromConfig([{ code: 'USDT', scale: 6 }, { code: 'BTC', scale: 8 }]));
    await syncCurrencies(client, CurrencyRegistry.fromConfig([{ code: 'USDT', scale: 6 }, { code: 'BTC', scale: 8 }, { code: 'ETH', scale: 8 }]));
    const rows = (await client.query('SELECT id, code, scale FROM currencies ORDER BY id')).rows;
    assert.deepEqual(rows, [{ id: 1, code: 'USDT', scale: 6 }, { id: 2, code: 'BTC', scale: 8 }, { id: 3, code: 'ETH', scale: 8 }]);
    await assert.rejects(syncCurrencies(client, CurrencyRegistry.fromConfig([{ code: 'BTC', scale: 8 }, { code: 'USDT', scale: 6 }, { code: 'ETH', scale: 8 }])), /currency id 1 is USDT:6 in the database but BTC:8/);
    await assert.rejects(syncCurrencies(client, CurrencyRegistry.fromConfig([{ code: 'USDT', scale: 6 }])), /only be appended/);
  } finally {
    await client.end();
    await database.drop();
  }
});
