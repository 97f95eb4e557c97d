/**
 * The column form of a reaper branch (`encodeReaperBranch`): every field
 * survives the round trip, bytes that are not UTF-8 too, the form is small
 * for a workflow step, and rows written in the first form are still read.
 */
import { describe, expect, it } from 'vitest';
import { decodeReaperBranch, encodeReaperBranch } from '../../core/carried-effects.js';
import { copyHeaders } from '../../core/headers.js';
import type { ReaperDeadLetterBranch } from '../../core/queue-store.js';
import { instantiateReaperTemplate } from '../../core/reaper-template.js';
import { reaperTemplate, stepHeaders } from '../../core/settlement.js';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const plain = (value: unknown): unknown => JSON.parse(JSON.stringify(value, (_k, v: unknown) => (v instanceof Uint8Array ? { bytes: [...v] } : v)));

describe('encodeReaperBranch / decodeReaperBranch', () => {
  it('round-trips every field: ids, dedup keys, headers (also __proto__), kv writes with ifAbsent, bytes that are not UTF-8, nested branches', () => {
    const headers = copyHeaders(undefined);
    headers['__proto__'] = 'plain data';
    headers['tenant'] = 'ácme ✓';
    const branch: ReaperDeadLetterBranch = {
      precondition: { key: 'cursor/r1', equals: text('{"jobId":"J","step":3}') },
      effects: {
        enqueue: [
          {
            queue: 'q.outcomes',
            payload: new Uint8Array([0xff, 0x00, 0xc3]),
            options: { id: 'n1', dedupKey: 'outcome:J', headers, priority: 3, maxAttempts: 9, delayMs: 50 },
          },
          { queue: 'q', payload: text(''), options: { reaperDeadLetter: { effects: { kvDeletes: ['deep'] } } } },
          { queue: 'q', payload: text('no options') },
        ],
        kvWrites: [
          { key: 'k1', value: text('v1'), ifAbsent: true },
          { key: 'k2', value: new Uint8Array([0xed, 0xa0, 0x80]) },
        ],
        kvDeletes: ['run/r1', 'cursor/r1'],
      },
      ifCancelRequested: { kvDeletes: ['run/r1', 'cursor/r1'] },
    };
    const decoded = decodeReaperBranch(encodeReaperBranch(branch));
    expect(plain(decoded)).toEqual(plain(branch));
    const decodedHeaders = decoded.effects?.enqueue?.[0]?.options?.headers as Record<string, string>;
    expect(Object.hasOwn(decodedHeaders, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(Object.getPrototypeOf(decodedHeaders))).toBe(null);
  });

  it('keeps a workflow step small: each string once, UTF-8 bytes as text', () => {
    // What a step job enqueued by an earlier version carries: the branch the runtime's template now makes for it.
    const job = { id: '01KBMV7X2QZ8W3ZJ4YH0R1C2D3', headers: stepHeaders({}, 'order-1234', 5) };
    const branch = instantiateReaperTemplate(reaperTemplate('workflow-steps', 'workflow-steps.outcomes'), job) as ReaperDeadLetterBranch;
    const encoded = encodeReaperBranch(branch);
    expect(encoded.length).toBeLessThan(520);
    expect(encoded.split('01KBMV7X2QZ8W3ZJ4YH0R1C2D3').length - 1).toBe(2); // the dedup key and the cursor value, once each
    expect(plain(decodeReaperBranch(encoded))).toEqual(plain(branch));
  });

  it('reads the first form (a plain object, bytes in base64), as rows written by earlier versions hold it', () => {
    const first = JSON.stringify({
      precondition: { key: 'cursor/r1', equals: Buffer.from('C').toString('base64') },
      effects: {
        enqueue: [{ queue: 'q', payload: Buffer.from('P').toString('base64'), options: { dedupKey: 'd', headers: { a: 'b' } } }],
        kvDeletes: ['run/r1'],
      },
    });
    expect(plain(decodeReaperBranch(first))).toEqual(
      plain({
        precondition: { key: 'cursor/r1', equals: text('C') },
        effects: { enqueue: [{ queue: 'q', payload: text('P'), options: { dedupKey: 'd', headers: { a: 'b' } } }], kvDeletes: ['run/r1'] },
      }),
    );
  });

  it('refuses a form it does not know, rather than guessing', () => {
    expect(() => decodeReaperBranch('[9,[],{}]')).toThrow(/unknown reaper branch format 9/);
  });
});
