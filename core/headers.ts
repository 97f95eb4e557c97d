import type { Headers } from './queue-store.js';

/**
 * Header maps inherit from one empty object that itself has no prototype:
 * `Object.prototype` is not in their chain, so keys such as `__proto__` or
 * `constructor` are plain data and can never reach it. Unlike
 * `Object.create(null)`, whose objects V8 keeps as slow dictionaries, these
 * stay fast-property objects: copying one costs about half as much, and the
 * runtime copies a step's headers several times per step.
 */
function HeaderMap(): void {}
HeaderMap.prototype = Object.create(null) as object;

/** An empty header map (see `HeaderMap`): no `Object.prototype` in its chain. */
export function createHeaders(): Headers {
  return new (HeaderMap as unknown as new () => Headers)();
}

/** Copies own enumerable string entries into a prototype-free map. */
export function copyHeaders(source: Headers | undefined): Headers {
  const out = createHeaders();
  if (!source) return out;
  for (const key of Object.keys(source)) out[key] = source[key] as string;
  return out;
}

/** Size of a header map as stored: UTF-8 bytes of every key and value. */
export function headerBytes(headers: Headers): number {
  let total = 0;
  for (const key of Object.keys(headers)) total += Buffer.byteLength(key) + Buffer.byteLength(headers[key] as string);
  return total;
}

/** Parses JSON headers into a prototype-free map (`JSON.parse` makes `__proto__` an own key). */
export function parseHeadersJson(json: string): Headers {
  return copyHeaders(JSON.parse(json) as Headers);
}

/** Reserved step-job header carrying the run id. */
export const HEADER_RUN_ID = 'workflow.run_id';
/** Reserved step-job header carrying the zero-based step number. */
export const HEADER_STEP = 'workflow.step';

/** Reserved step-job header carrying the name of the run's workflow (runs started from a `defineWorkflow` definition). */
export const HEADER_WORKFLOW = 'workflow.name';
/** Reserved step-job header carrying the name of the step a job runs (named steps). */
export const HEADER_STEP_NAME = 'workflow.step_name';

/** Reserved step-job header marking the job that runs a workflow's `onCancel` (its value: `1`). */
export const HEADER_ON_CANCEL = 'workflow.on_cancel';

/** Header keys the runtime owns: a submitter's headers never start with it. */
export const RESERVED_HEADER_PREFIX = 'workflow.';

/** The submitter's headers among a job's (every `workflow.*` key left out). */
export function userHeaders(headers: Headers): Headers {
  const out = createHeaders();
  for (const key of Object.keys(headers)) if (!key.startsWith(RESERVED_HEADER_PREFIX)) out[key] = headers[key] as string;
  return out;
}
