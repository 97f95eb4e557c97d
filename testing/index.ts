/**
 * `taquba-workflow/testing`: test workflows without infrastructure and
 * without waiting for real time.
 * - `createTestEnvironment`: a deterministic bench with virtual time.
 * - `simulate`: seeded fault injection (crashes, lease expiries, store
 *   errors, cancels) with the library's invariants checked.
 * See docs/testing.md.
 */
export { createTestEnvironment } from './environment.js';
export type { TestEnvironment, TestEnvironmentOptions, DriveLimits } from './environment.js';
export type { Delivery, StoreFactory } from './world.js';
export { TestGuardError, SimulationFailedError } from './errors.js';
export type { ActiveRun } from './errors.js';
export { createPrng } from './prng.js';
export type { Prng } from './prng.js';
export { ManualClock, sleep } from '../core/index.js';
export { simulate, assertSimulation, formatReport, DEFAULT_FAULTS } from './simulate.js';
export type { SimulationOptions, SimulationReport, SimulatedRun, FaultRates, FaultKind, InjectedFault, Violation } from './simulate.js';
