/**
 * The suite must be able to fail: every deliberately broken store in
 * `mutants.ts` is rejected by the store-level suite, and a correct store
 * passes the same programmatic run.
 */
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../adapters/memory/index.js';
import { checkQueueStore } from '../../conformance/index.js';
import { MUTANTS } from './mutants.js';

const numRuns = 50;

describe('conformance suite catches broken stores', () => {
  it('passes on MemoryStore (control)', async () => {
    const result = await checkQueueStore({ name: 'memory (control)', createStore: (ctx) => new MemoryStore(ctx), numRuns });
    expect(result.passed.length).toBeGreaterThan(40);
  });

  for (const mutant of MUTANTS) {
    it(`rejects ${mutant.name}: ${mutant.bug}`, async () => {
      const error = await checkQueueStore({ name: mutant.name, createStore: mutant.create, numRuns }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, `the suite passed on mutant ${mutant.name}`).toBeInstanceOf(AggregateError);
    });
  }
});
