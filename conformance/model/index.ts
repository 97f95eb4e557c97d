/** The reference model (`QueueModel`), its state, and the model as a store (`ModelStore`). */
export { QueueModel } from './queue-model.js';
export { ModelStore } from './model-store.js';
export type { ModelStoreOptions } from './model-store.js';
export { modelRecord } from './state.js';
export type { ModelState, ModelEvents } from './state.js';
/** The retry delay the model applies: core's `retryDelayMs` (kept under its former name). */
export { retryDelayMs as modelRetryDelay } from '../../core/queue-config.js';
