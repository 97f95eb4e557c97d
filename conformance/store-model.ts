/**
 * Model-based properties of the store contract (core/queue-store.ts): random command
 * sequences (conformance/commands/, one command per file) run on the store
 * under test and on the reference model (conformance/model/), with every
 * return value and all observable state compared after each command.
 */
import fc from 'fast-check';
import { ManualClock } from '../core/clock.js';
import type { QueueConfig } from '../core/queue-config.js';
import { ConformanceError } from './compare.js';
import { assertProperty, withGuardedStore } from './checks.js';
import { StoreWorld, storeCommandArbitraries } from './commands/index.js';
import { replayPath, runParameters } from './options.js';
import type { ConformanceOptions, StoreContext } from './options.js';

const START = Date.parse('2026-01-01T00:00:00Z');

/** A queue configuration the suite runs a property under. */
export interface ConfigProfile {
  label: string;
  defaultQueueConfig: Partial<QueueConfig>;
  queueConfigs: Record<string, Partial<QueueConfig>>;
}

/**
 * Profiles chosen per run: short leases and backoff so clock advances matter;
 * done retention off/on/zero; dead retention finite/forever/zero; a queue with
 * one attempt and another default priority.
 */
export const CONFIG_PROFILES: readonly ConfigProfile[] = [
  {
    label: 'backoff 100..400, no done retention, dead kept 20s; q2: 1 attempt, priority 500, done kept 0ms',
    defaultQueueConfig: { leaseDurationMs: 1000, retryBackoffBaseMs: 100, retryBackoffMaxMs: 400, deadRetentionMs: 20_000 },
    queueConfigs: { q2: { maxAttempts: 1, defaultPriority: 500, keepDoneJobsMs: 0 } },
  },
  {
    label: '2 attempts, zero backoff, done kept 2s, dead kept forever; q2: backoff 300 capped, dead kept 0ms',
    defaultQueueConfig: { maxAttempts: 2, leaseDurationMs: 500, retryBackoffBaseMs: 0, keepDoneJobsMs: 2000, deadRetentionMs: null },
    queueConfigs: { q2: { retryBackoffBaseMs: 300, retryBackoffMaxMs: 300, deadRetentionMs: 0 } },
  },
  {
    label: 'spec defaults (lease 30s, backoff 1s..300s), done kept 5s',
    defaultQueueConfig: { keepDoneJobsMs: 5000 },
    queueConfigs: {},
  },
];

// ---- the property ----------------------------------------------------------

/** Builds the store context of one run under `profile`. */
export function storeContext(profile: ConfigProfile, clock: ManualClock, backgroundMaintenance = false): StoreContext {
  return { clock, defaultQueueConfig: { ...profile.defaultQueueConfig }, queueConfigs: structuredClone(profile.queueConfigs), backgroundMaintenance };
}

/**
 * Runs the model-based property and rejects with fast-check's report (seed,
 * path and the shrunk command list) when the store diverges from the model.
 * Not tied to vitest: the describe functions and the mutant tests call it.
 */
export async function checkStoreModel(options: ConformanceOptions, overrides: { maxCommands?: number; scale?: number } = {}): Promise<void> {
  const params = runParameters(options, overrides.scale ?? 1);
  const commandsOptions: { maxCommands: number; size: fc.SizeForArbitrary; replayPath?: string } = { maxCommands: overrides.maxCommands ?? 40, size: 'max' };
  const replay = replayPath(options);
  if (replay !== undefined) commandsOptions.replayPath = replay;
  const property = fc.asyncProperty(
    fc.nat(CONFIG_PROFILES.length - 1),
    fc.commands(storeCommandArbitraries(), commandsOptions),
    async (profileIndex, commands) => {
      const profile = CONFIG_PROFILES[profileIndex] as ConfigProfile;
      const clock = new ManualClock(START);
      try {
        await withGuardedStore(options, storeContext(profile, clock), async (guard) => {
          const world = new StoreWorld(guard.store, clock, profile);
          await fc.asyncModelRun(() => ({ model: world, real: world }), commands);
        });
      } catch (error) {
        if (error instanceof ConformanceError) error.message = `${error.message}\n  (store ${options.name}, queue profile ${profileIndex}: ${profile.label})`;
        throw error;
      }
    },
  );
  await assertProperty(property, options, params);
}
