/**
 * The runtime's reaper template against the records it writes itself: what
 * the template makes from a step job is exactly the branch the runtime
 * would write for that job (its cursor as precondition, its run records
 * deleted, a notice that decodes to the run's outcome), and templates
 * survive the text form stores keep them in.
 */
import { describe, expect, it } from 'vitest';
import { createHeaders } from '../../core/headers.js';
import type { ReaperTemplate } from '../../core/queue-store.js';
import { decodeReaperTemplate, encodeReaperTemplate, instantiateReaperTemplate, renderJobText } from '../../core/reaper-template.js';
import { decodeNotification, decodeRecord, outcomeDedupKey, runKeys } from '../../core/run-records.js';
import type { RunCursor } from '../../core/run-records.js';
import { cursorValue, reaperTemplate, stepHeaders } from '../../core/settlement.js';
import { newId } from '../../core/ids.js';

const plain = (value: unknown): unknown => JSON.parse(JSON.stringify(value, (_k, v: unknown) => (v instanceof Uint8Array ? { bytes: [...v] } : v)));

describe("the runtime's reaper template", () => {
  const template = reaperTemplate('orders', 'orders.outcomes');

  it('makes, from a step job, the cursor precondition, run-record deletes and outcome dedup key the runtime itself writes', () => {
    for (const [runId, step] of [
      ['r1', 0],
      ['order_42-x', 7],
      ['R'.repeat(128), 123456],
    ] as const) {
      const jobId = newId(Date.now());
      const branch = instantiateReaperTemplate(template, { id: jobId, headers: stepHeaders({ tenant: 'acme' }, runId, step) });
      const keys = runKeys('orders', runId);
      expect(branch?.precondition).toEqual({ key: keys.cursor, equals: cursorValue(jobId, step) });
      expect(decodeRecord<RunCursor>(cursorValue(jobId, step))).toEqual({ jobId, step });
      for (const effects of [branch?.effects, branch?.ifCancelRequested]) {
        expect(effects?.kvDeletes).toEqual([keys.identity, keys.cursor]);
        expect(effects?.enqueue?.map((e) => [e.queue, e.options?.dedupKey])).toEqual([['orders.outcomes', outcomeDedupKey(jobId)]]);
      }
    }
  });

  it("makes notices that decode to the run's outcome, with the run's own headers only", () => {
    const job = { id: newId(Date.now()), headers: stepHeaders({ tenant: 'acme', __proto__: 'plain' }, 'r9', 3) };
    const branch = instantiateReaperTemplate(template, job);
    const failed = branch?.effects?.enqueue?.[0];
    const cancelled = branch?.ifCancelRequested?.enqueue?.[0];
    const decode = (request: typeof failed) => decodeNotification(request?.payload ?? new Uint8Array(), request?.options?.headers);
    expect(plain(decode(failed))).toEqual(
      plain({ outcome: { runId: 'r9', headers: { tenant: 'acme' }, finalStep: 3, status: 'failed', error: 'lease expired' }, endedByReaper: true }),
    );
    expect(plain(decode(cancelled))).toEqual(
      plain({ outcome: { runId: 'r9', headers: { tenant: 'acme' }, finalStep: 3, status: 'cancelled' }, endedByReaper: true }),
    );
  });

  it('makes nothing from a job that is not a step job (no run id header)', () => {
    expect(instantiateReaperTemplate(template, { id: 'j', headers: createHeaders() })).toBeUndefined();
  });
});

describe('reaper template text form', () => {
  it('round-trips every field, payload bytes that are not UTF-8 and __proto__ headers included', () => {
    const headers = createHeaders();
    headers['__proto__'] = 'p';
    const t: ReaperTemplate = {
      precondition: { key: ['c/', { header: 'h' }], equals: [{ jobId: true }] },
      effects: {
        enqueue: [{ queue: 'o', payload: new Uint8Array([0xff, 0]), copyJobHeaders: true, headers, dedupKey: ['d', { jobId: true }] }],
        kvDeletes: [['x']],
      },
      ifCancelRequested: { kvDeletes: [] },
    };
    const decoded = decodeReaperTemplate(encodeReaperTemplate(t));
    expect(plain(decoded)).toEqual(plain(t));
    expect(Object.hasOwn(decoded.effects?.enqueue?.[0]?.headers ?? {}, '__proto__')).toBe(true);
  });

  it('renders text from the job: literal parts, the id, header values; undefined for a header the job lacks', () => {
    const headers = createHeaders();
    headers.a = '1';
    expect(renderJobText(['x', { jobId: true }, '-', { header: 'a' }], { id: 'J', headers })).toBe('xJ-1');
    expect(renderJobText([{ header: 'b' }], { id: 'J', headers })).toBeUndefined();
    expect(renderJobText([{ header: 'toString' }], { id: 'J', headers })).toBeUndefined();
  });
});
