// `tally start` as operators run it: a stop requested while it is still starting (here: right
// after its migrations, before leases and recovery) lets the start finish, then drains and
// exits 0, instead of the signal killing a half-started process. And its exit codes for
// usage and configuration errors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { createTopic, testKafkaBrokers, testPgUrl, uniqueName } from './test_services';
import { spawnTally } from './tally_process';
import { createScratchDatabase } from '../persist/scratch_database';

test('SIGTERM during start-up: the start finishes, then the service stops cleanly with exit code 0', { timeout: 120_000 }, async () => {
  const topic = uniqueName('tally.commands.cli');
  await createTopic(topic, 2);
  const database = await createScratchDatabase(testPgUrl, 'tally_cli');
  const tally = spawnTally({
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic, TALLY_COMMAND_PARTITIONS: '2',
    TALLY_CONSUMER_GROUP: uniqueName('cli'), TALLY_PARTITION_ASSIGNMENT: 'static', TALLY_DEDUP_WINDOW: '4096', TALLY_BALANCE_CAPACITY: '4096',
  });
  try {
    // The signal goes out the moment the migrations are logged (the handlers are in place by
    // then, and leases, recovery and the consumer are still ahead), not at a polling interval.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no migrations logged within 60 s\n${tally.output.join('').slice(-3000)}`)), 60_000);
      const watch = (): void => {
        if (!/applied migrations|schema up to date/.test(tally.output.join(''))) return;
        clearTimeout(timer);
        tally.child.stdout!.off('data', watch);
        tally.child.kill('SIGTERM');
        resolve();
      };
      tally.child.stdout!.on('data', watch);
    });
    assert.equal(await tally.exited, 0, `exit code 0\n${tally.output.join('').slice(-3000)}`);
    const log = tally.output.join('');
    assert.match(log, /stop requested during start-up/);
    assert.match(log, /"msg":"stopping"/);
  } finally {
    tally.child.kill('SIGKILL');
    await database.drop();
  }
});

test('usage: help anywhere prints it and exits 0 (`migrate --help` does not migrate); no command, an unknown one or wrong arguments exit 2; a bad setting exits 2 naming it, never showing a secret', () => {
  const cli = path.join(__dirname, 'cli.js');
  const run = (args: string[], env: NodeJS.ProcessEnv = process.env) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env, timeout: 30_000 });
  // An unreachable database: a migrate that ran anyway would fail, not exit 0 with the usage.
  const nowhere = { ...process.env, TALLY_PG_URL: 'postgres://postgres@127.0.0.1:1/tally_cli_help' };
  for (const args of [['--help'], ['migrate', '--help'], ['start', '-h'], ['help']]) {
    const help = run(args, nowhere);
    assert.deepEqual([help.status, /usage: tally <command>/.test(help.stdout), help.stderr], [0, true, ''], args.join(' '));
  }
  for (const args of [[], ['frobnicate'], ['migrate', 'now'], ['resolve-credit'], ['resolve-credit', '~x1-2', 'extra']]) {
    const wrong = run(args, nowhere);
    assert.deepEqual([wrong.status, /usage: tally <command>/.test(wrong.stderr)], [2, true], args.join(' '));
  }
  const bad = run(['migrate'], { ...process.env, TALLY_FLUSH_WORKERS: 'many' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /TALLY_FLUSH_WORKERS: expected .*, got "many"/);
  const secret = run(['migrate'], { ...process.env, TALLY_TRANSFER_SECRET: 'short-secret' });
  assert.deepEqual([secret.status, secret.stderr.includes('short-secret'), /TALLY_TRANSFER_SECRET: expected .*not shown/.test(secret.stderr)], [2, false, true], secret.stderr);
  // A URL that lacks its database, and one that does not parse (a password with a /).
  // (postgres://tally:1234/pw@… parses, the password read as a port and a path.)
  for (const [url, secretText] of [['postgres://tally:hunter2@127.0.0.1:5432/', 'hunter2'], ['postgres://tally:hun/ter2@127.0.0.1:5432/tally', 'hun/ter2'], ['postgres://tally:1234/pw@127.0.0.1:5432/tally', '1234/pw']]) {
    const password = run(['migrate'], { ...process.env, TALLY_PG_URL: url! });
    assert.deepEqual([password.status, password.stderr.includes(secretText!), /TALLY_PG_URL: expected .*tally:\*\*\*@/.test(password.stderr)], [2, false, true], password.stderr);
  }
  for (const [variable, value] of [['TALLY_PG_URL', 'postgres://postgres@127.0.0.1:5432/tally-prod'], ['TALLY_KAFKA_BROKERS', '127.0.0.1:99999']]) {
    const refused = run(['migrate'], { ...process.env, [variable!]: value });
    assert.deepEqual([refused.status, refused.stderr.includes(`${variable}: expected`)], [2, true], refused.stderr);
  }
});

// An audit that cannot reach the database says so on stderr with its own exit code: a cron job
// must tell "the ledger is wrong" (1) from "nobody looked" (3).
test('tally audit against an unreachable database exits 3 with the reason on stderr and no verdict on stdout', () => {
  const cli = path.join(__dirname, 'cli.js');
  const audit = spawnSync(process.execPath, [cli, 'audit'], { encoding: 'utf8', env: { ...process.env, TALLY_PG_URL: 'postgres://postgres:pw@127.0.0.1:1/tally' }, timeout: 60_000 });
  assert.deepEqual([audit.status, audit.stdout, /tally audit: could not run the checks \(postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/tally\)/.test(audit.stderr)], [3, '', true], audit.stderr);
});

// A configuration the broker or the database contradicts is a configuration error too:
// exit 2, which the systemd unit does not restart (RestartPreventExitStatus=2), instead of
// exit 1 and a restart every 2 s for ever.
test('a configuration the broker or the database contradicts (partition count, currencies) exits 2', { timeout: 120_000 }, async () => {
  const topic = uniqueName('tally.commands.cli-mismatch');
  await createTopic(topic, 2);
  const database = await createScratchDatabase(testPgUrl, 'tally_cli_mismatch');
  const base = {
    TALLY_KAFKA_BROKERS: testKafkaBrokers, TALLY_PG_URL: database.url, TALLY_COMMANDS_TOPIC: topic, TALLY_CONSUMER_GROUP: uniqueName('cli'),
    TALLY_PARTITION_ASSIGNMENT: 'static', TALLY_DEDUP_WINDOW: '4096', TALLY_BALANCE_CAPACITY: '4096', TALLY_HTTP_PORT: '0',
  };
  try {
    const partitions = spawnTally({ ...base, TALLY_COMMAND_PARTITIONS: '3', TALLY_CURRENCIES: 'USDT:6' });
    assert.equal(await partitions.exited, 2, partitions.output.join('').slice(-2000));
    assert.match(partitions.output.join(''), /has 2 partitions but TALLY_COMMAND_PARTITIONS is 3/);
    // The database now knows USDT:6 as currency 1; BTC:8 in its place would reinterpret it.
    const currencies = spawnTally({ ...base, TALLY_COMMAND_PARTITIONS: '2', TALLY_CURRENCIES: 'BTC:8' });
    assert.equal(await currencies.exited, 2, currencies.output.join('').slice(-2000));
    assert.match(currencies.output.join(''), /currency id 1 is USDT:6 in the database but BTC:8 in the configuration/);
  } finally {
    await database.drop();
  }
});
