/**
 * Several instances over one backing store (`createStores`), as several
 * processes hold one SQLite file or one PostgreSQL schema: every operation
 * through any instance agrees with the reference model, `waitForCompletion`
 * on one instance sees what another did, and a run whose step is reaped by
 * an instance that runs no worker loop ends in that reaper's commit.
 * Without `createStores` every check here is skipped, with the reason.
 */
import fc from 'fast-check';
import { ManualClock } from '../core/clock.js';
import type { RunOutcome, StepRunner } from '../core/outcomes.js';
import type { CompletionResult, QueueStore } from '../core/queue-store.js';
import { WorkflowRuntime } from '../core/runtime.js';
import { SUITE_START, assert, assertEqual } from './checks.js';
import type { ConformanceCheck, ConformanceGroup } from './checks.js';
import { ConformanceError, canonical } from './compare.js';
import { destroyAll, replayPath, runParameters } from './options.js';
import type { ConformanceOptions, StoreContext } from './options.js';
import { StoreWorld, storeCommandArbitraries } from './commands/index.js';
import { CONFIG_PROFILES, storeContext } from './store-model.js';
import type { ConfigProfile } from './store-model.js';
import { NOTIFICATION_CONTEXT, REMOTE_WAIT, boundedWait } from './store-notifications.js';

/** Instances per cross-instance property. */
export const INSTANCES = 3;

const SKIP_NO_FACTORY = 'no createStores factory: the store cannot open several instances over one backing store';

type Factory = NonNullable<ConformanceOptions['createStores']>;

function factoryOf(options: ConformanceOptions): Factory {
  if (!options.createStores) throw new ConformanceError(`cannot run: ${SKIP_NO_FACTORY}`);
  return options.createStores;
}

/** Opens `n` instances for one example, runs `body`, and always releases them. */
async function withInstances(
  options: ConformanceOptions,
  n: number,
  ctx: Omit<StoreContext, 'clock'>,
  body: (stores: QueueStore[], clock: ManualClock) => Promise<void>,
): Promise<void> {
  const clock = new ManualClock(SUITE_START);
  const stores = await factoryOf(options)(n, { ...ctx, clock });
  assert(`createStores(${n}) must return ${n} instances, got ${stores.length}`, stores.length === n);
  try {
    await body(stores, clock);
  } finally {
    await destroyAll(options, stores);
  }
}

type Command = fc.AsyncCommand<StoreWorld, StoreWorld>;

/** A model command run through one chosen instance (the world reads state through it too). */
class ThroughInstance implements Command {
  constructor(
    readonly command: Command,
    readonly instance: number,
    readonly stores: () => QueueStore[],
  ) {}
  check = (world: Readonly<StoreWorld>): boolean => this.command.check(world);
  async run(world: StoreWorld): Promise<void> {
    world.store = this.stores()[this.instance] as QueueStore;
    await this.command.run(world, world);
  }
  toString(): string {
    return `[instance ${this.instance}] ${this.command.toString()}`;
  }
}

