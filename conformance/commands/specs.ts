/**
 * Command arguments as plain data (so a shrunk counterexample prints as the
 * calls it makes), how each becomes the real argument at run time, and how
 * it prints.
 */
import { createHeaders } from '../../core/headers.js';
import type { Effects, EnqueueOptions, EnqueueRequest, Headers, KvWrite, ReaperDeadLetterBranch, SettleAction } from '../../core/queue-store.js';
import { show } from '../compare.js';

export interface OptionSpec {
  id?: string;
  dedupKey?: string;
  priority?: number;
  /** Relative to the clock at run time. */
  runAtOffset?: number;
  maxAttempts?: number;
  headers?: 'plain' | 'proto';
  /** Measured by the store at commit (never with `runAtOffset`). */
  delayMs?: number;
  reaper?: ReaperSpec;
}

export interface PreconditionSpec {
  key: string;
  equals: Uint8Array;
}

/** Effects a job carries for the reaper's dead-letter of it. */
export interface ReaperSpec {
  precondition?: PreconditionSpec;
  effects?: EffectsSpec;
  ifCancelRequested?: EffectsSpec;
}

function buildReaper(spec: ReaperSpec, now: number): ReaperDeadLetterBranch {
  const branch: ReaperDeadLetterBranch = {};
  if (spec.precondition) branch.precondition = { key: spec.precondition.key, equals: spec.precondition.equals };
  const effects = buildEffects(spec.effects, now);
  if (effects) branch.effects = effects;
  const ifCancelRequested = buildEffects(spec.ifCancelRequested, now);
  if (ifCancelRequested) branch.ifCancelRequested = ifCancelRequested;
  return branch;
}

export function showPrecondition(spec: PreconditionSpec): string {
  return `${spec.key}==${show(spec.equals)}`;
}

function showReaper(spec: ReaperSpec): string {
  const parts: string[] = [];
  if (spec.precondition) parts.push(`if ${showPrecondition(spec.precondition)}`);
  if (spec.effects) parts.push(`effects ${showEffects(spec.effects)}`);
  if (spec.ifCancelRequested) parts.push(`ifCancelRequested ${showEffects(spec.ifCancelRequested)}`);
  return `{${parts.join(', ')}}`;
}

function buildHeaders(kind: OptionSpec['headers']): Headers | undefined {
  if (kind === undefined) return undefined;
  const headers = createHeaders();
  if (kind === 'plain') headers.a = '1';
  else headers['__proto__'] = 'p';
  return headers;
}

export function buildOptions(spec: OptionSpec, now: number): EnqueueOptions | undefined {
  const options: EnqueueOptions = {};
  if (spec.id !== undefined) options.id = spec.id;
  if (spec.dedupKey !== undefined) options.dedupKey = spec.dedupKey;
  if (spec.priority !== undefined) options.priority = spec.priority;
  if (spec.runAtOffset !== undefined) options.runAt = now + spec.runAtOffset;
  if (spec.maxAttempts !== undefined) options.maxAttempts = spec.maxAttempts;
  if (spec.delayMs !== undefined) options.delayMs = spec.delayMs;
  if (spec.reaper !== undefined) options.reaperDeadLetter = buildReaper(spec.reaper, now);
  const headers = buildHeaders(spec.headers);
  if (headers) options.headers = headers;
  return Object.keys(options).length === 0 ? undefined : options;
}

export function showOptions(spec: OptionSpec): string {
  const { runAtOffset, reaper, ...rest } = spec;
  const text =
    reaper === undefined ? show(rest) : `${show(rest).slice(0, -1)}${Object.keys(rest).length > 0 ? ', ' : ''}reaperDeadLetter: ${showReaper(reaper)}}`;
  if (runAtOffset === undefined) return text;
  const offset = `runAt: now${runAtOffset >= 0 ? '+' : ''}${runAtOffset}`;
  return text === '{}' ? `{${offset}}` : `${text.slice(0, -1)}, ${offset}}`;
}

export interface EnqueueSpec {
  queue: string;
  payload: Uint8Array;
  options: OptionSpec;
}

function buildRequest(spec: EnqueueSpec, now: number): EnqueueRequest {
  const options = buildOptions(spec.options, now);
  return options ? { queue: spec.queue, payload: spec.payload, options } : { queue: spec.queue, payload: spec.payload };
}

export interface EffectsSpec {
  enqueue: EnqueueSpec[];
  kvWrites: KvWrite[];
  kvDeletes: string[];
}

export function buildEffects(spec: EffectsSpec | undefined, now: number): Effects | undefined {
  if (!spec) return undefined;
  return { enqueue: spec.enqueue.map((e) => buildRequest(e, now)), kvWrites: spec.kvWrites, kvDeletes: spec.kvDeletes };
}

export function showEffects(spec: EffectsSpec | undefined): string {
  if (!spec) return 'none';
  const parts: string[] = [];
  for (const e of spec.enqueue) parts.push(`enqueue(${e.queue}, ${show(e.payload)}, ${showOptions(e.options)})`);
  for (const w of spec.kvWrites) parts.push(`set ${w.key}=${show(w.value)}${w.ttlMs === undefined ? '' : ` ttl ${w.ttlMs}`}`);
  for (const k of spec.kvDeletes) parts.push(`delete ${k}`);
  return `[${parts.join('; ')}]`;
}

export interface BranchSpec {
  action: SettleAction;
  effects?: EffectsSpec;
}

export function showAction(action: SettleAction): string {
  return action.type === 'ack' ? 'ack' : action.type === 'nack' ? `nack(${JSON.stringify(action.error)})` : `deadLetter(${JSON.stringify(action.reason)})`;
}

export function showKvWrites(writes: KvWrite[]): string {
  return `[${writes.map((w) => `${w.key}=${show(w.value)}${w.ifAbsent ? ' ifAbsent' : ''}${w.ttlMs === undefined ? '' : ` ttl ${w.ttlMs}`}`).join(', ')}]`;
}
