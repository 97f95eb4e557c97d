/**
 * Reaper templates in the SQLite store, where the shared suite cannot see:
 * the template lives in the file, so every store on it (and a store opened
 * later) reaps with the one last set by any of them; the write honours both
 * commit modes and the closed store; and the template is taken as it stood
 * at the call, whatever the caller does to its object before the group
 * commit runs.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../core/clock.js';
import type { ReaperTemplate } from '../../core/queue-store.js';
import { bytes, text } from '../support/harness.js';
import { openStore, tempDbPath } from './helpers.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');

/** Ends the run a dead step belonged to: an `ended` job per reaped job, and its lock released. */
const ENDING: ReaperTemplate = {
  effects: {
    enqueue: [{ queue: 'ended', payload: bytes('end'), copyJobHeaders: true, dedupKey: ['end:', { jobId: true }] }],
    kvDeletes: [['lock:', { header: 'run' }]],
  },
};

/** Enqueues a one-attempt job holding a lock and claims it with a 1 s lease, so it is dead-lettered once the clock passes it. */
async function expiringClaim(store: ReturnType<typeof openStore>, run: string): Promise<string> {
  const result = await store.enqueue('steps', bytes(run), { maxAttempts: 1, headers: { run } }, [{ key: `lock:${run}`, value: bytes('held') }]);
  const [claim] = await store.claim('steps', { leaseMs: 1_000 });
  expect(claim?.jobId).toBe((result as { id: string }).id);
  return claim?.jobId as string;
}

describe.each([true, false])('SqliteStore reaper templates (groupCommit %s)', (groupCommit) => {
  it('a template set through one store is applied by another on the same file, and removed through it', async () => {
    const path = tempDbPath('shared');
    const clock = new ManualClock(T0);
    const setter = openStore({ path, clock, groupCommit, backgroundMaintenance: false });
    const reaper = openStore({ path, clock, groupCommit, backgroundMaintenance: false });
    await reaper.reap(); // a pass before the template exists caches nothing
    await setter.setReaperTemplate('steps', ENDING);

    const first = await expiringClaim(setter, 'r1');
    clock.advance(1_000);
    const report = await reaper.reap();
    expect(report.effectsApplied).toEqual([first]);
    const [ended] = await setter.claim('ended');
    expect(ended?.job).toMatchObject({ headers: { run: 'r1' }, payload: bytes('end') });
    expect(await setter.kvGet('lock:r1')).toBeUndefined();

    await setter.setReaperTemplate('steps', undefined);
    const second = await expiringClaim(setter, 'r2');
    clock.advance(1_000);
    const after = await reaper.reap();
    expect(after.deadLettered.map((job) => job.id)).toEqual([second]);
    expect(after.effectsApplied).toEqual([]);
    expect(text(await setter.kvGet('lock:r2'))).toBe('held');
  });

  it('the template stays in the file: a store opened later reaps with it', async () => {
    const path = tempDbPath('reopen');
    const clock = new ManualClock(T0);
    const first = openStore({ path, clock, groupCommit, backgroundMaintenance: false });
    await first.setReaperTemplate('steps', ENDING);
    const id = await expiringClaim(first, 'r1');
    await first.close();

    clock.advance(1_000);
    const later = openStore({ path, clock, groupCommit, backgroundMaintenance: false });
    expect((await later.reap()).effectsApplied).toEqual([id]);
    expect(await later.stats('ended')).toMatchObject({ pending: 1 });
  });

  it('the template is the one given at the call: changing the object afterwards changes nothing', async () => {
    const clock = new ManualClock(T0);
    const store = openStore({ clock, groupCommit, backgroundMaintenance: false });
    const template: ReaperTemplate = { effects: { enqueue: [{ queue: 'ended', payload: bytes('end') }] } };
    const set = store.setReaperTemplate('steps', template);
    (template.effects?.enqueue?.[0] as { queue: string }).queue = 'elsewhere';
    (template.effects?.enqueue?.[0]?.payload as Uint8Array)[0] = 0;
    await set;
    await expiringClaim(store, 'r1');
    clock.advance(1_000);
    await store.reap();
    const [ended] = await store.claim('ended');
    expect(ended?.job.payload).toEqual(bytes('end'));
    expect(await store.stats('elsewhere')).toMatchObject({ pending: 0 });
  });

  it('a closed store refuses the write; a write called before close commits', async () => {
    const path = tempDbPath('closing');
    const store = openStore({ path, groupCommit, backgroundMaintenance: false });
    const before = store.setReaperTemplate('steps', ENDING);
    await store.close();
    await before;
    await expect(store.setReaperTemplate('steps', undefined)).rejects.toMatchObject({ code: 'STORE_CLOSED' });
    const clock = new ManualClock(T0);
    const again = openStore({ path, clock, groupCommit, backgroundMaintenance: false });
    const id = await expiringClaim(again, 'r1');
    clock.advance(1_000);
    expect((await again.reap()).effectsApplied).toEqual([id]);
  });
});
