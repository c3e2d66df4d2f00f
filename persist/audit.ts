// `tally audit`: the ledger's invariants checked in SQL against the database of record.
// Each check returns the offending rows; an empty result everywhere means the ledger holds:
//   1. conservation: per currency, available + frozen summed over every account of every
//      partition is zero (double entry, system accounts included); every posting (the legs
//      of one command) sums to zero per currency; no user balance is negative;
//   2. every balance equals the sum of its journal legs (and no legs without a balance);
//   3. every journalled tx_id has exactly one outcome, an accepted one, and no rejected
//      outcome has journal legs. A tx_id journalled at two offsets was applied twice: a
//      bug if within the dedup window, a client reusing a tx_id beyond it; either way the
//      operator must look, so it is reported;
//   4. transit: per currency, the transit accounts (3) summed over all partitions equal the
//      credits still in flight (outbox rows whose credit is not yet applied and not refunded);
//   5. no stranded credit: a credit the credited partition rejected must be resolved by an
//      operator (tally resolve-credit), which refunds it to the sender.
// "Applied" is decided by journal legs, not by the tx_id's outcome row: a tx_id sent again
// after it left the dedup window moves its outcome row to the new offset (persist/flush_task.ts),
// so a credit applied once and rejected on a later copy has a rejected outcome row and legs.

import pg from 'pg';

export interface AuditCheck {
  readonly name: string;
  readonly description: string;
  readonly sql: string;
  /**
   * Runs with nested loops disabled. A check that joins whole tables wants hash joins; without
   * statistics (tables not yet analyzed: a fresh or restored ledger, a burst autovacuum has
   * not caught up with) the planner expects one row and probes the journal, which has no
   * b-tree, once per credit: 6 000 credits over 23 000 legs took 63 s instead of 28 ms.
   */
  readonly hashJoins?: true;
}

export interface AuditFinding {
  readonly check: string;
  readonly description: string;
  readonly rows: Record<string, unknown>[];
}

const ROWS_SHOWN_MAX = 20;
/** The tx_ids of credits and refunds (engine/reserved_tx_id.ts), as a SQL regular expression literal. */
const CREDIT_TX_ID_PATTERN = "'^~[xr][0-9]{1,9}-[0-9]{1,18}$'";
/** Credits and refunds that were applied: they have journal legs (whatever their outcome row says now). */
const APPLIED_CREDITS_SQL = `SELECT DISTINCT partition, tx_id FROM journal WHERE tx_id ~ ${CREDIT_TX_ID_PATTERN}`;

