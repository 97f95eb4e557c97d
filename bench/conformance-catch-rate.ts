/**
 * Measures the conformance suite's own quality: runs the store-level suite on
 * every mutant of test/conformance/mutants.ts with several seeds, in quick
 * (the default run count) and deep mode, and prints the catch rate per
 * mutant and mode, with the check that caught it first.
 *
 *   npm run conformance:catch-rate -- [--seeds 5] [--modes quick,deep] [--mutant name,...]
 *
 * A run stops at the first failing check (the question is only whether the
 * suite rejects the store). Seeds are 1..N, so a table can be reproduced.
 */
import { QUICK_RUNS } from '../conformance/options.js';
import type { ConformanceOptions } from '../conformance/options.js';
import { queueStoreGroups } from '../conformance/store-suite.js';
import { MUTANTS, mutantOptions } from '../test/conformance/mutants.js';
import type { Mutant } from '../test/conformance/mutants.js';

const MODES = { quick: QUICK_RUNS, deep: 500 } as const;
type Mode = keyof typeof MODES;

function argument(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const seedCount = Number(argument('seeds') ?? 5);
if (!Number.isSafeInteger(seedCount) || seedCount < 1) throw new TypeError(`--seeds must be a positive integer, got ${argument('seeds')}`);
const modes = (argument('modes') ?? 'quick,deep').split(',') as Mode[];
for (const mode of modes) if (!(mode in MODES)) throw new TypeError(`unknown mode ${mode} (quick, deep)`);
const only = argument('mutant')?.split(',');
const mutants = only ? MUTANTS.filter((m) => only.includes(m.name)) : MUTANTS;
if (only && mutants.length !== only.length) throw new TypeError(`unknown mutant in ${only.join(',')}; known: ${MUTANTS.map((m) => m.name).join(', ')}`);

/** Runs the suite once; returns the name of the first failing check, or undefined when the mutant passed. */
async function firstFailure(options: ConformanceOptions): Promise<string | undefined> {
  for (const group of queueStoreGroups(options)) {
    for (const check of group.checks) {
      if (check.skip) continue;
      try {
        await check.run(options);
      } catch {
        return `${group.name} > ${check.name}`;
      }
    }
  }
  return undefined;
}

interface Cell {
  caught: number;
  runs: number;
  seconds: number;
  by: Map<string, number>;
}

async function measure(mutant: Mutant, mode: Mode): Promise<Cell> {
  const cell: Cell = { caught: 0, runs: 0, seconds: 0, by: new Map() };
  for (let seed = 1; seed <= seedCount; seed++) {
    const started = performance.now();
    const failure = await firstFailure(mutantOptions(mutant, { numRuns: MODES[mode], seed }));
    cell.seconds += (performance.now() - started) / 1000;
    cell.runs++;
    if (failure !== undefined) {
      cell.caught++;
      cell.by.set(failure, (cell.by.get(failure) ?? 0) + 1);
    }
  }
  return cell;
}

const rows: string[][] = [['mutant', ...modes.map((m) => `${m} (${MODES[m]} runs)`), 'caught first by']];
for (const mutant of mutants) {
  const cells: string[] = [];
  const by = new Map<string, number>();
  for (const mode of modes) {
    const cell = await measure(mutant, mode);
    cells.push(`${cell.caught}/${cell.runs} (${Math.round((100 * cell.caught) / cell.runs)}%, ${cell.seconds.toFixed(1)}s)`);
    for (const [check, n] of cell.by) by.set(check, (by.get(check) ?? 0) + n);
  }
  const caughtBy =
    [...by]
      .sort((a, b) => b[1] - a[1])
      .map(([check, n]) => `${check} (${n})`)
      .join('; ') || '-';
  rows.push([mutant.name, ...cells, caughtBy]);
  console.error(`measured ${mutant.name}`);
}

const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
for (const [i, row] of rows.entries()) {
  console.log(row.map((cell, j) => (j === row.length - 1 ? cell : cell.padEnd(widths[j]!))).join(' | '));
  if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
}
console.log(`\nseeds 1..${seedCount} per mode, ${mutants.length} mutants.`);
