-- Flushes write hundreds of thousands of journal legs and balance rows per second. The
-- foreign keys from journal.currency_id and balances.currency_id to currencies fire a trigger
-- and probe currencies once per row; measured on a 20 000-command flush they took more
-- database time than inserting the rows themselves (bench/persist.bench.ts). They are
-- replaced by two cheaper guarantees of the same thing:
--   * every flush checks that the currency ids it writes exist, once per connection and id
--     (persist/flush_task.ts checkCurrencies);
--   * currencies are append-only, enforced below: a currency can be neither changed nor
--     removed, so an id found once stays valid (persist/currencies.ts only appends).

ALTER TABLE journal DROP CONSTRAINT journal_currency_id_fkey;
ALTER TABLE balances DROP CONSTRAINT balances_currency_id_fkey;

CREATE FUNCTION tally_currencies_append_only() RETURNS trigger
  LANGUAGE plpgsql
  AS $$ BEGIN
    RAISE EXCEPTION 'currencies are append-only: % is refused (stored amounts refer to currency ids)', TG_OP;
  END $$;

CREATE TRIGGER currencies_append_only BEFORE UPDATE OR DELETE ON currencies
  FOR EACH ROW EXECUTE FUNCTION tally_currencies_append_only();
CREATE TRIGGER currencies_never_truncated BEFORE TRUNCATE ON currencies
  FOR EACH STATEMENT EXECUTE FUNCTION tally_currencies_append_only();
