/**
 * A document pipeline on the embedded default store (SQLite, in the working
 * directory): extract → OCR (flaky: retried) → wait for a review window
 * (a delayed step) → summarize. Interrupt it (Ctrl-C, or kill) and run it
 * again: unfinished runs resume where they stopped.
 *
 *   npm run example                 # 12 documents
 *   DOCS=40 npm run example         # more
 *   npm run example -- --reset      # forget earlier progress and start over
 */
import { appendFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { StepError, StepOutcome, WorkflowRuntime } from '../core/index.js';
import type { RunOutcome, Step } from '../core/index.js';
import { SqliteStore } from '../adapters/sqlite/index.js';

const DB_PATH = process.env.PIPELINE_DB ?? 'document-pipeline.db';
const RESULTS_PATH = `${DB_PATH}.results.jsonl`;
const DOCS = Number(process.env.DOCS ?? 12);
const STEP_NAMES = ['extract', 'ocr', 'review window', 'summarize'];

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const json = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));
const parse = <T>(bytes: Uint8Array): T => JSON.parse(decoder.decode(bytes)) as T;
const work = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });

interface Doc {
  name: string;
  pages: number;
  text?: string;
  words?: number;
}

/** The workflow: one function, one branch per step. Idempotent per (run, step). */
async function runner(step: Step): Promise<StepOutcome> {
  const doc = parse<Doc>(step.payload);
  switch (step.stepNumber) {
    case 0:
      await work(150 + doc.pages * 20, step.signal);
      return StepOutcome.continue(json({ ...doc, text: `${doc.name} `.repeat(doc.pages * 40) }));
    case 1:
      await work(200, step.signal);
      // Every third document's scanner times out on the first attempt: a transient error, retried with backoff.
      if (Number(doc.name.slice(-2)) % 3 === 0 && step.attempts === 1) throw StepError.transient('OCR service timed out');
      return StepOutcome.continueAfter(json({ ...doc, words: doc.text?.split(' ').length ?? 0 }), 1_500);
    case 2:
      await work(100, step.signal);
      return StepOutcome.continue(step.payload);
    default:
      await work(150, step.signal);
      return StepOutcome.succeed(json({ name: doc.name, words: doc.words, summary: `${doc.name}: ${doc.pages} pages, ${doc.words} words` }));
  }
}

function finishedEarlier(): Set<string> {
  if (!existsSync(RESULTS_PATH)) return new Set();
  return new Set(
    readFileSync(RESULTS_PATH, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => (JSON.parse(line) as { runId: string }).runId),
  );
}

async function main(): Promise<void> {
  if (process.argv.includes('--reset')) {
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${DB_PATH}${suffix}`, { force: true });
    rmSync(RESULTS_PATH, { force: true });
    console.log(`reset: removed ${DB_PATH} and its results`);
  }
  const store = new SqliteStore({ path: DB_PATH, defaultQueueConfig: { retryBackoffBaseMs: 500 } });
  const done = finishedEarlier();
  const started = Date.now();
  const outcomes: RunOutcome[] = [];
  let retries = 0;
  let steps = 0;
  const total = DOCS;
  let finished!: () => void;
  const allFinished = new Promise<void>((resolve) => (finished = resolve));

  const runtime = new WorkflowRuntime({
    store,
    runner,
    maxConcurrentSteps: 4,
    hook: (outcome) => {
      outcomes.push(outcome);
      appendFileSync(RESULTS_PATH, `${JSON.stringify({ runId: outcome.runId, status: outcome.status })}\n`);
      const detail = outcome.status === 'succeeded' && outcome.result !== undefined ? parse<{ summary: string }>(outcome.result).summary : outcome.error;
      console.log(`  ✔ ${outcome.runId} ${outcome.status} after step ${outcome.finalStep}: ${detail}   [${done.size + outcomes.length}/${total} done]`);
      if (done.size + outcomes.length >= total) finished();
    },
  });
  runtime.on('stepSettled', (e) => {
    steps++;
    if (e.status === 'scheduled' || e.status === 'pending') {
      retries++;
      console.log(`  ↻ ${e.runId} ${STEP_NAMES[e.stepNumber]} failed, will retry`);
    } else if (e.branch === 'primary' && e.stepNumber < 3) {
      console.log(`  · ${e.runId} ${STEP_NAMES[e.stepNumber]} done${e.stepNumber === 1 ? ' (review window opens in 1.5 s)' : ''}`);
    }
  });
  runtime.on('storeError', (e) => console.error(`  ! store error during ${e.operation}:`, e.error));

  let resumed = 0;
  let fresh = 0;
  for (let i = 1; i <= total; i++) {
    const runId = `doc-${String(i).padStart(2, '0')}`;
    if (done.has(runId)) continue;
    const result = await runtime.submit({ runId, input: json({ name: runId, pages: 1 + (i % 5) }), headers: { pipeline: 'documents' } });
    if (result.newlySubmitted) fresh++;
    else resumed++;
  }
  console.log(`document pipeline on ${DB_PATH}: ${total} documents, ${done.size} finished earlier, ${resumed} resumed, ${fresh} new`);
  if (done.size >= total) {
    console.log('nothing left to do; run with --reset to start over');
    await store.close();
    return;
  }
  if (resumed > 0) console.log(`resuming ${resumed} unfinished runs where they stopped (settled steps are not run again)`);

  const controller = new AbortController();
  let interrupted = false;
  const stop = (): void => {
    if (interrupted) return;
    interrupted = true;
    console.log('\ninterrupted: letting in-flight steps settle…');
    controller.abort();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const worker = runtime.run(controller.signal);
  await Promise.race([allFinished, worker]);
  controller.abort();
  await worker;
  await store.close();

  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const byStatus = (status: string): number => outcomes.filter((o) => o.status === status).length;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the SIGINT handler
  if (interrupted) {
    console.log(`stopped after ${seconds} s: ${outcomes.length} runs finished this time. Run the same command again to resume.`);
    return;
  }
  console.log(
    `\nsummary: ${total} documents; this session ${outcomes.length} runs ended (${byStatus('succeeded')} succeeded, ${byStatus('failed')} failed, ${byStatus('cancelled')} cancelled), ${steps} step settlements, ${retries} retries, ${seconds} s`,
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
