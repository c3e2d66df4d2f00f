import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, configMarkdownTable, loadConfig, unknownVariables } from './config';

test('defaults are valid and typed', () => {
  const config = loadConfig({}, undefined);
  assert.equal(config.kafkaBrokers, '127.0.0.1:9092');
  assert.equal(config.httpPort, 8080);
  assert.equal(config.commandPartitions, 8);
  assert.deepEqual(config.currencies[0], { code: 'USDT', scale: 8 });
});

test('environment overrides the file, the file overrides defaults', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tally-config-'));
  const file = path.join(dir, 'tally.json');
  writeFileSync(file, JSON.stringify({ httpPort: 9000, dedupWindow: 5000, currencies: 'BTC:8,USDT:6' }));
  const config = loadConfig({ TALLY_HTTP_PORT: '9100' }, file);
  assert.equal(config.httpPort, 9100);
  assert.equal(config.dedupWindow, 5000);
  assert.deepEqual(config.currencies, [{ code: 'BTC', scale: 8 }, { code: 'USDT', scale: 6 }]);
});

test('errors name the key, the source and the expected form', () => {
  assert.throws(() => loadConfig({ TALLY_HTTP_PORT: 'eighty' }, undefined), (e: unknown) =>
    e instanceof ConfigError && /TALLY_HTTP_PORT: expected an integer from 0 to 65535, got "eighty"/.test(e.message));
  assert.throws(() => loadConfig({ TALLY_PG_URL: 'mysql://x/y' }, undefined), /TALLY_PG_URL: expected postgres:/);
  assert.throws(() => loadConfig({ TALLY_CURRENCIES: 'usdt' }, undefined), /TALLY_CURRENCIES/);
  assert.throws(() => loadConfig({ TALLY_CURRENCIES: 'BTC:19' }, undefined), /TALLY_CURRENCIES/);
  assert.throws(() => loadConfig({ TALLY_KAFKA_BROKERS: 'localhost' }, undefined), /TALLY_KAFKA_BROKERS: expected host:port/);
});

test('a config file with an unknown key or bad JSON is refused', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tally-config-'));
  const unknown = path.join(dir, 'unknown.json');
  writeFileSync(unknown, JSON.stringify({ httpPrt: 1 }));
  assert.throws(() => loadConfig({}, unknown), /unknown setting "httpPrt"/);
  const broken = path.join(dir, 'broken.json');
  writeFileSync(broken, '{');
  assert.throws(() => loadConfig({}, broken), /not valid JSON/);
  assert.throws(() => loadConfig({}, path.join(dir, 'missing.json')), /cannot read config file/);
});

test('the README table lists every environment variable, exactly as `tally config` prints it', () => {
  const table = configMarkdownTable();
  for (const name of ['TALLY_KAFKA_BROKERS', 'TALLY_PG_URL', 'TALLY_HTTP_PORT', 'TALLY_CURRENCIES']) assert.match(table, new RegExp(name));
  const readme = new Set(readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8').split('\n'));
  const missing = table.split('\n').filter((row) => !readme.has(row));
  assert.deepEqual(missing, [], 'README.md rows out of date: run `npm run -s tally -- config` and paste its table');
});

test('engineCpu is off by default and takes a core number', () => {
  assert.equal(loadConfig({}, undefined).engineCpu, null);
  assert.equal(loadConfig({ TALLY_ENGINE_CPU: '' }, undefined).engineCpu, null);
  assert.equal(loadConfig({ TALLY_ENGINE_CPU: '1' }, undefined).engineCpu, 1);
  assert.throws(() => loadConfig({ TALLY_ENGINE_CPU: 'one' }, undefined), /TALLY_ENGINE_CPU: expected a CPU core number/);
});

test('engineCore is auto by default and takes auto, native or typescript', () => {
  assert.equal(loadConfig({}, undefined).engineCore, 'auto');
  assert.equal(loadConfig({ TALLY_ENGINE_CORE: 'typescript' }, undefined).engineCore, 'typescript');
  assert.equal(loadConfig({ TALLY_ENGINE_CORE: 'native' }, undefined).engineCore, 'native');
  assert.throws(() => loadConfig({ TALLY_ENGINE_CORE: 'c' }, undefined), /TALLY_ENGINE_CORE: expected auto, native or typescript/);
});

test('a misspelled TALLY_ variable is reported with the setting it resembles; settings and script variables are not', () => {
  assert.deepEqual(unknownVariables({ TALLY_PG_URl: 'postgres://x/y', TALLY_KAFKA_BROKER: 'k:9092', TALLY_PG_URL: 'postgres://a/b', TALLY_KAFKA_PORT: '19092', TALLY_CONFIG: '/etc/t.json', PATH: '/bin' }), [
    { name: 'TALLY_KAFKA_BROKER', closest: 'TALLY_KAFKA_BROKERS' },
    { name: 'TALLY_PG_URl', closest: 'TALLY_PG_URL' },
  ]);
  assert.deepEqual(unknownVariables({}), []);
});
