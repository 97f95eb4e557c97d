/**
 * Arbitraries of command arguments, shared by the commands: a few queues,
 * ids, kv keys and values recur so that commands collide on purpose.
 */
import fc from 'fast-check';
import type { JobRecord, KvWrite, SettleAction } from '../../core/queue-store.js';
import type { BranchSpec, EffectsSpec, EnqueueSpec, OptionSpec, PreconditionSpec, ReaperSpec } from './specs.js';
import { KV_KEYS, QUEUES, SUPPLIED_IDS } from './world.js';
import type { ClaimPick, JobPick } from './world.js';

export const maybe = <T>(arb: fc.Arbitrary<T>, weightOfNone = 2): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight: weightOfNone, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });

/** `fc.record` sets the keys it leaves out to `undefined`; specs leave them out (the contract's optional fields are absent). */
function definedOnly<T extends object>(record: { [K in keyof T]?: T[K] | undefined }): T {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) if (value !== undefined) out[key] = value;
  return out as T;
}

export const queueArb = fc.constantFrom(...QUEUES);
export const payloadArb = fc.uint8Array({ maxLength: 3, max: 9 });

/** Kv values: a few short ones recur often, so preconditions on them both hold and fail. */
export const kvValueArb = fc.oneof(fc.constantFrom(new Uint8Array([1]), new Uint8Array([2])), fc.uint8Array({ maxLength: 2, max: 9 }));
export const preconditionArb: fc.Arbitrary<PreconditionSpec> = fc.record({
  key: fc.constantFrom(...KV_KEYS),
  equals: fc.constantFrom(new Uint8Array([1]), new Uint8Array([2])),
});

const baseOptionFields = {
  id: maybe(fc.constantFrom(...SUPPLIED_IDS), 4),
  dedupKey: maybe(fc.constantFrom('d1', 'd2')),
  priority: maybe(fc.constantFrom(0, 100, 1000)),
  runAtOffset: maybe(fc.constantFrom(-10, 0, 1, 300, 3000), 3),
  delayMs: maybe(fc.constantFrom(0, 1, 300, 3000), 4),
  maxAttempts: maybe(fc.constantFrom(1, 2, 3), 3),
  headers: maybe(fc.constantFrom('plain' as const, 'proto' as const), 3),
};
/** `runAt` and `delayMs` exclude each other. */
const oneTiming = (spec: OptionSpec): OptionSpec => {
  if (spec.runAtOffset === undefined || spec.delayMs === undefined) return spec;
  const { delayMs: _delayMs, ...rest } = spec;
  return rest;
};
const baseOptionSpecArb: fc.Arbitrary<OptionSpec> = fc.record(baseOptionFields, { requiredKeys: [] }).map((r) => oneTiming(definedOnly<OptionSpec>(r)));

/** Some records expire (`ttlMs`), at times the clock commands step over. */
const ttlArb = maybe(fc.constantFrom(1, 300, 3000), 3);
export const kvWriteArb: fc.Arbitrary<KvWrite> = fc
  .record({ key: fc.constantFrom(...KV_KEYS), value: kvValueArb, ifAbsent: fc.boolean(), ttlMs: ttlArb })
  .map((w) => definedOnly<KvWrite>({ key: w.key, value: w.value, ...(w.ifAbsent ? { ifAbsent: true } : {}), ttlMs: w.ttlMs }));
const plainKvWriteArb: fc.Arbitrary<KvWrite> = fc
  .record({ key: fc.constantFrom(...KV_KEYS), value: kvValueArb, ttlMs: ttlArb })
  .map((w) => definedOnly<KvWrite>(w));

/** Reaper effects report no enqueue results, so their jobs carry supplied ids (as cancel effects do). */
const reaperEffectsArb: fc.Arbitrary<EffectsSpec> = fc.record({
  enqueue: fc.array(
    fc
      .record({ queue: queueArb, payload: payloadArb, options: baseOptionSpecArb })
      .chain((e) => fc.constantFrom(...SUPPLIED_IDS).map((id) => ({ ...e, options: { ...e.options, id } }))),
    { maxLength: 1 },
  ),
  kvWrites: fc.array(plainKvWriteArb, { maxLength: 2 }),
  kvDeletes: fc.array(fc.constantFrom(...KV_KEYS), { maxLength: 2 }),
});
const reaperSpecArb: fc.Arbitrary<ReaperSpec> = fc
  .record({ precondition: maybe(preconditionArb, 1), effects: maybe(reaperEffectsArb, 1), ifCancelRequested: maybe(reaperEffectsArb, 1) }, { requiredKeys: [] })
  .map((r) => definedOnly<ReaperSpec>(r));
export const optionSpecArb: fc.Arbitrary<OptionSpec> = fc
  .record({ ...baseOptionFields, reaper: maybe(reaperSpecArb, 3) }, { requiredKeys: [] })
  .map((r) => oneTiming(definedOnly<OptionSpec>(r)));

export const enqueueSpecArb: fc.Arbitrary<EnqueueSpec> = fc.record({ queue: queueArb, payload: payloadArb, options: optionSpecArb });

export const effectsArb: fc.Arbitrary<EffectsSpec> = fc.record({
  enqueue: fc.array(enqueueSpecArb, { maxLength: 2 }),
  kvWrites: fc.array(plainKvWriteArb, { maxLength: 2 }),
  kvDeletes: fc.array(fc.constantFrom(...KV_KEYS), { maxLength: 1 }),
});

const actionArb: fc.Arbitrary<SettleAction> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ type: 'ack' }) },
  { weight: 3, arbitrary: fc.constantFrom<SettleAction>({ type: 'nack', error: 'e1' }, { type: 'nack', error: 'e2' }) },
  // A retry delay of the job's own, instead of the queue's backoff.
  { weight: 1, arbitrary: fc.constantFrom<SettleAction>({ type: 'nack', error: 'e3', delayMs: 0 }, { type: 'nack', error: 'e4', delayMs: 700 }) },
  { weight: 1, arbitrary: fc.constant<SettleAction>({ type: 'deadLetter', reason: 'r1' }) },
);
export const branchArb: fc.Arbitrary<BranchSpec> = fc
  .record({ action: actionArb, effects: maybe(effectsArb, 1) })
  .map(({ action, effects }) => (effects ? { action, effects } : { action }));

export const statusPickArb = (...statuses: Array<JobRecord['status']>): fc.Arbitrary<JobPick> =>
  fc.record({ status: fc.constantFrom(...statuses), index: fc.nat(10) });
export const jobPickArb: fc.Arbitrary<JobPick> = fc.oneof(
  { weight: 3, arbitrary: fc.nat(40) },
  { weight: 3, arbitrary: statusPickArb('pending', 'scheduled', 'claimed', 'dead', 'done') },
  { weight: 1, arbitrary: fc.constantFrom('x-a', 'x-unknown') },
);
export const claimPickArb: fc.Arbitrary<ClaimPick> = fc.record({
  index: fc.nat(30),
  forged: fc.oneof({ weight: 6, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});

/** Cancel effects report no enqueue results, so their jobs always carry supplied ids (generated ones could not be paired). */
export const cancelEffectsArb: fc.Arbitrary<EffectsSpec> = effectsArb.chain((effects) =>
  fc.constantFrom(...SUPPLIED_IDS).map((id) => ({ ...effects, enqueue: effects.enqueue.slice(0, 1).map((e) => ({ ...e, options: { ...e.options, id } })) })),
);
