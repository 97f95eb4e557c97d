/**
 * Reaper templates in the PostgreSQL store, where the shared suite cannot
 * look: the SQL that makes a branch from a template (`template_branch`,
 * sql/000006.sql) against `instantiateReaperTemplate` on random templates and
 * jobs (lengths counted as JavaScript counts them, header values jsonb cannot
 * hold, escapes, the headers a copy keeps), and what the store does with
 * strings PostgreSQL cannot hold. Fresh random schemas, dropped afterwards.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../core/clock.js';
import { copyHeaders, parseHeadersJson } from '../../core/headers.js';
import { QueueConfigs } from '../../core/queue-config.js';
import type { StoreOptions } from '../../core/queue-config.js';
import type { Headers, JobText, ReaperDeadLetterBranch, ReaperTemplate, TemplateEffects, TemplateEnqueue } from '../../core/queue-store.js';
import { encodeReaperTemplate, instantiateReaperTemplate } from '../../core/reaper-template.js';
import { PostgresStore } from '../../adapters/postgres/index.js';
import { queueConfigsJson } from '../../adapters/postgres/postgres-rows.js';
import { checkStorableText } from '../../adapters/postgres/postgres-text.js';
import { PG_URL, admin, dropSchema, freshSchemaName, postgresAvailable } from './helpers.js';

const available = await postgresAvailable();
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const fromBase64 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'base64'));
const T0 = Date.parse('2026-01-01');
const schemas = new Set<string>();

const storeOptions: StoreOptions = { defaultQueueConfig: { maxAttempts: 1 }, queueConfigs: { r: { defaultPriority: 7, maxAttempts: 4 } } };
const configs = new QueueConfigs(storeOptions);

// ---- random templates and jobs --------------------------------------------------------------

const HEADER_NAMES = ['a', 'b', 'run', '__proto__'];
const literalArb = fc.oneof(
  { weight: 20, arbitrary: fc.constantFrom('x', 'jobId', '"q"', '\\u0000', '\u0001', '😀') },
  { weight: 1, arbitrary: fc.constant('') },
);
/** Texts that two by two reach the kv key limit as JavaScript counts it (a character past U+FFFF is two) or pass it by one. */
const longArb = fc.constantFrom('k'.repeat(512), 'k'.repeat(513), '😀'.repeat(256), '😀'.repeat(257), 'é'.repeat(511));
/** Header values, with the ones jsonb cannot hold (a NUL, lone surrogates) that the column keeps. */
const headerValueArb = fc.oneof(
  { weight: 20, arbitrary: literalArb },
  { weight: 2, arbitrary: longArb },
  { weight: 1, arbitrary: fc.constantFrom('\u0000', 'x\u0000y', '\ud800', 'z\udfff', '\\\u0000') },
);

const jobTextArb: fc.Arbitrary<JobText> = fc.array(
  fc.oneof(
    { weight: 10, arbitrary: literalArb },
    { weight: 5, arbitrary: fc.constant({ jobId: true as const }) },
    { weight: 10, arbitrary: fc.constantFrom(...HEADER_NAMES).map((header) => ({ header })) },
    { weight: 1, arbitrary: fc.constant({ header: 'missing' }) },
    { weight: 4, arbitrary: longArb },
  ),
  { minLength: 1, maxLength: 3 },
);

function definedOnly<T extends object>(record: Record<string, unknown>): T {
  return Object.fromEntries(Object.entries(record).filter(([, value]) => value !== undefined)) as T;
}

const literalHeadersArb: fc.Arbitrary<Headers> = fc
  .uniqueArray(fc.tuple(fc.constantFrom(...HEADER_NAMES, 'extra'), literalArb), { maxLength: 3, selector: ([name]) => name })
  .map((entries) => {
    const headers = copyHeaders(undefined);
    for (const [name, value] of entries) headers[name] = value;
    return headers;
  });

const enqueueArb: fc.Arbitrary<TemplateEnqueue> = fc
  .record(
    {
      queue: fc.constantFrom('q', 'r'),
      payload: fc.uint8Array({ maxLength: 4 }),
      copyJobHeaders: fc.boolean(),
      headers: literalHeadersArb,
      dedupKey: jobTextArb,
    },
    { requiredKeys: ['queue', 'payload'] },
  )
  .map((r) => definedOnly<TemplateEnqueue>(r));

