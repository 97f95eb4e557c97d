/** Store factories for the benchmarks, by name. Adapters load lazily so one missing driver does not stop the others. */
import type { QueueStore } from '../core/index.js';
import { MemoryStore } from '../adapters/memory/index.js';

export interface BenchStore {
  store: QueueStore;
  label: string;
  close: () => Promise<void>;
}

export const storeNames = ['memory'] as const;

export async function openBenchStore(name: string): Promise<BenchStore> {
  switch (name) {
    case 'memory': {
      const store = new MemoryStore();
      return { store, label: 'memory', close: () => store.close() };
    }
    default:
      throw new Error(`unknown store "${name}"; choose one of: ${storeNames.join(', ')}`);
  }
}
