// Loads the native core of the balance engine (engine/native/balance_core.c, built into
// dist/native/balance_core.node by io/native/build.sh as part of `npm run build`). Its
// absence is not an error by itself: BalanceEngine then applies every command in TypeScript,
// unless it was told to use the native core (core: 'native', TALLY_ENGINE_CORE=native).
import { join } from 'node:path';

/** The addon's functions; the handle is an opaque external owned by one BalanceEngine. */
export interface NativeCore {
  create(
    commandBytes: Uint8Array, outputBytes: Uint8Array, outputSlotCount: number, tableWords: Int32Array, tableHeader: Int32Array, capacity: number,
    changeSequence: Float64Array, sequence: Float64Array, counters: Float64Array,
  ): unknown;
  assign(handle: unknown, partition: number, meta: Int32Array, txIds: Uint8Array, groups: Int32Array, state: Int32Array, capacity: number, groupCount: number): void;
  release(handle: unknown, partition: number): void;
  /**
   * Applies offsets[first .. end) into output slots from outFirst, at most outRoom of them;
   * answers in result (see the C file). `validate` checks every offset of the range against the
   * command buffer: pass it on a batch's first call; later calls for the rest of the same
   * batch may skip it only because the offsets (a private Int32Array) have not changed since.
   */
  applyBatch(handle: unknown, offsets: Int32Array, first: number, end: number, outFirst: number, outRoom: number, result: Float64Array, validate: boolean): void;
}

let cached: { core: NativeCore | null; error: string } | undefined;

/** The native core, or null with the reason it is unavailable. Loaded once per thread. */
export function loadNativeCore(): { core: NativeCore | null; error: string } {
  if (cached !== undefined) return cached;
  if (process.arch !== 'x64' || process.platform !== 'linux') {
    cached = { core: null, error: `built for x86-64 Linux only (this is ${process.platform}/${process.arch})` };
    return cached;
  }
  const path = join(__dirname, '..', 'native', 'balance_core.node');
  try {
    cached = { core: require(path) as NativeCore, error: '' };
  } catch (error) {
    cached = { core: null, error: `${path} cannot be loaded (${(error as Error).message}); run npm run build, which builds it with io/native/build.sh` };
  }
  return cached;
}
