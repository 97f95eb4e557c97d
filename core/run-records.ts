/**
 * The runtime's durable per-run records, kept in the store's kv namespace
 * under keys the runtime owns. Two records per active run:
 * - identity (`…/run/{runId}`): written once at submit with `ifAbsent`, so
 *   concurrent submits of one run id cannot both win; carries the input hash.
 * - cursor (`…/cursor/{runId}`): the job that currently carries the run, and
 *   its step, rewritten by every continuing settlement.
 * Both are deleted by the settlement (or cancel) that ends the run.
 */
import { createHash } from 'node:crypto';
import { HEADER_RUN_ID, HEADER_STEP, HEADER_WORKFLOW, createHeaders, parseHeadersJson, userHeaders } from './headers.js';
import type { Headers, JobText } from './queue-store.js';
import { renderJobText } from './reaper-template.js';
import type { RunOutcome } from './outcomes.js';

export interface RunIdentity {
  runId: string;
  submittedAt: number;
  /** Hex SHA-256 of the run's input. */
  inputSha256: string;
}

export interface RunCursor {
  jobId: string;
  step: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function runKeys(queueName: string, runId: string): RunKeys {
  return {
    identity: `workflow/${queueName}/run/${runId}`,
    cursor: `workflow/${queueName}/cursor/${runId}`,
    ended: `workflow/${queueName}/ended/${runId}`,
  };
}

/** Keys of a run's records: identity, cursor, and the receipt of its ending (`EndedReceipt`). */
export interface RunKeys {
  identity: string;
  cursor: string;
  ended: string;
}

/**
 * Which commit ended a run, kept for `ENDED_RECEIPT_TTL_MS` under
 * `RunKeys.ended` (with in-process hook delivery, where no notification job
 * records it): the job whose settlement or removal ended the run, the
 * delivery that settled it (its claim token; empty for a removal), and how:
 * the settlement's primary branch, its cancel branch, or a `cancel()` that
 * removed the job while pending. A runtime whose settle or cancel reply was
 * lost reads it to learn whether its own commit ended the run, and so
 * whether the hook is its to run: a re-delivery of the same job that ended
 * the run names another token.
 */
export interface EndedReceipt {
  jobId: string;
  delivery: string;
  how: 'primary' | 'cancel' | 'removed';
}

/** How long an ended receipt is kept: far longer than a settlement is retried (at most its lease). */
export const ENDED_RECEIPT_TTL_MS = 60 * 60 * 1000;

/** `how:jobId:delivery` (job ids are ULIDs, with no colon; the token comes last, whatever it holds). */
export function encodeReceipt(receipt: EndedReceipt): Uint8Array {
  return encodeShortString(`${receipt.how}:${receipt.jobId}:${receipt.delivery}`);
}

export function decodeReceipt(bytes: Uint8Array): EndedReceipt | undefined {
  const text = decoder.decode(bytes);
  const first = text.indexOf(':');
  const second = text.indexOf(':', first + 1);
  const how = text.slice(0, first);
  if (second < 0 || (how !== 'primary' && how !== 'cancel' && how !== 'removed')) return undefined;
  return { how, jobId: text.slice(first + 1, second), delivery: text.slice(second + 1) };
}

/** `runKeys` as text a reaper template makes from a job (`runId` is the text of the run id). */
export function runKeyTexts(queueName: string, runId: JobText): { identity: JobText; cursor: JobText } {
  return { identity: [`workflow/${queueName}/run/`, ...runId], cursor: [`workflow/${queueName}/cursor/`, ...runId] };
}

/**
 * The cursor record of a step job, as text made from the job (its id, and
 * its step header): the JSON of `RunCursor`, which `decodeRecord` reads. Job
 * ids are ULIDs, which JSON needs no escapes for. The runtime writes the
 * cursor from this text and the reaper template compares against it, so
 * the two cannot disagree.
 */
export const CURSOR_TEXT: JobText = ['{"jobId":"', { jobId: true }, '","step":', { header: HEADER_STEP }, '}'];

/** The bytes of `CURSOR_TEXT` for `jobId` at `step`. */
export function encodeCursor(jobId: string, step: number): Uint8Array {
  // A literal holds the one header (its key is not `__proto__`): this runs twice per step.
  return encodeShortString(renderJobText(CURSOR_TEXT, { id: jobId, headers: { [HEADER_STEP]: String(step) } }) as string);
}

export function encodeRecord(record: RunIdentity | RunCursor): Uint8Array {
  return encodeShortString(JSON.stringify(record));
}

/**
 * UTF-8 of a short string. Run records and reaper outcomes are ASCII in
 * the common case, and a byte loop beats `TextEncoder` (and `encodeInto`)
 * several times over at this size; this runs several times per step.
 */
function encodeShortString(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0x7f) return encoder.encode(text);
    bytes[i] = code;
  }
  return bytes;
}

