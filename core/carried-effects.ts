/**
 * Helpers every store shares for the parts of a settlement or job that are
 * decided by the store: the effects a job carries for its reaper
 * dead-letter (`EnqueueOptions.reaperDeadLetter`) as detached copies and as
 * text for stores that keep them in a column (a store keeps these past the
 * call that handed them over, so it must never hold the caller's objects or
 * byte arrays), and the branch of a stale settlement.
 */
import { copyHeaders } from './headers.js';
import type { Effects, EnqueueOptions, KvPrecondition, ReaperDeadLetterBranch, SettlementBranch } from './queue-store.js';

/** What a settlement whose precondition failed applies: an ack, no effects. */
export const STALE_BRANCH: SettlementBranch = Object.freeze({ action: Object.freeze({ type: 'ack' as const }) });

function copyOptions(options: EnqueueOptions | undefined): EnqueueOptions | undefined {
  if (options === undefined) return undefined;
  const copy: EnqueueOptions = { ...options };
  if (options.headers !== undefined) copy.headers = copyHeaders(options.headers);
  if (options.reaperDeadLetter !== undefined) copy.reaperDeadLetter = copyReaperBranch(options.reaperDeadLetter);
  return copy;
}

export function copyEffects(effects: Effects): Effects;
export function copyEffects(effects: Effects | undefined): Effects | undefined;
export function copyEffects(effects: Effects | undefined): Effects | undefined {
  if (effects === undefined) return undefined;
  const copy: Effects = {};
  if (effects.enqueue) {
    copy.enqueue = effects.enqueue.map((r) => {
      const options = copyOptions(r.options);
      return options === undefined ? { queue: r.queue, payload: r.payload.slice() } : { queue: r.queue, payload: r.payload.slice(), options };
    });
  }
  if (effects.kvWrites) copy.kvWrites = effects.kvWrites.map((w) => ({ ...w, value: w.value.slice() }));
  if (effects.kvDeletes) copy.kvDeletes = [...effects.kvDeletes];
  return copy;
}

function copyPrecondition(precondition: KvPrecondition): KvPrecondition {
  return { key: precondition.key, equals: precondition.equals.slice() };
}

export function copyReaperBranch(branch: ReaperDeadLetterBranch): ReaperDeadLetterBranch {
  const copy: ReaperDeadLetterBranch = {};
  if (branch.precondition !== undefined) copy.precondition = copyPrecondition(branch.precondition);
  if (branch.effects !== undefined) copy.effects = copyEffects(branch.effects);
  if (branch.ifCancelRequested !== undefined) copy.ifCancelRequested = copyEffects(branch.ifCancelRequested);
  return copy;
}

/** The effects the reaper applies for a job it dead-letters: by cancel flag, none when the precondition fails. */
export function reaperEffects(
  branch: ReaperDeadLetterBranch | undefined,
  cancelRequested: boolean,
  preconditionHolds: (precondition: KvPrecondition) => boolean,
): Effects | undefined {
  if (branch === undefined) return undefined;
  if (branch.precondition !== undefined && !preconditionHolds(branch.precondition)) return undefined;
  return cancelRequested ? branch.ifCancelRequested : branch.effects;
}

type Json = Record<string, unknown>;

const base64 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
const fromBase64 = (text: unknown): Uint8Array => new Uint8Array(Buffer.from(String(text), 'base64'));

function effectsToJson(effects: Effects | undefined): Json | undefined {
  if (effects === undefined) return undefined;
  return {
    enqueue: effects.enqueue?.map((r) => ({ queue: r.queue, payload: base64(r.payload), options: optionsToJson(r.options) })),
    kvWrites: effects.kvWrites?.map((w) => ({ key: w.key, value: base64(w.value) })),
    kvDeletes: effects.kvDeletes,
  };
}

function optionsToJson(options: EnqueueOptions | undefined): Json | undefined {
  if (options === undefined) return undefined;
  const { reaperDeadLetter, ...rest } = options;
  return reaperDeadLetter === undefined ? rest : { ...rest, reaperDeadLetter: branchToJson(reaperDeadLetter) };
}

function branchToJson(branch: ReaperDeadLetterBranch): Json {
  return {
    precondition: branch.precondition && { key: branch.precondition.key, equals: base64(branch.precondition.equals) },
    effects: effectsToJson(branch.effects),
    ifCancelRequested: effectsToJson(branch.ifCancelRequested),
  };
}

function effectsFromJson(json: Json | undefined): Effects | undefined {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the text comes from a store column
  if (json === undefined || json === null) return undefined;
  const effects: Effects = {};
  const enqueue = json.enqueue as Json[] | undefined;
  if (enqueue) {
    effects.enqueue = enqueue.map((r) => {
      const options = r.options as Json | undefined;
      const request = { queue: r.queue as string, payload: fromBase64(r.payload) };
      return options ? { ...request, options: optionsFromJson(options) } : request;
    });
  }
  const writes = json.kvWrites as Json[] | undefined;
  if (writes) effects.kvWrites = writes.map((w) => ({ key: w.key as string, value: fromBase64(w.value) }));
  if (json.kvDeletes) effects.kvDeletes = [...(json.kvDeletes as string[])];
  return effects;
}

function optionsFromJson(json: Json): EnqueueOptions {
  const { reaperDeadLetter, headers, ...rest } = json;
  const options = rest as EnqueueOptions;
  if (headers !== undefined) options.headers = copyHeaders(headers as Record<string, string>);
  if (reaperDeadLetter !== undefined) options.reaperDeadLetter = branchFromJson(reaperDeadLetter as Json);
  return options;
}

function branchFromJson(json: Json): ReaperDeadLetterBranch {
  const branch: ReaperDeadLetterBranch = {};
  const precondition = json.precondition as Json | undefined;
  if (precondition) branch.precondition = { key: precondition.key as string, equals: fromBase64(precondition.equals) };
  const effects = effectsFromJson(json.effects as Json | undefined);
  if (effects) branch.effects = effects;
  const ifCancelRequested = effectsFromJson(json.ifCancelRequested as Json | undefined);
  if (ifCancelRequested) branch.ifCancelRequested = ifCancelRequested;
  return branch;
}

/** Text form of a reaper branch (JSON, byte arrays as base64), for stores that keep it in a column. */
export function encodeReaperBranch(branch: ReaperDeadLetterBranch): string {
  return JSON.stringify(branchToJson(branch));
}

export function decodeReaperBranch(text: string): ReaperDeadLetterBranch {
  return branchFromJson(JSON.parse(text) as Json);
}
