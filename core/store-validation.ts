/**
 * Argument checks shared by every adapter, so each raises the same typed
 * errors for the same bad input (one place, as bullmq does for its backends).
 */
import { InvalidArgumentError, KvValueTooLargeError } from './errors.js';
import { KV_VALUE_MAX_BYTES } from './queue-store.js';
import type { Effects, EnqueueOptions, KvPrecondition, KvWrite, ReaperDeadLetterBranch, Settlement, SettleAction } from './queue-store.js';

export function checkQueueName(queue: unknown): asserts queue is string {
  if (typeof queue !== 'string' || queue.length === 0 || queue.length > 256) {
    throw new InvalidArgumentError('queue name', `expected a non-empty string of at most 256 characters, got ${describe(queue)}`);
  }
}

export function checkPayload(payload: unknown, name = 'payload'): asserts payload is Uint8Array {
  if (!(payload instanceof Uint8Array)) throw new InvalidArgumentError(name, `expected a Uint8Array, got ${describe(payload)}`);
  // A view of a buffer that was transferred away reads as empty: storing it would silently store nothing.
  if (payload.byteLength === 0 && isDetached(payload.buffer)) {
    throw new InvalidArgumentError(name, 'its ArrayBuffer is detached (transferred away, e.g. to a worker); pass bytes that are still readable');
  }
}

/** A detached buffer: `detached` where the runtime has it (Node 22), else the refusal to view it (Node 20). */
function isDetached(buffer: ArrayBufferLike): boolean {
  const detached = (buffer as { detached?: unknown }).detached;
  if (typeof detached === 'boolean') return detached;
  if (buffer.byteLength !== 0) return false;
  try {
    new Uint8Array(buffer);
    return false;
  } catch {
    return true;
  }
}

export function checkNonNegativeInt(name: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(name, `expected a non-negative integer, got ${describe(value)}`);
  }
}

export function checkPositiveInt(name: string, value: unknown): asserts value is number {
  checkNonNegativeInt(name, value);
  if (value < 1) throw new InvalidArgumentError(name, `expected at least 1, got ${value}`);
}

/**
 * Headers are a plain object of string values. A `Map` or a class instance
 * is refused rather than read as empty (its entries are not own enumerable
 * properties); prototype-free maps (`Object.create(null)`, `createHeaders()`)
 * are plain.
 */
export function checkHeaders(headers: unknown): void {
  if (headers === undefined) return;
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers) || !isPlainRecord(headers)) {
    throw new InvalidArgumentError('headers', `expected a plain object of string values, got ${describe(headers)}`);
  }
  for (const key of Object.keys(headers)) {
    const value = (headers as Record<string, unknown>)[key];
    if (typeof value !== 'string') throw new InvalidArgumentError('headers', `value of "${key}" must be a string, got ${describe(value)}`);
  }
}

/** Prototype `null`, `Object.prototype`, or an empty prototype-free object (the header maps of core/headers.ts). */
function isPlainRecord(value: object): boolean {
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto === null || proto === Object.prototype) return true;
  return Object.getPrototypeOf(proto) === null && Reflect.ownKeys(proto as object).length === 0;
}

export function checkEnqueueOptions(options: EnqueueOptions | undefined): void {
  if (options === undefined) return;
  if (options.id !== undefined && (typeof options.id !== 'string' || options.id.length === 0 || options.id.length > 256)) {
    throw new InvalidArgumentError('id', `expected a non-empty string of at most 256 characters, got ${describe(options.id)}`);
  }
  checkHeaders(options.headers);
  if (options.runAt !== undefined) checkNonNegativeInt('runAt', options.runAt);
  if (options.delayMs !== undefined) {
    checkNonNegativeInt('delayMs', options.delayMs);
    if (options.runAt !== undefined) throw new InvalidArgumentError('delayMs', 'give runAt or delayMs, not both');
  }
  if (options.priority !== undefined) checkNonNegativeInt('priority', options.priority);
  if (options.maxAttempts !== undefined) checkPositiveInt('maxAttempts', options.maxAttempts);
  if (options.dedupKey !== undefined && (typeof options.dedupKey !== 'string' || options.dedupKey.length === 0)) {
    throw new InvalidArgumentError('dedupKey', `expected a non-empty string, got ${describe(options.dedupKey)}`);
  }
  if (options.reaperDeadLetter !== undefined) checkReaperBranch(options.reaperDeadLetter);
}

function checkReaperBranch(branch: ReaperDeadLetterBranch): void {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
  if (branch === null || typeof branch !== 'object') throw new InvalidArgumentError('reaperDeadLetter', `expected an object, got ${describe(branch)}`);
  checkPrecondition(branch.precondition);
  checkEffects(branch.effects);
  checkEffects(branch.ifCancelRequested);
}

