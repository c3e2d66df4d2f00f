// The ring buffer's public surface: import from 'ringbuffer' rather than from its files.
export { RingBuffer } from './ring_buffer';
export type { RingBufferDescriptor, RingBufferOptions } from './ring_buffer';
export { Sequencer } from './sequencer';
export { SequenceBarrier } from './sequence_barrier';
export { SEQUENCE_MAX } from './sequence';
export { BlockingWaitStrategy, BusySpinWaitStrategy, YieldingWaitStrategy, createWaitStrategy } from './wait_strategy';
export type { WaitStrategy, WaitStrategyName } from './wait_strategy';
