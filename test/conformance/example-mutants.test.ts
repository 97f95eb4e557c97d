/**
 * Every broken store of `example-mutants.ts` is rejected by a default
 * (quick) run of the store-level suite, by the deterministic example named
 * for it: whatever the seed, not by luck.
 */
import { describe, expect, it } from 'vitest';
import { checkQueueStore } from '../../conformance/index.js';
import { EXAMPLE_MUTANTS } from './example-mutants.js';

describe('deterministic examples catch their broken stores in every default run', () => {
  for (const mutant of EXAMPLE_MUTANTS) {
    it(`rejects ${mutant.name}: ${mutant.bug}`, async () => {
      const error = await checkQueueStore({ name: mutant.name, createStore: mutant.create }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, `the suite passed on mutant ${mutant.name}`).toBeInstanceOf(AggregateError);
      const failed = (error as AggregateError).message.split('\n').filter((line) => line.startsWith('- '));
      expect(
        failed.some((line) => line.includes(mutant.caughtBy)),
        `no failed check names "${mutant.caughtBy}":\n${failed.join('\n')}`,
      ).toBe(true);
    });
  }
});
