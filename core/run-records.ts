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
import { parseHeadersJson, userHeaders } from './headers.js';
import type { Headers } from './queue-store.js';
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

export function runKeys(queueName: string, runId: string): { identity: string; cursor: string } {
  return { identity: `workflow/${queueName}/run/${runId}`, cursor: `workflow/${queueName}/cursor/${runId}` };
}

export function encodeRecord(record: RunIdentity | RunCursor): Uint8Array {
  return encodeShortString(JSON.stringify(record));
}

/**
 * UTF-8 of a short string. Run records and reaper outcomes are ASCII in
 * the common case, and a byte loop beats `TextEncoder` (and `encodeInto`)
 * several times over at this size; this runs several times per step.
 */
export function encodeShortString(text: string): Uint8Array {
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

/**
 * Payload of an outcome-notification job. `endedByReaper` marks the outcome
 * of a run the reaper's commit ended (no runtime reported that end). With
 * `headersInJob` the run's headers are left out: the notification job carries
 * them as its own headers (every step job carries a reaper outcome, so it is
 * kept small and cheap to make).
 */
export function encodeOutcome(outcome: RunOutcome, endedByReaper = false, headersInJob = false): Uint8Array {
  const { result, headers, ...rest } = outcome;
  const fields: Record<string, unknown> = rest;
  if (!headersInJob) fields.headers = headers;
  if (result !== undefined) fields.result = Buffer.from(result).toString('base64');
  if (endedByReaper) fields.endedByReaper = true;
  return encodeShortString(JSON.stringify(fields));
}

export function decodeOutcome(bytes: Uint8Array, jobHeaders?: Headers): RunOutcome {
  return decodeNotification(bytes, jobHeaders).outcome;
}

/**
 * An outcome-notification job's payload: the outcome, and whether the reaper
 * ended the run. A payload without headers takes the job's own (its
 * `workflow.*` keys left out).
 */
export function decodeNotification(bytes: Uint8Array, jobHeaders?: Headers): { outcome: RunOutcome; endedByReaper: boolean } {
  const raw = JSON.parse(decoder.decode(bytes)) as Omit<RunOutcome, 'result' | 'headers'> & { result?: string; headers?: unknown; endedByReaper?: boolean };
  const { result, headers, endedByReaper, ...rest } = raw;
  const runHeaders = headers === undefined ? userHeaders(jobHeaders ?? {}) : parseHeadersJson(JSON.stringify(headers));
  const outcome: RunOutcome = { ...rest, headers: runHeaders, ...(result === undefined ? {} : { result: new Uint8Array(Buffer.from(result, 'base64')) }) };
  return { outcome, endedByReaper: endedByReaper === true };
}


/** Dedup key of the notification for a run that ended on `jobId`: at most one live notification per ending. */
export function outcomeDedupKey(jobId: string): string {
  return `outcome:${jobId}`;
}
