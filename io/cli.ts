#!/usr/bin/env node
// The `tally` command: the operator's entry point. Control plane only; the data plane
// lives in the engine worker and the flush pool.

import { ConfigError, configMarkdownTable, loadConfig, TallyConfig, unknownVariables } from './config';
import { createLogger, Logger } from './logger';
import { Service } from './service';
import { ensureDatabase } from '../persist/database';
import { migrate } from '../persist/migrate';
import { runAudit } from '../persist/audit';
import { resolveCredit } from './resolve_credit';

const USAGE = `usage: tally <command>
  migrate   create the database if missing and apply pending migrations
  start     run the engine service
  audit     check the ledger's invariants in the database; exits 1 with the offending rows
  resolve-credit <credit tx_id>
            refund a cross-partition credit the credited partition rejected (audit lists them)
  config    print the configuration settings as a Markdown table`;

/** `tally start` ends with this code when the engine thread died (logged at level fatal). */
const EXIT_ENGINE_FAILED = 70;

async function runMigrate(config: TallyConfig, log: Logger): Promise<void> {
  if (await ensureDatabase(config.pgUrl)) log.info({ pgUrl: redact(config.pgUrl) }, 'created database');
  const applied = await migrate(config.pgUrl);
  log.info({ applied }, applied.length === 0 ? 'schema up to date' : 'applied migrations');
}

async function runAuditCommand(config: TallyConfig): Promise<number> {
  const findings = await runAudit(config.pgUrl);
  for (const finding of findings) {
    process.stdout.write(`FAIL ${finding.check}: ${finding.description}\n`);
    for (const row of finding.rows) process.stdout.write(`  ${JSON.stringify(row)}\n`);
  }
  if (findings.length === 0) process.stdout.write('audit passed: conservation, balances = journal, one accepted outcome per journalled tx, transit = credits in flight, no stranded credit\n');
  return findings.length === 0 ? 0 : 1;
}

async function runStart(config: TallyConfig, log: Logger): Promise<void> {
  // Listening before anything starts: a stop requested during start-up (migrations, leases,
  // recovery) lets the start finish and then drains as usual, instead of the signal's
  // default action killing the process half-started.
  let startedUp = false;
  const signal = new Promise<string>((resolve) => {
    const onSignal = (name: string): void => {
      if (!startedUp) log.info({ signal: name }, 'stop requested during start-up; stopping once started');
      resolve(name);
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
  });
  await runMigrate(config, log);
  const service = await Service.start(config, log, {
    // Draining needs the engine: exit at once and let the service manager restart Tally.
    onFatal: () => setImmediate(() => process.exit(EXIT_ENGINE_FAILED)),
  });
  startedUp = true;
  log.info({ signal: await signal }, 'stopping');
  await service.stop();
}

function redact(url: string): string {
  const parsed = new URL(url);
  if (parsed.password !== '') parsed.password = '***';
  return parsed.toString();
}

async function main(argv: readonly string[]): Promise<number> {
  const command = argv[0];
  if (command === 'config') {
    process.stdout.write(configMarkdownTable() + '\n');
    return 0;
  }
  if (command !== 'migrate' && command !== 'start' && command !== 'audit' && command !== 'resolve-credit') {
    process.stderr.write(USAGE + '\n');
    return command === 'help' || command === '--help' ? 0 : 2;
  }
  let config: TallyConfig;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`tally: configuration error: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const log = createLogger(config.logLevel);
  for (const { name, closest } of unknownVariables()) {
    log.warn({ variable: name, didYouMean: closest }, `environment variable ${name} is not a Tally setting and is ignored; did you mean ${closest}? (tally config lists them)`);
  }
  try {
    if (command === 'audit') return await runAuditCommand(config);
    if (command === 'resolve-credit') {
      process.stdout.write((await resolveCredit(config, argv[1] ?? '')) + '\n');
      return 0;
    }
    if (command === 'migrate') await runMigrate(config, log);
    else await runStart(config, log);
    return 0;
  } catch (error) {
    // A configuration the database or the broker contradicts (currencies, partition count)
    // is as bad as one that does not parse: exit 2, which systemd does not restart.
    if (error instanceof ConfigError) {
      log.error({ err: error, command }, `tally: configuration error: ${error.message}`);
      return 2;
    }
    log.error({ err: error, command }, 'tally failed');
    return 1;
  }
}

// Exits explicitly: a stopped service must not linger on a handle a library left open.
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`tally: unexpected failure: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
