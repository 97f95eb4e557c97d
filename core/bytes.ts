/**
 * A detached copy of bytes. Not `bytes.slice()`: on a Node `Buffer` that is
 * a view of the same memory, so the caller could still change what a store
 * keeps or what a hash was computed over.
 */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}
