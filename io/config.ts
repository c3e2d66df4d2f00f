// Tally's configuration: one typed object, read once at start-up from defaults, an
// optional JSON config file and environment variables (in rising precedence), and
// validated before anything starts. Every error names the key, where it came from and the
// expected form, so a bad deployment fails in its first second with a useful message.

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isDatabaseName } from '../persist/database';

export interface CurrencyConfig {
  readonly code: string;
  readonly scale: number;
}

export interface TallyConfig {
  readonly kafkaBrokers: string;
  readonly commandsTopic: string;
  readonly eventsTopic: string;
  readonly commandPartitions: number;
  readonly consumerGroup: string;
  readonly pgUrl: string;
  readonly httpHost: string;
  readonly httpPort: number;
  readonly logLevel: string;
  readonly instanceId: string;
  readonly currencies: readonly CurrencyConfig[];
  readonly balanceCapacity: number;
  readonly dedupWindow: number;
  readonly flushWorkers: number;
  readonly batchRowsMax: number;
  readonly batchIntervalMs: number;
  readonly leaseTtlMs: number;
  readonly partitionAssignment: 'group' | 'static';
  readonly sessionTimeoutMs: number;
  readonly transferSecret: string;
  readonly transferTimeoutMs: number;
  readonly signatureWindowMs: number;
  readonly signatureTimestamp: 'required' | 'optional';
  readonly httpBodyBytesMax: number;
  readonly outcomeCacheSize: number;
  readonly streamBufferBytesMax: number;
  /** Core the engine thread is pinned to; null: no pinning. */
  readonly engineCpu: number | null;
  readonly engineCore: 'auto' | 'native' | 'typescript';
}

type Parser = (raw: unknown) => unknown;

