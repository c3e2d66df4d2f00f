// The baseline's tables: what a team writes on day one. One balance row per (account,
// currency), a journal row per leg, the outcome of every tx_id. Same PostgreSQL server as
// Tally, a scratch database of its own, logged tables, synchronous_commit on.

import pg from 'pg';

export const BASELINE_DDL = `
CREATE TABLE balances (
  account    bigint   NOT NULL,
  currency   text     NOT NULL,
  available  bigint   NOT NULL,
  frozen     bigint   NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (account, currency)
);
CREATE TABLE journal (
  id               bigserial PRIMARY KEY,
  tx_id            text   NOT NULL,
  account          bigint NOT NULL,
  currency         text   NOT NULL,
  delta_available  bigint NOT NULL,
  delta_frozen     bigint NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX journal_account ON journal (account, currency);
CREATE TABLE tx_outcomes (
  tx_id         text    PRIMARY KEY,
  status        text    NOT NULL,
  reason        text,
  kafka_partition integer NOT NULL,
  kafka_offset  bigint  NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);
`;

export async function createBaselineSchema(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(BASELINE_DDL);
  } finally {
    await client.end();
  }
}

/**
 * Bulk-loads the state the workload's preload commands leave (set-up, not measured): every
 * user `firstAccount .. firstAccount+accounts-1` holds `available` and `frozen` minor units of
 * each currency.
 */
export async function preloadBalances(
  url: string, firstAccount: number, accounts: number,
  currencies: ReadonlyArray<{ code: string; available: bigint; frozen: bigint }>,
): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (const currency of currencies) {
      await client.query(
        `INSERT INTO balances (account, currency, available, frozen)
         SELECT a, $3, $4, $5 FROM generate_series($1::bigint, $2::bigint) AS a`,
        [firstAccount, firstAccount + accounts - 1, currency.code, currency.available.toString(), currency.frozen.toString()],
      );
    }
    await client.query('VACUUM ANALYZE balances');
  } finally {
    await client.end();
  }
}
