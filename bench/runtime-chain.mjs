/* global process, AbortController, performance, console */
/**
 * The runtime alone on a memory store: 1,000 runs x 10 immediately
 * continuing steps, 16 at once, in-process hook; prints transitions/s and
 * the store calls made. Takes the root of a checkout whose code was
 * compiled with `npm run bench:build`, so two builds (two worktrees) can
 * be compared in one sitting:
 *
 *   npm run bench:build && node bench/runtime-chain.mjs .
 *   node bench/runtime-chain.mjs ../other-worktree
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = resolve(process.argv[2] ?? '.');
const { MemoryStore } = await import(pathToFileURL(`${root}/.tmp/build/adapters/memory/index.js`).href);
const { WorkflowRuntime, StepOutcome } = await import(pathToFileURL(`${root}/.tmp/build/core/index.js`).href);
const store = new MemoryStore();
const counts = {};
for (const name of ['claim', 'settle', 'enqueue', 'kvGet', 'renewLease', 'subscribe', 'getJob', 'cancel', 'reap', 'promote', 'enqueueBatch', 'stats']) {
  const orig = store[name].bind(store);
  store[name] = (...a) => {
    counts[name] = (counts[name] ?? 0) + 1;
    return orig(...a);
  };
}
let ended = 0;
const N = 1000,
  S = 10;
let done;
const all = new Promise((r) => (done = r));
const runtime = new WorkflowRuntime({
  store,
  queueName: 'chain',
  maxConcurrentSteps: 16,
  runner: (step) => (step.stepNumber + 1 < S ? StepOutcome.continue(step.payload) : StepOutcome.succeed(new Uint8Array())),
  hook: () => {
    if (++ended === N) done();
  },
});
for (let i = 0; i < N; i++) await runtime.submit({ runId: `r${i}`, input: new Uint8Array([1]) });
for (const k of Object.keys(counts)) counts[k] = 0;
const ac = new AbortController();
const t0 = performance.now();
const running = runtime.run(ac.signal);
await all;
const ms = performance.now() - t0;
ac.abort();
await running;
console.log(root, Math.round(((N * S) / ms) * 1000), 'tr/s', JSON.stringify(counts));
await store.close();
