/**
 * The conformance suites on our own stores: MemoryStore and the reference
 * model wrapped as a store (`ModelStore`), as abstract-level runs its suite
 * on its reference implementation.
 * A memory store cannot share its state with another instance, so the
 * cross-instance checks are listed as skipped, with that reason.
 * Deeper runs: TAQUBA_CONFORMANCE_RUNS=deep npx vitest run test/conformance
 */
import { MemoryStore } from '../../adapters/memory/index.js';
import { ModelStore, describeQueueStoreConformance, describeWorkflowConformance } from '../../conformance/index.js';

describeQueueStoreConformance({ name: 'memory', createStore: (ctx) => new MemoryStore(ctx) });
describeWorkflowConformance({ name: 'memory', createStore: (ctx) => new MemoryStore(ctx) });
describeQueueStoreConformance({ name: 'model', createStore: (ctx) => new ModelStore(ctx) });
describeWorkflowConformance({ name: 'model', createStore: (ctx) => new ModelStore(ctx) });
