/**
 * Re-runs the history checker on a kept chaos log directory (the test keeps
 * it when a check fails, with the store's final state in final-state.json).
 * Usage: npx tsx test/chaos/recheck.ts <log dir>
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkHistory, formatSummary, readLogs } from './history.js';
import type { FinalState } from './history.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: npx tsx test/chaos/recheck.ts <log dir>');
const final = JSON.parse(readFileSync(join(dir, 'final-state.json'), 'utf8')) as FinalState;
console.log(formatSummary(checkHistory(readLogs(dir), final), `[chaos] recheck of ${dir}`));
