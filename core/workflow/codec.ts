/**
 * Codecs: how a workflow's state and result become the bytes a step job
 * carries, and back. `json()` (the default) writes object keys in sorted
 * order, so equal values always encode to equal bytes, and a run's input
 * hash (taken over the bytes) does not depend on the order keys were set in.
 */
import { copyBytes } from '../bytes.js';
import { WorkflowError } from '../errors.js';

/** Turns values into bytes and back. `decode(encode(v))` must give back an equal value. */
export interface Codec<T> {
  encode(value: T): Uint8Array;
  decode(bytes: Uint8Array): T;
}

/** A value the codec cannot encode or bytes it cannot decode: nothing was stored. */
export class CodecError extends WorkflowError {
  readonly code = 'CODEC_FAILED';
  readonly isPermanent = true;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * JSON of plain data with object keys in sorted order (recursively). Refused,
 * with a `CodecError` naming where: `undefined` at the top, functions,
 * symbols, bigints, non-finite numbers, cycles, and objects other than plain
 * ones and arrays (a `Map`, `Set` or class instance would silently lose its
 * contents); `Date`s go through their `toJSON` (an ISO string, decoded as a string).
 */
export function json<T = unknown>(): Codec<T> {
  return {
    encode(value: T): Uint8Array {
      return encoder.encode(stableStringify(value, '$', new Set()));
    },
    decode(bytes: Uint8Array): T {
      try {
        return JSON.parse(decoder.decode(bytes)) as T;
      } catch (error) {
        throw new CodecError(`json codec cannot decode ${bytes.byteLength} bytes: ${(error as Error).message}`, { cause: error });
      }
    },
  };
}

/** Raw bytes, for those with a format of their own. Copies both ways. */
export function bytes(): Codec<Uint8Array> {
  return {
    encode(value: Uint8Array): Uint8Array {
      if (!(value instanceof Uint8Array)) throw new CodecError(`bytes codec: expected a Uint8Array, got ${typeof value}`);
      return copyBytes(value);
    },
    decode: (value: Uint8Array): Uint8Array => copyBytes(value),
  };
}

function stableStringify(value: unknown, path: string, seen: Set<object>): string {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new CodecError(`json codec cannot encode ${String(value)} at ${path}`);
      return JSON.stringify(value);
    case 'object': {
      if (value === null) return 'null';
      const withToJson = value as { toJSON?: unknown };
      if (typeof withToJson.toJSON === 'function') return stableStringify((withToJson.toJSON as () => unknown).call(value), path, seen);
      if (seen.has(value)) throw new CodecError(`json codec cannot encode a cycle at ${path}`);
      seen.add(value);
      try {
        if (Array.isArray(value)) return `[${value.map((item, i) => stableStringify(item === undefined ? null : item, `${path}[${i}]`, seen)).join(',')}]`;
        const proto: unknown = Object.getPrototypeOf(value);
        if (proto !== Object.prototype && proto !== null) {
          throw new CodecError(`json codec cannot encode a ${describeClass(value)} at ${path}: only plain objects, arrays and JSON values`);
        }
        const record = value as Record<string, unknown>;
        const parts: string[] = [];
        for (const key of Object.keys(record).sort()) {
          const item = record[key];
          if (item === undefined) continue; // as JSON.stringify: an absent field
          parts.push(`${JSON.stringify(key)}:${stableStringify(item, `${path}.${key}`, seen)}`);
        }
        return `{${parts.join(',')}}`;
      } finally {
        seen.delete(value);
      }
    }
    default:
      throw new CodecError(`json codec cannot encode a ${typeof value} at ${path}`);
  }
}

function describeClass(value: object): string {
  const name: unknown = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' ? name : 'object with a prototype';
}