export function checkPrecondition(precondition: KvPrecondition | undefined): void {
  if (precondition === undefined) return;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
  if (precondition === null || typeof precondition !== 'object')
    throw new InvalidArgumentError('precondition', `expected an object, got ${describe(precondition)}`);
  checkKvKey(precondition.key);
  checkPayload(precondition.equals, 'precondition value');
}

/** A kv key a store accepts: a non-empty string of at most 1024 characters. */
export function isValidKvKey(key: unknown): key is string {
  return typeof key === 'string' && key.length > 0 && key.length <= 1024;
}

export function checkKvKey(key: unknown): asserts key is string {
  if (!isValidKvKey(key)) {
    throw new InvalidArgumentError('kv key', `expected a non-empty string of at most 1024 characters, got ${describe(key)}`);
  }
}

export function checkKvWrites(writes: KvWrite[] | undefined): void {
  for (const write of writes ?? []) {
    checkKvKey(write.key);
    checkPayload(write.value, `kv value of "${write.key}"`);
    if (write.value.byteLength > KV_VALUE_MAX_BYTES) throw new KvValueTooLargeError(write.key, write.value.byteLength, KV_VALUE_MAX_BYTES);
    if (write.ttlMs !== undefined) checkPositiveInt(`ttlMs of "${write.key}"`, write.ttlMs);
  }
}

export function checkEffects(effects: Effects | undefined): void {
  if (!effects) return;
  for (const request of effects.enqueue ?? []) {
    checkQueueName(request.queue);
    checkPayload(request.payload);
    checkEnqueueOptions(request.options);
  }
  checkKvWrites(effects.kvWrites);
  for (const key of effects.kvDeletes ?? []) checkKvKey(key);
}

function checkAction(action: SettleAction): void {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
  switch (action?.type) {
    case 'ack':
      return;
    case 'nack':
      if (typeof action.error !== 'string') throw new InvalidArgumentError('nack error', 'expected a string');
      if (action.delayMs !== undefined) checkNonNegativeInt('nack delayMs', action.delayMs);
      return;
    case 'deadLetter':
      if (typeof action.reason !== 'string') throw new InvalidArgumentError('dead-letter reason', 'expected a string');
      return;
    default:
      throw new InvalidArgumentError('settle action', `expected ack, nack or deadLetter, got ${describe(action)}`);
  }
}

export function checkSettlement(settlement: Settlement): void {
  checkAction(settlement.action);
  checkPrecondition(settlement.precondition);
  checkEffects(settlement.effects);
  if (settlement.ifCancelRequested) {
    checkAction(settlement.ifCancelRequested.action);
    checkEffects(settlement.ifCancelRequested.effects);
  }
}

export function describe(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean' || value == null) return String(value);
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (value instanceof Uint8Array) return `${value.constructor.name}(${value.byteLength})`;
  if (Array.isArray(value)) return 'an array';
  if (typeof value !== 'object') return typeof value;
  try {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- an object may have no constructor (Object.create(null), proxies)
    return `an object (${value.constructor?.name ?? 'null prototype'})`;
  } catch {
    return 'an object';
  }
}

/** Byte-equality of two kv values. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  // Short values (run cursors, checked on every settlement) compare faster in a loop than through two Buffer views.
  if (a.byteLength <= 256) {
    for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

export function checkJobId(jobId: unknown): asserts jobId is string {
  if (typeof jobId !== 'string' || jobId.length === 0 || jobId.length > 256) {
    throw new InvalidArgumentError('job id', `expected a non-empty string of at most 256 characters, got ${describe(jobId)}`);
  }
}

export function checkTimeoutMs(timeoutMs: unknown): asserts timeoutMs is number {
  if (typeof timeoutMs !== 'number' || !Number.isSafeInteger(timeoutMs) || timeoutMs < 0) {
    throw new InvalidArgumentError('timeoutMs', `expected a non-negative integer, got ${describe(timeoutMs)}`);
  }
}

/** The error for an enqueue that names a job id in use (or twice in one call). */
export function jobIdInUse(id: string): InvalidArgumentError {
  return new InvalidArgumentError('id', `job id "${id}" is already in use`);
}

/**
 * The ids an enqueue gives (`options.id`) must be new to the store
 * (`inUse` says which are not) and distinct within the call; checked
 * before anything is written, so a refused call changes nothing.
 */
export function checkNewJobIds(requests: ReadonlyArray<{ options?: EnqueueOptions | undefined }>, inUse: (id: string) => boolean): void {
  let seen: Set<string> | undefined;
  for (const request of requests) {
    const id = request.options?.id;
    if (id === undefined) continue;
    if (inUse(id) || seen?.has(id) === true) throw jobIdInUse(id);
    (seen ??= new Set()).add(id);
  }
}