export function decodeRecord<T extends RunIdentity | RunCursor>(bytes: Uint8Array): T {
  return JSON.parse(decoder.decode(bytes)) as T;
}

export function sha256Hex(input: Uint8Array): string {
  return createHash('sha256').update(input).digest('hex');
}

/** Payload of an outcome-notification job (a runtime's commit; the reaper's notices are `REAPED_NOTICE_PAYLOAD`). */
export function encodeOutcome(outcome: RunOutcome): Uint8Array {
  // `lastState` and `output` are decoded where the hook runs, from the bytes.
  const { result, lastPayload, lastState: _lastState, output: _output, ...rest } = outcome;
  const fields: Record<string, unknown> = rest;
  if (result !== undefined) fields.result = Buffer.from(result).toString('base64');
  if (lastPayload !== undefined) fields.lastPayload = Buffer.from(lastPayload).toString('base64');
  return encodeShortString(JSON.stringify(fields));
}

function decodeReapedNotice(headers: Headers): { outcome: RunOutcome; endedByReaper: boolean } {
  const runId = headers[HEADER_RUN_ID];
  const step = Number(headers[HEADER_STEP]);
  const how = headers[HEADER_REAPED];
  if (runId === undefined || !Number.isSafeInteger(step) || (how !== 'failed' && how !== 'cancelled')) throw new TypeError('malformed reaper notice headers');
  const base: Pick<RunOutcome, 'runId' | 'headers' | 'finalStep' | 'workflow'> = { runId, headers: userHeaders(headers), finalStep: step };
  if (Object.hasOwn(headers, HEADER_WORKFLOW)) base.workflow = headers[HEADER_WORKFLOW] as string;
  return { outcome: how === 'cancelled' ? { ...base, status: 'cancelled' } : { ...base, status: 'failed', error: 'lease expired' }, endedByReaper: true };
}

export function decodeOutcome(bytes: Uint8Array, jobHeaders?: Headers): RunOutcome {
  return decodeNotification(bytes, jobHeaders).outcome;
}

/** Header of a reaper's notification: `failed` (lease expired) or `cancelled`. */
export const HEADER_REAPED = 'workflow.reaped';

/**
 * The payload of a reaper's notification: empty, as its headers carry the
 * outcome: the reaped step job's own (the run's headers, run id and step),
 * plus how it ended.
 */
export const REAPED_NOTICE_PAYLOAD: Uint8Array = new Uint8Array(0);

/**
 * An outcome-notification job: the outcome, and whether the reaper ended
 * the run. A reaper's notice (empty payload) is read from the job's headers.
 * (Notices committed by earlier versions carry the outcome in the payload,
 * with `endedByReaper`.)
 */
export function decodeNotification(bytes: Uint8Array, jobHeaders?: Headers): { outcome: RunOutcome; endedByReaper: boolean } {
  if (bytes.length === 0 && jobHeaders !== undefined && Object.hasOwn(jobHeaders, HEADER_REAPED)) return decodeReapedNotice(jobHeaders);
  const raw = JSON.parse(decoder.decode(bytes)) as Omit<RunOutcome, 'result' | 'lastPayload'> & {
    result?: string;
    lastPayload?: string;
    endedByReaper?: boolean;
  };
  const { result, lastPayload, headers, endedByReaper, ...rest } = raw;
  const outcome: RunOutcome = {
    ...rest,
    headers: parseHeadersJson(JSON.stringify(headers)),
    ...(result === undefined ? {} : { result: new Uint8Array(Buffer.from(result, 'base64')) }),
    ...(lastPayload === undefined ? {} : { lastPayload: new Uint8Array(Buffer.from(lastPayload, 'base64')) }),
  };
  return { outcome, endedByReaper: endedByReaper === true };
}

/** Dedup key of the notification for a run that ended on a job, as text made from the job. */
export const OUTCOME_DEDUP_TEXT: JobText = ['outcome:', { jobId: true }];

/** Dedup key of the notification for a run that ended on `jobId`: at most one live notification per ending. */
export function outcomeDedupKey(jobId: string): string {
  return renderJobText(OUTCOME_DEDUP_TEXT, { id: jobId, headers: NO_HEADERS }) as string;
}

const NO_HEADERS: Headers = Object.freeze(createHeaders());
