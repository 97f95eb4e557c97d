/**
 * The hook delivery mode of a queue, recorded once in the store's kv
 * namespace (under the runtime's own key prefix) by the first submit, so a
 * runtime configured differently is refused instead of silently losing
 * hooks. The record is never removed: the mode belongs to the queue.
 */
import type { KvWrite } from './queue-store.js';

export type HookDelivery = 'inProcess' | 'durable';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function deliveryModeKey(queueName: string): string {
  return `workflow/${queueName}/config/hook-delivery`;
}

/** The write that records `mode`, only if no mode is recorded yet. */
export function deliveryModeWrite(queueName: string, mode: HookDelivery): KvWrite {
  return { key: deliveryModeKey(queueName), value: encoder.encode(mode), ifAbsent: true };
}

export function decodeDeliveryMode(value: Uint8Array): string {
  return decoder.decode(value);
}
