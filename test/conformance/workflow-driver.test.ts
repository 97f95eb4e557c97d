/**
 * The workflow property's driver must never fail a correct store: scenarios
 * that once tripped it, replayed on MemoryStore.
 */
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../adapters/memory/index.js';
import { runWorkflowScenario } from '../../conformance/workflow-suite.js';
import type { WorkflowScenario } from '../../conformance/workflow-suite.js';

const memory = { name: 'memory', createStore: (ctx: ConstructorParameters<typeof MemoryStore>[0]) => new MemoryStore(ctx) };

describe('workflow property driver', () => {
  it('a restart decided while the zombie step awaits a due cancel does not strand the zombie in a stopped runtime', async () => {
    // Cancels and a restart are due from the first step starts: the driver decides the restart while the
    // zombie's runner (run 2, step 0) still awaits the due cancels, and stops the zombie's runtime.
    const scenario: WorkflowScenario = {
      runs: [
        { steps: [['succeed']], maxAttempts: 1 },
        { steps: [['continue']], maxAttempts: 1 },
        { steps: [['continue']], maxAttempts: 1, cancelAfterStarts: 3 },
        { steps: [['succeed']], maxAttempts: 1, cancelAfterStarts: 0 },
      ],
      workers: 1,
      duplicateSubmits: true,
      hookDelivery: 'inProcess',
      restartAfterStarts: 0,
      faults: { seed: 1185429620, rate: 0.05 },
      zombieRun: 2,
    };
    await expect(runWorkflowScenario(memory, scenario)).resolves.toBeUndefined();
  });
});