const effectsArb: fc.Arbitrary<TemplateEffects> = fc
  .record({ enqueue: fc.array(enqueueArb, { maxLength: 2 }), kvDeletes: fc.array(jobTextArb, { maxLength: 2 }) }, { requiredKeys: [] })
  .map((r) => definedOnly<TemplateEffects>(r));

const templateArb: fc.Arbitrary<ReaperTemplate> = fc
  .record({ precondition: fc.record({ key: jobTextArb, equals: jobTextArb }), effects: effectsArb, ifCancelRequested: effectsArb }, { requiredKeys: [] })
  .map((r) => definedOnly<ReaperTemplate>(r));

/** A job's header names: a name jsonb cannot hold too (a template never names it; a copy keeps it). */
const JOB_HEADER_NAMES = [...HEADER_NAMES, 'x\u0000'];
const jobArb = fc.record({
  id: fc.constantFrom('job-1', '01JOB😀'),
  headers: fc.tuple(...JOB_HEADER_NAMES.map(() => fc.option(headerValueArb, { nil: undefined, freq: 20 }))).map((values) => {
    const headers = copyHeaders(undefined);
    JOB_HEADER_NAMES.forEach((name, i) => {
      if (values[i] !== undefined) headers[name] = values[i];
    });
    return headers;
  }),
});

// ---- the two sides, in one form -------------------------------------------------------------

/** Whether PostgreSQL text can hold the value (postgres-text.ts decides). */
function storable(value: string): boolean {
  try {
    checkStorableText('header', value);
    return true;
  } catch {
    return false;
  }
}

interface BranchView {
  precondition?: { key: string; equals: number[] };
  effects?: EffectsView;
  ifCancelRequested?: EffectsView;
}
interface EffectsView {
  enqueue?: Array<{ queue: string; payload: number[]; headers: Headers; priority: number; maxAttempts: number; dedupKey?: string }>;
  kvDeletes?: string[];
}

/**
 * What the store must make: the rules of `instantiateReaperTemplate`, where a header value PostgreSQL text cannot
 * hold reads as missing (it could not be rendered into a key the store keeps); a copy keeps every header as it is.
 */
function expected(template: ReaperTemplate, job: { id: string; headers: Headers }): BranchView | null {
  const readable = copyHeaders(undefined);
  for (const key of Object.keys(job.headers)) if (storable(job.headers[key] as string)) readable[key] = job.headers[key] as string;
  if (instantiateReaperTemplate(template, { id: job.id, headers: readable }) === undefined) return null;
  return viewOfJs(instantiateReaperTemplate(template, job) as ReaperDeadLetterBranch);
}

function viewOfJs(branch: ReaperDeadLetterBranch): BranchView {
  const view: BranchView = {};
  if (branch.precondition) view.precondition = { key: branch.precondition.key, equals: [...branch.precondition.equals] };
  for (const which of ['effects', 'ifCancelRequested'] as const) {
    const effects = branch[which];
    if (effects === undefined) continue;
    const out: EffectsView = {};
    if (effects.enqueue)
      out.enqueue = effects.enqueue.map((e) =>
        definedOnly({
          queue: e.queue,
          payload: [...e.payload],
          headers: copyHeaders(e.options?.headers),
          priority: configs.get(e.queue).defaultPriority,
          maxAttempts: configs.get(e.queue).maxAttempts,
          dedupKey: e.options?.dedupKey,
        }),
      );
    if (effects.kvDeletes) out.kvDeletes = [...effects.kvDeletes];
    view[which] = out;
  }
  return view;
}

interface SqlEffects {
  enqueue?: Array<{ id?: string; own: boolean; queue: string; payload: string; headers: string; priority: number; maxAttempts: number; dedupKey?: string }>;
  kvDeletes?: string[];
}

