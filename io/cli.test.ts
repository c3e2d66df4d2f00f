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

test('usage: help exits 0, no command or an unknown one exits 2 with the usage on stderr; a bad setting exits 2 naming it', () => {
  const cli = path.join(__dirname, 'cli.js');
  const run = (args: string[], env: NodeJS.ProcessEnv = process.env) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env, timeout: 30_000 });
  const help = run(['--help']);
  assert.deepEqual([help.status, /usage: tally <command>/.test(help.stderr)], [0, true]);
  for (const args of [[], ['frobnicate']]) {
    const wrong = run(args);
    assert.deepEqual([wrong.status, /usage: tally <command>/.test(wrong.stderr)], [2, true], args.join(' '));
  }
  const bad = run(['migrate'], { ...process.env, TALLY_FLUSH_WORKERS: 'many' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /TALLY_FLUSH_WORKERS: expected .*, got "many"/);
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
