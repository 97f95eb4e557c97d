/**
 * Reaper templates (`QueueStore.setReaperTemplate`): checking one, copying
 * it, keeping it as text, and making from it the branch the reaper applies
 * to one job. Every store makes the branch with `instantiateReaperTemplate`
 * (or, in SQL, by the same rules), so all of them agree on what a template
 * makes from a job.
 */
import { copyBytes } from './bytes.js';
import { copyHeaders } from './headers.js';
import { InvalidArgumentError } from './errors.js';
import { checkHeaders, checkPayload, checkQueueName, describe, isValidKvKey } from './store-validation.js';
import type { Effects, Headers, JobRecord, JobText, ReaperDeadLetterBranch, ReaperTemplate, TemplateEffects, TemplateEnqueue } from './queue-store.js';

const encoder = new TextEncoder();

/** The text, or `undefined` when it names a header the job lacks. */
export function renderJobText(text: JobText, job: Pick<JobRecord, 'id' | 'headers'>): string | undefined {
  let out = '';
  for (const part of text) {
    if (typeof part === 'string') out += part;
    else if ('jobId' in part) out += job.id;
    else {
      if (!Object.hasOwn(job.headers, part.header)) return undefined;
      out += job.headers[part.header] as string;
    }
  }
  return out;
}

/** What the reaper commits as the template says, made from `job`; `undefined` when it makes nothing (see `ReaperTemplate`). */
export function instantiateReaperTemplate(template: ReaperTemplate, job: Pick<JobRecord, 'id' | 'headers'>): ReaperDeadLetterBranch | undefined {
  const branch: ReaperDeadLetterBranch = {};
  if (template.precondition !== undefined) {
    const key = renderJobText(template.precondition.key, job);
    const equals = renderJobText(template.precondition.equals, job);
    if (key === undefined || equals === undefined || !isValidKvKey(key)) return undefined;
    branch.precondition = { key, equals: encoder.encode(equals) };
  }
  for (const which of ['effects', 'ifCancelRequested'] as const) {
    const effects = template[which];
    if (effects === undefined) continue;
    const made = instantiateEffects(effects, job);
    if (made === undefined) return undefined;
    branch[which] = made;
  }
  return branch;
}

function instantiateEffects(template: TemplateEffects, job: Pick<JobRecord, 'id' | 'headers'>): Effects | undefined {
  const effects: Effects = {};
  if (template.enqueue !== undefined) {
    const enqueue: NonNullable<Effects['enqueue']> = [];
    for (const request of template.enqueue) {
      const headers: Headers = request.copyJobHeaders === true ? copyHeaders(job.headers) : copyHeaders(undefined);
      if (request.headers !== undefined) for (const key of Object.keys(request.headers)) headers[key] = request.headers[key] as string;
      const options: NonNullable<NonNullable<Effects['enqueue']>[number]['options']> = { headers };
      if (request.dedupKey !== undefined) {
        const dedupKey = renderJobText(request.dedupKey, job);
        if (dedupKey === undefined || dedupKey.length === 0) return undefined;
        options.dedupKey = dedupKey;
      }
      enqueue.push({ queue: request.queue, payload: copyBytes(request.payload), options });
    }
    effects.enqueue = enqueue;
  }
  if (template.kvDeletes !== undefined) {
    const kvDeletes: string[] = [];
    for (const text of template.kvDeletes) {
      const key = renderJobText(text, job);
      if (key === undefined || !isValidKvKey(key)) return undefined;
      kvDeletes.push(key);
    }
    effects.kvDeletes = kvDeletes;
  }
  return effects;
}

// ---- checks and copies --------------------------------------------------

export function checkReaperTemplate(template: unknown): asserts template is ReaperTemplate | undefined {
  if (template === undefined) return;
  if (template === null || typeof template !== 'object') throw new InvalidArgumentError('reaper template', `expected an object, got ${describe(template)}`);
  const { precondition, effects, ifCancelRequested } = template as ReaperTemplate;
  if (precondition !== undefined) {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
    if (precondition === null || typeof precondition !== 'object') throw invalid('precondition', precondition);
    checkJobText('precondition key', precondition.key);
    checkJobText('precondition value', precondition.equals);
  }
  checkTemplateEffects('effects', effects);
  checkTemplateEffects('ifCancelRequested', ifCancelRequested);
}

function checkTemplateEffects(name: string, effects: TemplateEffects | undefined): void {
  if (effects === undefined) return;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
  if (effects === null || typeof effects !== 'object') throw invalid(name, effects);
  if (effects.enqueue !== undefined) {
    if (!Array.isArray(effects.enqueue)) throw invalid(`${name}.enqueue`, effects.enqueue);
    for (const request of effects.enqueue as unknown[]) checkTemplateEnqueue(request);
  }
  if (effects.kvDeletes !== undefined) {
    if (!Array.isArray(effects.kvDeletes)) throw invalid(`${name}.kvDeletes`, effects.kvDeletes);
    for (const text of effects.kvDeletes) checkJobText('kv delete key', text);
  }
}

