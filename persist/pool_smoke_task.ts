// A Piscina task for the pool smoke test: it reads a region of a SharedArrayBuffer that the
// main thread wrote and answers with a checksum, proving data crosses threads through
// shared memory rather than structured clones.

import { threadId } from 'node:worker_threads';

export interface SmokeTask {
  readonly buffer: SharedArrayBuffer;
  readonly fromIndex: number;
  readonly toIndex: number;
}

export default function checksumRegion(task: SmokeTask): { checksum: number; threadId: number } {
  const words = new Int32Array(task.buffer);
  let checksum = 0;
  for (let i = task.fromIndex; i < task.toIndex; i++) checksum = (Math.imul(checksum, 31) + Atomics.load(words, i)) | 0;
  return { checksum, threadId };
}
