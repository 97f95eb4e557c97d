/**
 * A document pipeline on the embedded default store (SQLite, in the working
 * directory), written with `defineWorkflow`: extract → OCR (flaky: retried
 * by its own policy) → wait for a review window (a delayed step) →
 * summarize. Interrupt it (Ctrl-C, or kill) and run it
 * again: unfinished runs resume where they stopped.
 *
 *   npm run example                 # 12 documents
 *   DOCS=40 npm run example         # more
 *   npm run example -- --reset      # forget earlier progress and start over
 */
import { appendFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { StepError, WorkflowRuntime, defineWorkflow, json } from '../core/index.js';
import type { RunOutcome } from '../core/index.js';
import { SqliteStore } from '../adapters/sqlite/index.js';

const DB_PATH = process.env.PIPELINE_DB ?? 'document-pipeline.db';
const RESULTS_PATH = `${DB_PATH}.results.jsonl`;
const DOCS = Number(process.env.DOCS ?? 12);

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

/** The workflow: named, typed steps, each idempotent (a step may run again after a crash). */
const pipeline = defineWorkflow({
  name: 'documents',
  codec: json<Doc>(),
  resultCodec: json<{ name: string; words: number; summary: string }>(),
  steps: {
    extract: async (doc, ctx) => {
      await work(150 + doc.pages * 20, ctx.signal);
      return ctx.next('ocr', { ...doc, text: `${doc.name} `.repeat(doc.pages * 40) });
    },
    ocr: {
      // This step's own policy: up to 5 attempts, 500 ms doubling to 4 s between them.
      retry: { maxAttempts: 5, initialDelayMs: 500, maxDelayMs: 4_000 },
      timeoutMs: 10_000,
      run: async (doc, ctx) => {
        await work(200, ctx.signal);
        // Every third document's scanner times out on the first attempt: a transient error, retried.
        if (Number(doc.name.slice(-2)) % 3 === 0 && ctx.attempt === 1) throw StepError.transient('OCR service timed out');
        // The review window: the next step runs 1.5 s from now.
        return ctx.next('summarize', { ...doc, words: doc.text?.split(' ').length ?? 0 }, { delayMs: 1_500 });
      },
    },
    summarize: async (doc, ctx) => {
      await work(150, ctx.signal);
      const words = doc.words ?? 0;
      return ctx.succeed({ name: doc.name, words, summary: `${doc.name}: ${doc.pages} pages, ${words} words` });
    },
  },
});

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
  const store = new SqliteStore({ path: DB_PATH });
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
    workflows: [pipeline],
    maxConcurrentSteps: 4,
    hook: (outcome) => {
      outcomes.push(outcome);
      appendFileSync(RESULTS_PATH, `${JSON.stringify({ runId: outcome.runId, status: outcome.status })}\n`);
      // `output` is the result decoded by the workflow's result codec.
      const detail = outcome.status === 'succeeded' ? (outcome.output as { summary: string }).summary : outcome.error;
      console.log(`  ✔ ${outcome.runId} ${outcome.status} after step ${outcome.finalStep}: ${detail}   [${done.size + outcomes.length}/${total} done]`);
      if (done.size + outcomes.length >= total) finished();
    },
  });
  runtime.on('stepSettled', (e) => {
    steps++;
    if (e.status === 'scheduled' && e.step === 'ocr') {
      retries++;
      console.log(`  ↻ ${e.runId} ${e.step} failed, will retry`);
    } else if (e.branch === 'primary' && e.step !== 'summarize') {
      console.log(`  · ${e.runId} ${e.step ?? ''} done${e.step === 'ocr' ? ' (review window opens in 1.5 s)' : ''}`);
    }
  });
  runtime.on('storeError', (e) => console.error(`  ! store error during ${e.operation}:`, e.error));

  let resumed = 0;
  let fresh = 0;
  for (let i = 1; i <= total; i++) {
    const runId = `doc-${String(i).padStart(2, '0')}`;
    if (done.has(runId)) continue;
    const result = await runtime.start(pipeline, { runId, input: { name: runId, pages: 1 + (i % 5) }, headers: { pipeline: 'documents' } });
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
