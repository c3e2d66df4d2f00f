#!/usr/bin/env node
// The `tally` command: the operator's entry point. Control plane only; the data plane
// lives in the engine worker and the flush pool.

import { ConfigError, configMarkdownTable, loadConfig, redactUrl, TallyConfig, unknownVariables } from './config';
import { createLogger, Logger } from './logger';
import { Service } from './service';
import { ensureDatabase } from '../persist/database';
import { migrate } from '../persist/migrate';
import { runAudit } from '../persist/audit';
import { resolveCredit } from './resolve_credit';
import { InstallationError } from './native_addon';

const USAGE = `usage: tally <command>
  migrate   create the database if missing and apply pending migrations
  start     run the engine service
  audit     check the ledger's invariants in the database; exits 1 with the offending
            rows, 3 if it could not check (the database unreachable, say)
  resolve-credit <credit tx_id>
            refund a cross-partition credit the credited partition rejected (audit lists them)
  config    print the configuration settings as a Markdown table`;

/** `tally start` ends with this code when the engine thread died (logged at level fatal). */
const EXIT_ENGINE_FAILED = 70;
/** `tally audit` could not run its checks: not a verdict on the ledger (that is 0 or 1). */
const EXIT_AUDIT_NOT_RUN = 3;
/** Arguments each command takes after its name. */
const ARGUMENT_COUNTS: ReadonlyMap<string, number> = new Map([['migrate', 0], ['start', 0], ['audit', 0], ['resolve-credit', 1], ['config', 0]]);

async function runMigrate(config: TallyConfig, log: Logger): Promise<void> {
  if (await ensureDatabase(config.pgUrl)) log.info({ pgUrl: redactUrl(config.pgUrl) }, 'created database');
  const applied = await migrate(config.pgUrl);
  log.info({ applied }, applied.length === 0 ? 'schema up to date' : 'applied migrations');
}

async function runAuditCommand(config: TallyConfig): Promise<number> {
  let findings: Awaited<ReturnType<typeof runAudit>>;
  try {
    findings = await runAudit(config.pgUrl);
  } catch (error) {
    // On stderr, apart from the verdict on stdout; and its own exit code, so a cron job or an
    // alert tells "the ledger is wrong" from "the audit could not look".
    process.stderr.write(`tally audit: could not run the checks (${redactUrl(config.pgUrl)}): ${(error as Error).message}\n`);
    return EXIT_AUDIT_NOT_RUN;
  }
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

async function main(argv: readonly string[]): Promise<number> {
  const command = argv[0];
  // A help request anywhere only prints the usage: `tally migrate --help` must not migrate.
  if (argv.some((arg) => arg === 'help' || arg === '--help' || arg === '-h')) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const argumentCount = command === undefined ? undefined : ARGUMENT_COUNTS.get(command);
  if (argumentCount === undefined || argv.length !== 1 + argumentCount) {
    const why = command === undefined ? 'no command' : argumentCount === undefined ? `unknown command "${command}"` : `"${command}" takes ${argumentCount === 0 ? 'no arguments' : `${argumentCount} argument`}`;
    process.stderr.write(`tally: ${why}\n${USAGE}\n`);
    return 2;
  }
  if (command === 'config') {
    process.stdout.write(configMarkdownTable() + '\n');
    return 0;
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
      process.stdout.write((await resolveCredit(config, argv[1]!)) + '\n');
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
    // So is an installation missing a piece (a native addon not built): restarts cannot help.
    if (error instanceof InstallationError) {
      log.error({ err: error, command }, `tally: installation error: ${error.message}`);
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
