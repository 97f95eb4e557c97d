/**
 * The whole conformance suite on a third-party store built on
 * `BaseQueueStore` (test/kit/map-store.ts), wired as any adapter would be.
 * A Map store cannot share its state with another instance, so the
 * cross-instance checks are listed as skipped, with that reason.
 */
import { describeQueueStoreConformance, describeWorkflowConformance } from '../../conformance/index.js';
import { MapStore } from './map-store.js';

describeQueueStoreConformance({ name: 'map-store', createStore: (ctx) => new MapStore(ctx) });
describeWorkflowConformance({ name: 'map-store', createStore: (ctx) => new MapStore(ctx) });