function checkTemplateEnqueue(request: unknown): asserts request is TemplateEnqueue {
  if (request === null || typeof request !== 'object') throw invalid('template enqueue', request);
  const { queue, payload, copyJobHeaders, headers, dedupKey } = request as TemplateEnqueue;
  checkQueueName(queue);
  checkPayload(payload);
  if (copyJobHeaders !== undefined && typeof copyJobHeaders !== 'boolean') throw invalid('copyJobHeaders', copyJobHeaders);
  if (headers !== undefined) checkHeaders(headers);
  if (dedupKey !== undefined) checkJobText('dedup key', dedupKey);
}

function checkJobText(name: string, text: unknown): asserts text is JobText {
  if (!Array.isArray(text)) throw invalid(name, text);
  for (const part of text as unknown[]) {
    if (typeof part === 'string') continue;
    if (part !== null && typeof part === 'object') {
      const keys = Object.keys(part);
      if (keys.length === 1 && keys[0] === 'jobId' && (part as { jobId: unknown }).jobId === true) continue;
      if (keys.length === 1 && keys[0] === 'header' && typeof (part as { header: unknown }).header === 'string') continue;
    }
    throw new InvalidArgumentError(name, `expected parts that are strings, { jobId: true } or { header: name }, got ${describe(part)}`);
  }
}

function invalid(name: string, value: unknown): InvalidArgumentError {
  return new InvalidArgumentError(name, `expected an object, got ${describe(value)}`);
}

const copyText = (text: JobText): JobText =>
  text.map((part) => (typeof part === 'string' ? part : 'jobId' in part ? { jobId: true as const } : { header: part.header }));

function copyTemplateEffects(effects: TemplateEffects): TemplateEffects {
  const copy: TemplateEffects = {};
  if (effects.enqueue !== undefined) {
    copy.enqueue = effects.enqueue.map((request) => {
      const out: TemplateEnqueue = { queue: request.queue, payload: copyBytes(request.payload) };
      if (request.copyJobHeaders !== undefined) out.copyJobHeaders = request.copyJobHeaders;
      if (request.headers !== undefined) out.headers = copyHeaders(request.headers);
      if (request.dedupKey !== undefined) out.dedupKey = copyText(request.dedupKey);
      return out;
    });
  }
  if (effects.kvDeletes !== undefined) copy.kvDeletes = effects.kvDeletes.map(copyText);
  return copy;
}

/** A detached copy: stores never keep the caller's objects or byte arrays. */
export function copyReaperTemplate(template: ReaperTemplate): ReaperTemplate {
  const copy: ReaperTemplate = {};
  if (template.precondition !== undefined) copy.precondition = { key: copyText(template.precondition.key), equals: copyText(template.precondition.equals) };
  if (template.effects !== undefined) copy.effects = copyTemplateEffects(template.effects);
  if (template.ifCancelRequested !== undefined) copy.ifCancelRequested = copyTemplateEffects(template.ifCancelRequested);
  return copy;
}

// ---- text form, for stores that keep it in a column ---------------------

/**
 * JSON of the template, with each payload as base64 text (`payload`); the
 * rest as given. This is also the form the PostgreSQL store's SQL reads.
 */
export function encodeReaperTemplate(template: ReaperTemplate): string {
  // The holder's own value, not `value`: a Buffer payload reaches the replacer already made its `toJSON()` form.
  return JSON.stringify(template, function (this: Record<string, unknown>, key: string, value: unknown) {
    const own = this[key];
    return own instanceof Uint8Array ? Buffer.from(own).toString('base64') : value;
  });
}

export function decodeReaperTemplate(text: string): ReaperTemplate {
  const parsed = JSON.parse(text) as ReaperTemplate;
  for (const effects of [parsed.effects, parsed.ifCancelRequested]) {
    for (const request of effects?.enqueue ?? []) {
      request.payload = new Uint8Array(Buffer.from(request.payload as unknown as string, 'base64'));
      if (request.headers !== undefined) request.headers = copyHeaders(request.headers);
    }
  }
  return parsed;
}

/** The branch the reaper applies to `job`: the one it carries, else the one its queue's template makes. */
export function reaperBranchOf(
  carried: ReaperDeadLetterBranch | undefined,
  template: ReaperTemplate | undefined,
  job: Pick<JobRecord, 'id' | 'headers'>,
): ReaperDeadLetterBranch | undefined {
  if (carried !== undefined) return carried;
  return template === undefined ? undefined : instantiateReaperTemplate(template, job);
}