/** The model property with every command (and the state read after it) through a random instance. */
export async function checkStoreModelAcrossInstances(options: ConformanceOptions, overrides: { maxCommands?: number; scale?: number } = {}): Promise<void> {
  const factory = factoryOf(options);
  const params = runParameters(options, overrides.scale ?? 0.5);
  const commandsOptions: { maxCommands: number; size: fc.SizeForArbitrary; replayPath?: string } = { maxCommands: overrides.maxCommands ?? 40, size: 'max' };
  const replay = replayPath(options);
  if (replay !== undefined) commandsOptions.replayPath = replay;
  let current: QueueStore[] = [];
  const arbitraries = storeCommandArbitraries().map((arb) =>
    fc.tuple(arb, fc.nat(INSTANCES - 1)).map(([command, i]): Command => new ThroughInstance(command, i, () => current)),
  );
  const property = fc.asyncProperty(fc.nat(CONFIG_PROFILES.length - 1), fc.commands(arbitraries, commandsOptions), async (profileIndex, commands) => {
    const profile = CONFIG_PROFILES[profileIndex] as ConfigProfile;
    const clock = new ManualClock(SUITE_START);
    const stores = await factory(INSTANCES, storeContext(profile, clock));
    current = stores;
    try {
      const world = new StoreWorld(stores[0] as QueueStore, clock, profile);
      await fc.asyncModelRun(() => ({ model: world, real: world }), commands);
    } catch (error) {
      if (error instanceof ConformanceError)
        error.message = `[${options.name}, ${INSTANCES} instances, profile ${profileIndex}: ${profile.label}]\n${error.message}`;
      throw error;
    } finally {
      await destroyAll(options, stores);
    }
  });
  await fc.assert(property, params);
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

/** Clock timeout of the cross-instance waits: far beyond what the bounded wait advances. */
const WAIT_TIMEOUT_MS = 3_600_000;

/** Waits for a `waitForCompletion` promise within the remote bounds (advancing the clock in small steps). */
async function settled(what: string, clock: ManualClock, waiting: Promise<CompletionResult>): Promise<CompletionResult> {
  let result: CompletionResult | undefined;
  void waiting.then((r) => (result = r));
  return boundedWait(
    clock,
    REMOTE_WAIT,
    () => result,
    (advanced) => `${what}: waitForCompletion did not resolve within ${REMOTE_WAIT.realMs} ms of real time and ${advanced} ms of clock time`,
  );
}

/** Asserts `waiting` is still pending after a few steps of real and clock time (a remote change had its chance to arrive). */
async function stillWaiting(what: string, clock: ManualClock, waiting: Promise<CompletionResult>): Promise<void> {
  let result: CompletionResult | undefined;
  void waiting.then((r) => (result = r));
  for (let i = 0; i < 20 && result === undefined; i++) {
    clock.advance(REMOTE_WAIT.clockStepMs);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  if (result !== undefined) throw new ConformanceError(`${what}: waitForCompletion resolved with ${canonical(result)}, but the job is not acked or dead`);
}

async function enqueueClaim(store: QueueStore, queue: string, options: Parameters<QueueStore['enqueue']>[2] = {}): Promise<{ jobId: string; token: string }> {
  const enqueued = await store.enqueue(queue, bytes('w'), options);
  assert(`enqueue(${queue}) returns new, got ${canonical(enqueued)}`, enqueued.kind === 'new');
  const claims = await store.claim(queue);
  assert(
    `claim(${queue}) returns the job just enqueued, got ${canonical(claims.map((c) => c.jobId))}`,
    claims.length === 1 && claims[0]?.jobId === enqueued.id,
  );
  const claim = claims[0] as { jobId: string; token: string };
  return { jobId: claim.jobId, token: claim.token };
}

const waitChecks: ConformanceCheck[] = [
  {
    name: 'waitForCompletion on one instance reports a job acked through another as completed',
    run: (options) =>
      withInstances(options, 2, NOTIFICATION_CONTEXT, async ([a, b], clock) => {
        const claim = await enqueueClaim(a as QueueStore, 'q');
        const waiting = (b as QueueStore).waitForCompletion(claim.jobId, WAIT_TIMEOUT_MS);
        await (a as QueueStore).settle(claim, { action: { type: 'ack' } });
        const result = await settled('ack through instance 0, wait on instance 1', clock, waiting);
        assertEqual('waitForCompletion (instance 1) of a job acked through instance 0', result.kind, 'completed');
      }),
  },
  {
    name: 'waitForCompletion on one instance reports a job dead-lettered through another as completed, with its dead record',
    run: (options) =>
      withInstances(options, 2, NOTIFICATION_CONTEXT, async ([a, b], clock) => {
        const claim = await enqueueClaim(a as QueueStore, 'q');
        const waiting = (b as QueueStore).waitForCompletion(claim.jobId, WAIT_TIMEOUT_MS);
        await (a as QueueStore).settle(claim, { action: { type: 'deadLetter', reason: 'bad' } });
        const result = await settled('deadLetter through instance 0, wait on instance 1', clock, waiting);
        assertEqual(
          'waitForCompletion (instance 1) of a job dead-lettered through instance 0',
          { kind: result.kind, status: result.kind === 'completed' ? result.job?.status : undefined },
          { kind: 'completed', status: 'dead' },
        );
      }),
  },
  {
    name: 'waitForCompletion on one instance reports a pending job cancelled (removed) through another as notFound',
    run: (options) =>
      withInstances(options, 2, NOTIFICATION_CONTEXT, async ([a, b], clock) => {
        const enqueued = await (a as QueueStore).enqueue('q', bytes('c'));
        assert(`enqueue returns new, got ${canonical(enqueued)}`, enqueued.kind === 'new');
        const waiting = (b as QueueStore).waitForCompletion(enqueued.id, WAIT_TIMEOUT_MS);
        const cancelled = await (a as QueueStore).cancel(enqueued.id);
        assertEqual('cancel of a pending job through instance 0', cancelled.outcome, 'removed');
        const result = await settled('cancel through instance 0, wait on instance 1', clock, waiting);
        assertEqual('waitForCompletion (instance 1) of a job removed by cancel through instance 0 (a removed job was never completed)', result, {
          kind: 'notFound',
        });
      }),
  },
  {
    name: 'waitForCompletion on one instance keeps waiting across a nack that retries through another, and reports the later ack',
    run: (options) =>
      withInstances(options, 2, NOTIFICATION_CONTEXT, async ([a, b], clock) => {
        const first = await enqueueClaim(a as QueueStore, 'retry', { maxAttempts: 3 });
        const waiting = (b as QueueStore).waitForCompletion(first.jobId, WAIT_TIMEOUT_MS);
        const nacked = await (a as QueueStore).settle(first, { action: { type: 'nack', error: 'again' } });
        assertEqual('nack with attempts left (queue without backoff)', nacked.status, 'pending');
        await stillWaiting('nack through instance 0, wait on instance 1', clock, waiting);
        const claims = await (a as QueueStore).claim('retry');
        assert(`the retried job is claimable again, got ${canonical(claims.map((c) => c.jobId))}`, claims.length === 1 && claims[0]?.jobId === first.jobId);
        await (a as QueueStore).settle(claims[0], { action: { type: 'ack' } });
        const result = await settled('ack of the retry through instance 0, wait on instance 1', clock, waiting);
        assertEqual('waitForCompletion (instance 1) after the retry was acked', result.kind, 'completed');
      }),
  },
];

const never: StepRunner = () => new Promise(() => undefined);

/** A run whose only step attempt is reaped by a submit-only instance; another instance's worker loop fires the hook. */
async function reapedElsewhere(options: ConformanceOptions, hookDelivery: 'inProcess' | 'durable'): Promise<void> {
  await withInstances(options, 2, { backgroundMaintenance: false }, async ([a, b], clock) => {
    const web = a as QueueStore;
    const workerStore = b as QueueStore;
    const client = new WorkflowRuntime({ store: web, clock, runner: never, hookDelivery });
    const outcomes: RunOutcome[] = [];
    const worker = new WorkflowRuntime({ store: workerStore, clock, runner: never, hook: (o) => void outcomes.push(o), hookDelivery, pollIntervalMs: 50 });
    const { runId } = await client.submit({ input: bytes('x'), headers: { tenant: 'acme' }, maxAttemptsPerStep: 1 });
    // A worker that died took the only attempt.
    const claims = await workerStore.claim(worker.queueName);
    assert(`the run's first step is claimable through instance 1, got ${canonical(claims.map((c) => c.jobId))}`, claims.length === 1);
    const controller = new AbortController();
    const running = worker.run(controller.signal);
    try {
      clock.advance(31_000); // past the default 30 s lease
      const report = await web.reap();
      assert(
        `reap() on instance 0 dead-letters the expired step and applies the effects it carries, got ${canonical(report)}`,
        report.deadLettered.length === 1 && report.effectsApplied.length === 1,
      );
      assertEqual(`status(${runId}) right after instance 0's reaper commit (the run ended in that commit)`, await client.status(runId), undefined);
      await boundedWait(
        clock,
        { realMs: 5_000, clockStepMs: 50 },
        () => (outcomes.length > 0 ? true : undefined),
        (advanced) => `no terminal hook in instance 1's worker loop within 5000 ms of real time and ${advanced} ms of clock time`,
      );
      // Give a duplicate its chance before counting.
      for (let i = 0; i < 10; i++) {
        clock.advance(50);
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      assertEqual("the hook's outcomes in instance 1's worker loop", outcomes, [
        { runId, status: 'failed', error: 'lease expired', headers: { tenant: 'acme' }, finalStep: 0 },
      ]);
    } finally {
      controller.abort();
      await Promise.race([running, new Promise((resolve) => setTimeout(resolve, 5_000))]);
    }
  });
}

const reaperChecks: ConformanceCheck[] = (['inProcess', 'durable'] as const).map((hookDelivery) => ({
  name: `a run reaped by an instance that runs no worker loop ends in that reaper's commit, and another instance's worker loop fires its hook once (${hookDelivery} hooks)`,
  run: (options: ConformanceOptions) => reapedElsewhere(options, hookDelivery),
}));

/** Every cross-instance check; built for `options`, so a store without `createStores` shows them as skipped with the reason. */
export function crossInstanceChecks(options: Pick<ConformanceOptions, 'createStores'>): ConformanceGroup {
  const checks: ConformanceCheck[] = [
    { name: 'random command sequences through random instances agree with the reference model', run: (opts) => checkStoreModelAcrossInstances(opts) },
    ...waitChecks,
    ...reaperChecks,
  ];
  return { name: 'cross-instance', checks: options.createStores ? checks : checks.map((check) => ({ ...check, skip: SKIP_NO_FACTORY })) };
}
