// Loads an addon of io/native (built into dist/native by io/native/build.sh as part of
// `npm run build`). A missing or broken build is an installation error, named with its remedy.

import { join } from 'node:path';

const loaded = new Map<string, unknown>();

/** The installation lacks a piece it needs: restarting cannot help (`tally` exits 2 on it). */
export class InstallationError extends Error {
  override readonly name = 'InstallationError';
}

export function loadNativeAddon<T>(name: string): T {
  const cached = loaded.get(name);
  if (cached !== undefined) return cached as T;
  const path = join(__dirname, '..', 'native', `${name}.node`);
  let addon: T;
  try {
    addon = require(path) as T;
  } catch (error) {
    const message = (error as Error).message;
    // The addons link the shared librdkafka that @confluentinc/kafka-javascript built; a
    // release copied without it, or installed from a prebuilt binary, lacks that library.
    const remedy = /librdkafka\.so/.test(message)
      ? 'node_modules/@confluentinc/kafka-javascript/build/deps/librdkafka.so.1 is missing: install with CKJS_LINKING=dynamic npm_config_build_from_source=@confluentinc/kafka-javascript npm ci (scripts/install.sh), then npm run build'
      : 'run npm run build, which builds it with io/native/build.sh';
    throw new InstallationError(`the native addon ${path} cannot be loaded (${message}); ${remedy}`);
  }
  loaded.set(name, addon);
  return addon;
}
