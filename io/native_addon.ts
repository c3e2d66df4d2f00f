// Loads an addon of io/native (built into dist/native by io/native/build.sh as part of
// `npm run build`). A missing or broken build is an installation error, named with its remedy.

import { join } from 'node:path';

const loaded = new Map<string, unknown>();

export function loadNativeAddon<T>(name: string): T {
  const cached = loaded.get(name);
  if (cached !== undefined) return cached as T;
  const path = join(__dirname, '..', 'native', `${name}.node`);
  let addon: T;
  try {
    addon = require(path) as T;
  } catch (error) {
    throw new Error(`the native addon ${path} cannot be loaded (${(error as Error).message}); run npm run build, which builds it with io/native/build.sh`);
  }
  loaded.set(name, addon);
  return addon;
}