export const AUDIT_CHECKS: readonly AuditCheck[] = [
  {
    name: 'conservation',
    description: 'per currency, sum(available + frozen) over all accounts and partitions must be 0',
    sql: `SELECT b.currency_id, c.code AS currency, SUM(b.available::numeric + b.frozen::numeric) AS total
            FROM balances b LEFT JOIN currencies c ON c.id = b.currency_id
           GROUP BY b.currency_id, c.code HAVING SUM(b.available::numeric + b.frozen::numeric) <> 0 ORDER BY 1`,
  },
  {
    name: 'posting_balances',
    description: 'the legs of every command must sum to zero per currency (a transfer between users in two unbalanced postings would pass conservation)',
    sql: `SELECT partition, kafka_offset, currency_id, MIN(tx_id) AS tx_id, SUM(delta_available::numeric + delta_frozen::numeric) AS total
            FROM journal GROUP BY partition, kafka_offset, currency_id
          HAVING SUM(delta_available::numeric + delta_frozen::numeric) <> 0
           ORDER BY 1, 2, 3 LIMIT ${ROWS_SHOWN_MAX}`,
  },
  {
    name: 'no_negative_user_balance',
    description: 'a user account (id 1000 or more; ids of 2^63 and more are stored as negative bigints) must never have a negative available or frozen balance',
    sql: `SELECT partition, tally_account_text(account) AS account, currency_id, available, frozen
            FROM balances WHERE (account < 0 OR account >= 1000) AND (available < 0 OR frozen < 0)
           ORDER BY 1, 2, 3 LIMIT ${ROWS_SHOWN_MAX}`,
  },
  {
    name: 'balance_equals_journal',
    description: 'every balance must equal the sum of its journal legs',
    sql: `WITH legs AS (
            SELECT partition, account, currency_id, SUM(delta_available::numeric) AS available, SUM(delta_frozen::numeric) AS frozen
              FROM journal GROUP BY partition, account, currency_id)
          SELECT COALESCE(b.partition, l.partition) AS partition, tally_account_text(COALESCE(b.account, l.account)) AS account,
                 COALESCE(b.currency_id, l.currency_id) AS currency_id,
                 b.available AS balance_available, l.available AS journal_available,
                 b.frozen AS balance_frozen, l.frozen AS journal_frozen
            FROM balances b FULL JOIN legs l USING (partition, account, currency_id)
           WHERE (b.available IS DISTINCT FROM l.available OR b.frozen IS DISTINCT FROM l.frozen)
             -- A balance row at zero with no legs cannot exist, but zero legs summing to zero may.
             AND NOT (b.partition IS NULL AND l.available = 0 AND l.frozen = 0)
           ORDER BY 1, 2, 3 LIMIT ${ROWS_SHOWN_MAX}`,
  },
  {
    name: 'journal_has_one_accepted_outcome',
    description: 'every journalled tx_id must have exactly one outcome: accepted at its journal offset, or rejected at a later offset (the tx_id sent again after it left the dedup window, and refused that time) (journal_offsets > 1: the tx_id was sent again after it left the dedup window and applied again; see TALLY_DEDUP_WINDOW)',
    sql: `SELECT j.partition, j.tx_id, COUNT(DISTINCT j.kafka_offset) AS journal_offsets, o.accepted, o.kafka_offset AS outcome_offset
            FROM journal j LEFT JOIN tx_outcomes o ON o.partition = j.partition AND o.tx_id = j.tx_id
           GROUP BY j.partition, j.tx_id, o.accepted, o.kafka_offset
          HAVING COUNT(DISTINCT j.kafka_offset) <> 1
              OR ((o.accepted AND o.kafka_offset = MIN(j.kafka_offset)) OR (NOT o.accepted AND o.kafka_offset > MAX(j.kafka_offset))) IS NOT TRUE
           ORDER BY 1, 2 LIMIT ${ROWS_SHOWN_MAX}`,
  },
  {
    name: 'rejected_outcome_has_no_journal',
    description: 'a rejected outcome must have no journal legs',
    sql: `SELECT o.partition, o.tx_id, o.reason, o.kafka_offset
            FROM tx_outcomes o JOIN journal j ON j.partition = o.partition AND j.kafka_offset = o.kafka_offset
           WHERE NOT o.accepted
           GROUP BY o.partition, o.tx_id, o.reason, o.kafka_offset
           ORDER BY 1, 2 LIMIT ${ROWS_SHOWN_MAX}`,
  },
  {
    name: 'transit_equals_credits_in_flight',
    hashJoins: true,
    description: 'per currency, the transit accounts (3) summed over all partitions must equal the cross-partition credits still in flight',
    // In flight: neither the credit nor its refund has journal legs (one pass over those legs).
    sql: `WITH applied AS (
            ${APPLIED_CREDITS_SQL}),
          open_credits AS (
            SELECT o.currency_id, SUM(o.amount::numeric) AS amount
              FROM transfer_outbox o
              LEFT JOIN applied c ON c.partition = o.to_partition AND c.tx_id = tally_credit_tx_id(o.partition, o.kafka_offset)
              LEFT JOIN applied r ON r.partition = o.partition AND r.tx_id = tally_refund_tx_id(o.partition, o.kafka_offset)
             WHERE c.partition IS NULL AND r.partition IS NULL
             GROUP BY o.currency_id),
          transit AS (
            SELECT currency_id, SUM(available::numeric + frozen::numeric) AS amount FROM balances WHERE account = 3 GROUP BY currency_id)
          SELECT COALESCE(t.currency_id, o.currency_id) AS currency_id, COALESCE(t.amount, 0) AS transit, COALESCE(o.amount, 0) AS credits_in_flight
            FROM transit t FULL JOIN open_credits o USING (currency_id)
           WHERE COALESCE(t.amount, 0) <> COALESCE(o.amount, 0) ORDER BY 1`,
  },
  {
    name: 'credit_matches_its_transfer',
    hashJoins: true,
    description: 'an applied cross-partition credit (or refund) must pay exactly what its transfer owes: the outbox row\'s account, currency and amount (a credit produced by anything but the relay would not)',
    // Hash joins only (one pass over the credits' journal legs): a NOT EXISTS under an OR would
    // probe the journal, which has no b-tree, once per credit.
    sql: `WITH credits AS (
            SELECT c.partition, c.tx_id, c.kafka_offset, substr(c.tx_id, 2, 1) AS kind,
                   split_part(substr(c.tx_id, 3), '-', 1)::integer AS source_partition, split_part(substr(c.tx_id, 3), '-', 2)::bigint AS source_offset
              FROM tx_outcomes c
             WHERE c.accepted AND c.tx_id ~ ${CREDIT_TX_ID_PATTERN}),
          paid AS (
            SELECT j.partition, j.kafka_offset, j.account, j.currency_id, j.delta_available
              FROM journal j WHERE j.tx_id ~ ${CREDIT_TX_ID_PATTERN} AND j.delta_available > 0)
          SELECT k.partition, k.tx_id, k.kafka_offset, o.to_account, o.from_account, o.currency_id, o.amount
            FROM credits k
            LEFT JOIN transfer_outbox o ON o.partition = k.source_partition AND o.kafka_offset = k.source_offset
            LEFT JOIN paid p ON p.partition = k.partition AND p.kafka_offset = k.kafka_offset AND p.currency_id = o.currency_id AND p.delta_available = o.amount
                            AND p.account = CASE k.kind WHEN 'x' THEN o.to_account ELSE o.from_account END
           WHERE o.partition IS NULL OR p.partition IS NULL
              OR k.partition <> CASE k.kind WHEN 'x' THEN o.to_partition ELSE o.partition END
           ORDER BY 1, 2 LIMIT ${ROWS_SHOWN_MAX}`,
  },
  {
    name: 'no_credit_passed_unapplied',
    description: 'a cross-partition credit the credited partition passed without an outcome (its balance table was full, or the message was lost) is sent again by the relay at its sweeps (every 10 s, once that partition is close enough to the end of its log); make room there (TALLY_BALANCE_CAPACITY) so it can be applied',
    sql: `SELECT o.partition, o.kafka_offset, tally_credit_tx_id(o.partition, o.kafka_offset) AS credit_tx_id, o.to_partition, o.sent_offset,
                 (SELECT max(l.next_offset) FROM partition_leases l WHERE l.partition = o.to_partition) AS credited_partition_next_offset
            FROM transfer_outbox o
           WHERE NOT o.confirmed
             -- Sent and passed, or held back and passed since (sent still false): the relay sends both again.
             AND o.sent_offset < (SELECT max(l.next_offset) FROM partition_leases l WHERE l.partition = o.to_partition)
             AND NOT EXISTS (SELECT 1 FROM tx_outcomes c WHERE c.partition = o.to_partition AND c.tx_id = tally_credit_tx_id(o.partition, o.kafka_offset))
           ORDER BY 1, 2 LIMIT ${ROWS_SHOWN_MAX}`,
  },
  {
    name: 'no_stranded_credit',
    hashJoins: true,
    description: 'a cross-partition credit the credited partition rejected, and never applied, must be resolved: npm run tally -- resolve-credit <credit tx_id> (docs/operations.md); resolution "refunded": its refund is on its way, look again',
    sql: `WITH applied AS (
            ${APPLIED_CREDITS_SQL})
          SELECT o.partition, o.kafka_offset, o.tx_id, tally_credit_tx_id(o.partition, o.kafka_offset) AS credit_tx_id, o.to_partition, c.reason, o.resolution
            FROM transfer_outbox o
            JOIN tx_outcomes c ON c.partition = o.to_partition AND c.tx_id = tally_credit_tx_id(o.partition, o.kafka_offset) AND NOT c.accepted
            LEFT JOIN applied a ON a.partition = o.to_partition AND a.tx_id = c.tx_id
            LEFT JOIN applied r ON r.partition = o.partition AND r.tx_id = tally_refund_tx_id(o.partition, o.kafka_offset)
           WHERE a.partition IS NULL AND r.partition IS NULL
           ORDER BY 1, 2 LIMIT ${ROWS_SHOWN_MAX}`,
  },
];

export async function runAudit(pgUrl: string): Promise<AuditFinding[]> {
  const client = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    // One snapshot for every check, so a running engine cannot make them disagree.
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const findings: AuditFinding[] = [];
    for (const check of AUDIT_CHECKS) {
      if (check.hashJoins === true) await client.query('SET LOCAL enable_nestloop = off');
      const result = await client.query(check.sql);
      if (check.hashJoins === true) await client.query('RESET enable_nestloop');
      if (result.rows.length > 0) findings.push({ check: check.name, description: check.description, rows: result.rows });
    }
    await client.query('COMMIT');
    return findings;
  } finally {
    await client.end();
  }
}