function viewOfSql(branch: { precondition?: { key: string; equals: string }; effects?: SqlEffects; ifCancelRequested?: SqlEffects } | null): BranchView | null {
  if (branch === null) return null;
  const view: BranchView = {};
  if (branch.precondition) view.precondition = { key: branch.precondition.key, equals: [...fromBase64(branch.precondition.equals)] };
  for (const which of ['effects', 'ifCancelRequested'] as const) {
    const effects = branch[which];
    if (effects === undefined) continue;
    const out: EffectsView = {};
    if (effects.enqueue)
      out.enqueue = effects.enqueue.map((e) => {
        // Enqueues a template makes take their ids when they apply, as a carried branch's do.
        expect(e.own).toBe(false);
        expect(e.id).toBeUndefined();
        return definedOnly({
          queue: e.queue,
          payload: [...fromBase64(e.payload)],
          headers: parseHeadersJson(e.headers),
          priority: e.priority,
          maxAttempts: e.maxAttempts,
          dedupKey: e.dedupKey,
        });
      });
    if (effects.kvDeletes) out.kvDeletes = effects.kvDeletes;
    view[which] = out;
  }
  return view;
}

describe.skipIf(!available)('PostgresStore reaper templates', () => {
  let schema: string;

  beforeAll(async () => {
    schema = freshSchemaName('tq_tpl');
    schemas.add(schema);
    await (await PostgresStore.open({ connectionString: PG_URL, schema, listen: false, backgroundMaintenance: false })).close();
  });

  afterAll(async () => {
    for (const name of schemas) await dropSchema(name);
  });

  it('template_branch makes what instantiateReaperTemplate makes, on random templates and jobs', async () => {
    const config = queueConfigsJson(storeOptions, configs);
    await fc.assert(
      fc.asyncProperty(templateArb, jobArb, async (template, job) => {
        const [row] = await admin<{ branch: Parameters<typeof viewOfSql>[0] }>(
          `SELECT "${schema}".template_branch($1::jsonb, $2::jsonb, $3::text, $4::text) AS branch`,
          [config, encodeReaperTemplate(template), job.id, JSON.stringify(job.headers)],
        );
        expect(viewOfSql(row?.branch ?? null)).toEqual(expected(template, job));
      }),
      { numRuns: 400 },
    );
  });

  it('a template payload given as a Buffer is kept as its bytes', async () => {
    const clock = new ManualClock(T0);
    const store = await PostgresStore.open({ connectionString: PG_URL, schema, clock, listen: false, backgroundMaintenance: false });
    try {
      await store.setReaperTemplate('buf', { effects: { enqueue: [{ queue: 'buf-out', payload: Buffer.from('outcome') }] } });
      await store.enqueue('buf', bytes('step'), { id: 'buf-step', maxAttempts: 1 });
      await store.claim('buf', { leaseMs: 100 });
      clock.advance(100);
      expect((await store.reap()).effectsApplied).toEqual(['buf-step']);
      const [outcome] = await store.claim('buf-out');
      expect(outcome?.job.payload).toEqual(bytes('outcome'));
    } finally {
      await store.close();
    }
  });

  it('refuses a template holding a string jsonb cannot (a NUL, a lone surrogate) with INVALID_ARGUMENT, and keeps the one before', async () => {
    const clock = new ManualClock(T0);
    const store = await PostgresStore.open({ connectionString: PG_URL, schema, clock, listen: false, backgroundMaintenance: false });
    try {
      const good: ReaperTemplate = { effects: { kvDeletes: [['lock:', { jobId: true }]] } };
      await store.setReaperTemplate('odd', good);
      for (const bad of [
        { effects: { kvDeletes: [['a\u0000']] } },
        { effects: { enqueue: [{ queue: 'q', payload: bytes('x'), headers: { h: '\ud800' } }] } },
        { precondition: { key: [{ header: 'n\u0000' }], equals: [] } },
      ] satisfies ReaperTemplate[]) {
        await expect(store.setReaperTemplate('odd', bad)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      }
      await admin(`INSERT INTO "${schema}".kv (key, value) VALUES ('lock:odd-step', '\\x01')`);
      await store.enqueue('odd', bytes('step'), { id: 'odd-step', maxAttempts: 1 });
      await store.claim('odd', { leaseMs: 100 });
      clock.advance(100);
      expect((await store.reap()).effectsApplied).toEqual(['odd-step']);
      expect(await store.kvGet('lock:odd-step')).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});
