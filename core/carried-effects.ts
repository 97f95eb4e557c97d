/**
 * Helpers every store shares for the parts of a settlement or job that are
 * decided by the store: the effects a job carries for its reaper
 * dead-letter (`EnqueueOptions.reaperDeadLetter`) as detached copies and as
 * text for stores that keep them in a column (a store keeps these past the
 * call that handed them over, so it must never hold the caller's objects or
 * byte arrays), and the branch of a stale settlement.
 */
import { copyBytes } from './bytes.js';
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
      return options === undefined ? { queue: r.queue, payload: copyBytes(r.payload) } : { queue: r.queue, payload: copyBytes(r.payload), options };
    });
  }
  if (effects.kvWrites) copy.kvWrites = effects.kvWrites.map((w) => ({ ...w, value: copyBytes(w.value) }));
  if (effects.kvDeletes) copy.kvDeletes = [...effects.kvDeletes];
  return copy;
}

function copyPrecondition(precondition: KvPrecondition): KvPrecondition {
  return { key: precondition.key, equals: copyBytes(precondition.equals) };
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

// The first column form, still read: a plain object, every byte array in base64.
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

/**
 * Text form of a reaper branch, for stores that keep it in a column. Every
 * step job carries one, so it is kept small: JSON of `[2, strings, tree]`,
 * where each string of the branch (keys, queue names, dedup keys, header
 * values) stands once in `strings` and the tree refers to it by index, and
 * byte arrays that are UTF-8 text are kept as text (by index too), others
 * as base64 strings. The first form (a plain object, every byte array in
 * base64) is still read.
 */
export function encodeReaperBranch(branch: ReaperDeadLetterBranch): string {
  const table = new StringTable();
  return JSON.stringify([COMPACT_FORMAT, table.strings, compactBranch(branch, table)]);
}

export function decodeReaperBranch(text: string): ReaperDeadLetterBranch {
  const parsed = JSON.parse(text) as unknown;
  if (!Array.isArray(parsed)) return branchFromJson(parsed as Json);
  const [format, strings, tree] = parsed as [number, string[], Json];
  if (format !== COMPACT_FORMAT) throw new TypeError(`unknown reaper branch format ${String(format)}`);
  return expandBranch(tree, strings);
}

const COMPACT_FORMAT = 2;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

/** Distinct strings in first-seen order. */
class StringTable {
  readonly strings: string[] = [];
  private readonly index = new Map<string, number>();

  ref(text: string): number {
    let i = this.index.get(text);
    if (i === undefined) {
      i = this.strings.push(text) - 1;
      this.index.set(text, i);
    }
    return i;
  }

  /** Bytes: the index of their text when they are UTF-8, else their base64. */
  bytes(value: Uint8Array): number | string {
    let text: string;
    try {
      text = utf8.decode(value);
    } catch {
      return base64(value);
    }
    return this.ref(text);
  }
}

function compactBranch(branch: ReaperDeadLetterBranch, t: StringTable): Json {
  const out: Json = {};
  if (branch.precondition) out.p = [t.ref(branch.precondition.key), t.bytes(branch.precondition.equals)];
  if (branch.effects) out.e = compactEffects(branch.effects, t);
  if (branch.ifCancelRequested) out.c = compactEffects(branch.ifCancelRequested, t);
  return out;
}

function compactEffects(effects: Effects, t: StringTable): Json {
  const out: Json = {};
  if (effects.enqueue)
    out.enqueue = effects.enqueue.map((r) => [t.ref(r.queue), t.bytes(r.payload), r.options === undefined ? null : compactOptions(r.options, t)]);
  if (effects.kvWrites) out.kvWrites = effects.kvWrites.map((w) => [t.ref(w.key), t.bytes(w.value), w.ifAbsent === true]);
  if (effects.kvDeletes) out.kvDeletes = effects.kvDeletes.map((key) => t.ref(key));
  return out;
}

function compactOptions(options: EnqueueOptions, t: StringTable): Json {
  const { headers, dedupKey, id, reaperDeadLetter, ...rest } = options;
  const out: Json = rest;
  if (id !== undefined) out.id = t.ref(id);
  if (dedupKey !== undefined) out.dedupKey = t.ref(dedupKey);
  if (headers !== undefined) out.headers = Object.keys(headers).map((key) => [t.ref(key), t.ref(headers[key] as string)]);
  if (reaperDeadLetter !== undefined) out.reaperDeadLetter = compactBranch(reaperDeadLetter, t);
  return out;
}

function expandBranch(tree: Json, strings: string[]): ReaperDeadLetterBranch {
  const text = (i: unknown): string => {
    const value = strings[i as number];
    if (typeof value !== 'string') throw new TypeError(`reaper branch refers to string ${String(i)} of ${strings.length}`);
    return value;
  };
  const bytes = (v: unknown): Uint8Array => (typeof v === 'number' ? utf8Encoder.encode(text(v)) : fromBase64(v));
  const effects = (json: Json): Effects => {
    const out: Effects = {};
    if (json.enqueue) {
      out.enqueue = (json.enqueue as Array<[number, unknown, Json | null]>).map(([queue, payload, options]) =>
        options === null ? { queue: text(queue), payload: bytes(payload) } : { queue: text(queue), payload: bytes(payload), options: expandOptions(options) },
      );
    }
    if (json.kvWrites) {
      out.kvWrites = (json.kvWrites as Array<[number, unknown, boolean]>).map(([key, value, ifAbsent]) =>
        ifAbsent ? { key: text(key), value: bytes(value), ifAbsent } : { key: text(key), value: bytes(value) },
      );
    }
    if (json.kvDeletes) out.kvDeletes = (json.kvDeletes as number[]).map(text);
    return out;
  };
  const expandOptions = (json: Json): EnqueueOptions => {
    const { headers, dedupKey, id, reaperDeadLetter, ...rest } = json;
    const options = rest as EnqueueOptions;
    if (id !== undefined) options.id = text(id);
    if (dedupKey !== undefined) options.dedupKey = text(dedupKey);
    if (headers !== undefined) {
      const map = copyHeaders(undefined);
      for (const [key, value] of headers as Array<[number, number]>) map[text(key)] = text(value);
      options.headers = map;
    }
    if (reaperDeadLetter !== undefined) options.reaperDeadLetter = expandTree(reaperDeadLetter as Json);
    return options;
  };
  const expandTree = (json: Json): ReaperDeadLetterBranch => {
    const branch: ReaperDeadLetterBranch = {};
    if (json.p) {
      const [key, equals] = json.p as [number, unknown];
      branch.precondition = { key: text(key), equals: bytes(equals) };
    }
    if (json.e) branch.effects = effects(json.e as Json);
    if (json.c) branch.ifCancelRequested = effects(json.c as Json);
    return branch;
  };
  return expandTree(tree);
}
