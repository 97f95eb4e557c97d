/**
 * The suite must be able to fail: every deliberately broken store in
 * `mutants.ts` is rejected by the store-level suite, and correct stores pass
 * the same programmatic run: one MemoryStore, and several instances over one
 * MemoryStore (the control of the cross-instance mutants).
 * The catch rate per mutant, over seeds and depths: `npm run conformance:catch-rate`.
 */
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../adapters/memory/index.js';
import { checkQueueStore } from '../../conformance/index.js';
import { MUTANTS, destroyShared, mutantOptions, sharedMemory } from './mutants.js';

const numRuns = 50;

describe('conformance suite catches broken stores', () => {
  it('passes on MemoryStore (control)', async () => {
    const result = await checkQueueStore({ name: 'memory (control)', createStore: (ctx) => new MemoryStore(ctx), numRuns });
    expect(result.passed.length).toBeGreaterThan(40);
  });

  it('passes on several instances over one MemoryStore (control of the cross-instance mutants)', async () => {
    const result = await checkQueueStore({
      name: 'shared memory (control)',
      createStore: (ctx) => new MemoryStore(ctx),
      createStores: sharedMemory,
      destroyStores: destroyShared,
      crossProcessNotifications: true,
      numRuns,
    });
    expect(result.skipped).toEqual([]);
    expect(result.passed.some((name) => name.startsWith('cross-instance >'))).toBe(true);
  });

  for (const mutant of MUTANTS) {
    it(`rejects ${mutant.name}: ${mutant.bug}`, async () => {
      const error = await checkQueueStore(mutantOptions(mutant, { numRuns })).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, `the suite passed on mutant ${mutant.name}`).toBeInstanceOf(AggregateError);
    });
  }
});