interface Setting {
  readonly key: keyof TallyConfig;
  readonly env: string;
  readonly form: string;
  readonly defaultValue: string;
  readonly parse: Parser;
  readonly description: string;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

function integerIn(min: number, max: number): Parser {
  return (raw) => {
    const text = String(raw).trim();
    if (!/^[0-9]+$/.test(text)) return undefined;
    const value = Number(text);
    return Number.isSafeInteger(value) && value >= min && value <= max ? value : undefined;
  };
}

// 'none' or empty (an env file's `KEY=`) means the setting is off: null.
function optionalIntegerIn(min: number, max: number): Parser {
  const integer = integerIn(min, max);
  return (raw) => (raw === null || String(raw).trim() === '' || String(raw).trim() === 'none' ? null : integer(raw));
}

function nonEmptyMatching(pattern: RegExp): Parser {
  return (raw) => (typeof raw === 'string' && pattern.test(raw) ? raw : undefined);
}

function parseBrokers(raw: unknown): unknown {
  if (typeof raw !== 'string') return undefined;
  const brokers = raw.split(',').map((b) => b.trim());
  const valid = (broker: string): boolean => {
    const match = /^[A-Za-z0-9.\-_[\]:]+:([0-9]{1,5})$/.exec(broker);
    return match !== null && Number(match[1]) >= 1 && Number(match[1]) <= 65535;
  };
  return brokers.every(valid) ? brokers.join(',') : undefined;
}

// The database name is checked here too: a URL without one (or with one Tally cannot create)
// must stop the start as a configuration error (exit 2, not restarted), not fail later.
function parsePgUrl(raw: unknown): unknown {
  if (typeof raw !== 'string') return undefined;
  try {
    const url = new URL(raw);
    if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') return undefined;
    return isDatabaseName(decodeURIComponent(url.pathname.replace(/^\//, ''))) ? raw : undefined;
  } catch {
    return undefined;
  }
}

function parseCurrencies(raw: unknown): unknown {
  if (typeof raw !== 'string') return undefined;
  const currencies: CurrencyConfig[] = [];
  for (const entry of raw.split(',')) {
    const match = /^\s*([A-Z0-9]{1,16})(?::([0-9]{1,2}))?\s*$/.exec(entry);
    if (match === null) return undefined;
    const scale = match[2] === undefined ? 8 : Number(match[2]);
    if (scale > 18 || currencies.some((c) => c.code === match[1])) return undefined;
    currencies.push({ code: match[1]!, scale });
  }
  // Currency ids are smallint in PostgreSQL.
  return currencies.length > 0 && currencies.length <= 32767 ? currencies : undefined;
}

const SETTINGS: readonly Setting[] = [
  { key: 'kafkaBrokers', env: 'TALLY_KAFKA_BROKERS', form: 'host:port[,host:port…]', defaultValue: '127.0.0.1:9092', parse: parseBrokers, description: 'Kafka bootstrap brokers.' },
  { key: 'commandsTopic', env: 'TALLY_COMMANDS_TOPIC', form: 'a Kafka topic name', defaultValue: 'tally.commands', parse: nonEmptyMatching(/^[A-Za-z0-9._-]{1,249}$/), description: 'Topic the balance commands arrive on.' },
  { key: 'eventsTopic', env: 'TALLY_EVENTS_TOPIC', form: 'a Kafka topic name', defaultValue: 'tally.events', parse: nonEmptyMatching(/^[A-Za-z0-9._-]{1,249}$/), description: 'Topic result events are published to.' },
  { key: 'commandPartitions', env: 'TALLY_COMMAND_PARTITIONS', form: 'an integer from 1 to 65535', defaultValue: '8', parse: integerIn(1, 65535), description: 'Partition count of the commands topic; decides every account\'s home partition.' },
  { key: 'consumerGroup', env: 'TALLY_CONSUMER_GROUP', form: 'a group id', defaultValue: 'tally', parse: nonEmptyMatching(/^[A-Za-z0-9._-]{1,249}$/), description: 'Kafka consumer group shared by the instances.' },
  { key: 'pgUrl', env: 'TALLY_PG_URL', form: 'postgres://user@host:port/database (a database name of letters, digits and _)', defaultValue: 'postgres://postgres@127.0.0.1:5432/tally', parse: parsePgUrl, description: 'PostgreSQL connection URL; the database is created if missing.' },
  { key: 'httpHost', env: 'TALLY_HTTP_HOST', form: 'an IP address or host name', defaultValue: '127.0.0.1', parse: nonEmptyMatching(/^[A-Za-z0-9.:-]{1,253}$/), description: 'Address the HTTP/WebSocket server binds.' },
  { key: 'httpPort', env: 'TALLY_HTTP_PORT', form: 'an integer from 0 to 65535', defaultValue: '8080', parse: integerIn(0, 65535), description: 'Port of the HTTP/WebSocket server (0 picks a free port).' },
  { key: 'logLevel', env: 'TALLY_LOG_LEVEL', form: 'one of trace, debug, info, warn, error, fatal, silent', defaultValue: 'info', parse: nonEmptyMatching(/^(trace|debug|info|warn|error|fatal|silent)$/), description: 'Log level of the JSON logs on stdout.' },
  { key: 'instanceId', env: 'TALLY_INSTANCE_ID', form: '1 to 64 characters [A-Za-z0-9._:-]', defaultValue: '<hostname>-<pid>', parse: nonEmptyMatching(/^[A-Za-z0-9._:-]{1,64}$/), description: 'Owner name written into partition leases.' },
  { key: 'currencies', env: 'TALLY_CURRENCIES', form: 'CODE[:scale][,CODE[:scale]…], scale 0 to 18', defaultValue: 'USDT:8,BTC:8,ETH:8,SOL:8', parse: parseCurrencies, description: 'Known currencies and their scales (digits after the point).' },
  { key: 'balanceCapacity', env: 'TALLY_BALANCE_CAPACITY', form: 'an integer from 1024 to 268435456', defaultValue: '4194304', parse: integerIn(1024, 268435456), description: 'Maximum (account, currency) balances held in memory.' },
  { key: 'dedupWindow', env: 'TALLY_DEDUP_WINDOW', form: 'an integer from 1024 to 100000000', defaultValue: '10000000', parse: integerIn(1024, 100000000), description: 'How many recent tx_ids are remembered for deduplication, per partition.' },
  { key: 'flushWorkers', env: 'TALLY_FLUSH_WORKERS', form: 'an integer from 1 to 64', defaultValue: '2', parse: integerIn(1, 64), description: 'Flush worker threads, each with its own PostgreSQL connection; partition p is flushed by group p % flushWorkers.' },
  { key: 'batchRowsMax', env: 'TALLY_BATCH_ROWS_MAX', form: 'an integer from 1 to 1000000', defaultValue: '20000', parse: integerIn(1, 1000000), description: 'Commands per flush batch at most.' },
  { key: 'batchIntervalMs', env: 'TALLY_BATCH_INTERVAL_MS', form: 'an integer from 0 to 10000', defaultValue: '10', parse: integerIn(0, 10000), description: 'A batch is cut at the latest this long after its first command (lower: less latency at low rates, more flush transactions per second).' },
  { key: 'leaseTtlMs', env: 'TALLY_LEASE_TTL_MS', form: 'an integer from 1000 to 600000', defaultValue: '10000', parse: integerIn(1000, 600000), description: 'Partition lease time to live; leases are renewed every third of it, and one not renewed in time counts as lost.' },
  { key: 'partitionAssignment', env: 'TALLY_PARTITION_ASSIGNMENT', form: 'group or static', defaultValue: 'group', parse: nonEmptyMatching(/^(group|static)$/), description: 'group: the instances of the consumer group split the partitions and take each other\'s over; static: this instance takes every partition at start (one instance, or an operator-driven failover).' },
  { key: 'sessionTimeoutMs', env: 'TALLY_KAFKA_SESSION_TIMEOUT_MS', form: 'an integer from 6000 to 300000', defaultValue: '10000', parse: integerIn(6000, 300000), description: 'Consumer group session timeout: how long a silent instance keeps its partitions before the others take them over.' },
  { key: 'transferSecret', env: 'TALLY_TRANSFER_SECRET', form: 'at least 16 characters, or empty to disable the transfer API', defaultValue: '', parse: (raw) => (typeof raw === 'string' && (raw === '' || raw.length >= 16) ? raw : undefined), description: 'Shared secret of the HMAC-SHA256 signatures of POST /v1/wallet/balance_transfer (docs/api.md); empty answers 503.' },
  { key: 'transferTimeoutMs', env: 'TALLY_TRANSFER_TIMEOUT_MS', form: 'an integer from 100 to 600000', defaultValue: '10000', parse: integerIn(100, 600000), description: 'How long a transfer request waits for its durable outcome before answering 504.' },
  { key: 'signatureTimestamp', env: 'TALLY_SIGNATURE_TIMESTAMP', form: 'required or optional', defaultValue: 'required', parse: nonEmptyMatching(/^(required|optional)$/), description: 'required: a transfer request signs x-tally-timestamp + "." + body (replays bounded by the window); optional: a request without x-tally-timestamp may sign the body alone, as ARCHITECTURE.md words it (a captured request can then be replayed, and applied again once its transaction_id left the dedup window).' },
  { key: 'signatureWindowMs', env: 'TALLY_SIGNATURE_WINDOW_MS', form: 'an integer from 1000 to 3600000', defaultValue: '300000', parse: integerIn(1000, 3600000), description: 'A signed request\'s timestamp may differ from the server clock by at most this much.' },
  { key: 'httpBodyBytesMax', env: 'TALLY_HTTP_BODY_BYTES_MAX', form: 'an integer from 256 to 16777216', defaultValue: '65536', parse: integerIn(256, 16777216), description: 'Largest HTTP request body accepted; larger ones get 413.' },
  { key: 'outcomeCacheSize', env: 'TALLY_OUTCOME_CACHE_SIZE', form: 'an integer from 0 to 10000000', defaultValue: '200000', parse: integerIn(0, 10000000), description: 'Recent durable outcomes kept in memory for GET /v1/transactions (outside the JS heap, 256 bytes of arena each, 1 GiB at most: above about 4.19 M the arena, not this setting, bounds it); older ones are read from PostgreSQL.' },
  { key: 'streamBufferBytesMax', env: 'TALLY_STREAM_BUFFER_BYTES_MAX', form: 'an integer from 4096 to 268435456', defaultValue: '1048576', parse: integerIn(4096, 268435456), description: 'A WebSocket subscriber with more than this many bytes unsent is closed (code 4008) instead of buffered.' },
  { key: 'engineCpu', env: 'TALLY_ENGINE_CPU', form: 'a CPU core number from 0 to 4095, or none', defaultValue: 'none', parse: optionalIntegerIn(0, 4095), description: 'Core the engine thread pins itself to; every other thread of the process then stays off it (Linux, needs taskset; see docs/operations.md). A core that cannot be used is logged as a warning and the engine runs unpinned.' },
  { key: 'engineCore', env: 'TALLY_ENGINE_CORE', form: 'auto, native or typescript', defaultValue: 'auto', parse: nonEmptyMatching(/^(auto|native|typescript)$/), description: 'Who applies the engine\'s command batches: native, the C core built by npm run build (x86-64 Linux; the instance does not start without it); typescript, the reference engine (about 2.5 times slower); auto, native where it is built, else typescript. Both give the same outcomes, legs and balances (docs/architecture.md).' },
];

export const CONFIG_FILE_ENV = 'TALLY_CONFIG';

export function configSettings(): readonly Setting[] {
  return SETTINGS;
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`${CONFIG_FILE_ENV}: cannot read config file ${path}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${CONFIG_FILE_ENV}: config file ${path} is not valid JSON: ${(error as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(`${CONFIG_FILE_ENV}: config file ${path} must hold a JSON object of settings`);
  }
  const known = new Set<string>(SETTINGS.map((s) => s.key));
  for (const key of Object.keys(parsed)) {
    if (!known.has(key)) throw new ConfigError(`${path}: unknown setting "${key}"; known settings: ${[...known].join(', ')}`);
  }
  return parsed as Record<string, unknown>;
}

function defaultFor(setting: Setting): string {
  return setting.key === 'instanceId' ? `${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9._:-]/g, '-').slice(0, 64) : setting.defaultValue;
}

/** A refused value as an error message may show it: never the secret, never a password. */
function shownValue(setting: Setting, raw: unknown): string {
  if (setting.key === 'transferSecret') return `a value of ${String(raw).length} characters (not shown)`;
  if (setting.key === 'pgUrl') return JSON.stringify(redactUrl(String(raw)));
  return JSON.stringify(raw);
}

/**
 * `url` with its password replaced by ***. Read as text, not parsed: a password with an
 * unencoded /, # or @ makes a URL unparseable, or parse with the password taken for a host
 * and port (postgres://user:1234/pw@host); everything between the scheme and the last @ may
 * be credentials, and only the user name before its first : is kept.
 */
export function redactUrl(url: string): string {
  return url.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)(.*)@/, (_match, scheme: string, credentials: string) => {
    const colon = credentials.indexOf(':');
    return `${scheme}${colon < 0 ? credentials : `${credentials.slice(0, colon)}:***`}@`;
  });
}

// Loads and validates the configuration. `env` and `filePath` are parameters so tests can
// exercise every path without touching the process environment.
export function loadConfig(env: NodeJS.ProcessEnv = process.env, filePath: string | undefined = env[CONFIG_FILE_ENV]): TallyConfig {
  const fileValues = filePath === undefined || filePath === '' ? {} : readConfigFile(filePath);
  const config: Record<string, unknown> = {};
  for (const setting of SETTINGS) {
    const fromEnv = env[setting.env];
    const fromFile = fileValues[setting.key];
    const source = fromEnv !== undefined ? setting.env : fromFile !== undefined ? `${filePath}: ${setting.key}` : undefined;
    const raw = fromEnv ?? (typeof fromFile === 'number' ? String(fromFile) : fromFile) ?? defaultFor(setting);
    const value = setting.parse(raw);
    if (value === undefined) {
      throw new ConfigError(`${source ?? setting.key}: expected ${setting.form}, got ${shownValue(setting, raw)}`);
    }
    config[setting.key] = value;
  }
  return Object.freeze(config) as unknown as TallyConfig;
}

/** TALLY_* variables the project's scripts read (scripts/lib.sh, bench, tests): not service settings, not typos. */
const SCRIPT_VARIABLES: ReadonlySet<string> = new Set([
  'TALLY_KAFKA_HOST', 'TALLY_KAFKA_PORT', 'TALLY_KAFKA_CONTROLLER_PORT', 'TALLY_KAFKA_VERSION', 'TALLY_PG_HOST', 'TALLY_PG_PORT',
  'TALLY_DATA_DIR', 'TALLY_CACHE_DIR', 'TALLY_NODE_ARGS',
]);

/**
 * TALLY_* variables of `env` that are neither a setting nor a script variable, each with the
 * setting it most resembles: a misspelled name (TALLY_PG_URl) would otherwise leave its
 * setting at the default without a word.
 */
export function unknownVariables(env: NodeJS.ProcessEnv = process.env): Array<{ name: string; closest: string }> {
  const settings = SETTINGS.map((s) => s.env);
  const known = new Set<string>([...settings, CONFIG_FILE_ENV, ...SCRIPT_VARIABLES]);
  return Object.keys(env)
    .filter((name) => name.toUpperCase().startsWith('TALLY_') && !known.has(name))
    .sort()
    .map((name) => ({ name, closest: closestOf(name.toUpperCase(), [...settings, CONFIG_FILE_ENV]) }));
}

function closestOf(name: string, candidates: readonly string[]): string {
  let best = candidates[0]!;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length]!;
}

// The README's configuration table, generated from the same declarations so it cannot drift.
export function configMarkdownTable(): string {
  const rows = SETTINGS.map((s) => `| \`${s.env}\` | \`${s.key}\` | \`${s.defaultValue}\` | ${s.form} | ${s.description} |`);
  return ['| environment | config file key | default | form | meaning |', '|---|---|---|---|---|', ...rows].join('\n');
}
