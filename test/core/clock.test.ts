import { afterEach, describe, expect, it, vi } from 'vitest';
import { ManualClock, SystemClock, TimerStormError, sleep } from '../../core/index.js';

describe('SystemClock', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a timer longer than 2^31-1 ms does not fire early (Node clamps such setTimeout delays to 1 ms)', () => {
    vi.useFakeTimers({ now: 0 });
    const clock = new SystemClock();
    const fired: number[] = [];
    clock.setTimer(() => fired.push(Date.now()), 2 ** 31 + 5_000);
    vi.advanceTimersByTime(1_000);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(2 ** 31 - 1_000);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(5_000);
    expect(fired).toEqual([2 ** 31 + 5_000]);
  });

  it('a cancelled timer never fires, even mid-chain', () => {
    vi.useFakeTimers({ now: 0 });
    const clock = new SystemClock();
    let fired = false;
    const cancel = clock.setTimer(() => (fired = true), 2 ** 32);
    vi.advanceTimersByTime(2 ** 31);
    cancel();
    vi.advanceTimersByTime(2 ** 32);
    expect(fired).toBe(false);
  });
});

describe('ManualClock', () => {
  it('fires due timers in order while advancing, and never on its own', async () => {
    const clock = new ManualClock(1_000);
    const order: string[] = [];
    clock.setTimer(() => order.push(`b@${clock.now()}`), 20);
    clock.setTimer(() => order.push(`a@${clock.now()}`), 10);
    clock.setTimer(() => order.push(`c@${clock.now()}`), 20);
    const cancel = clock.setTimer(() => order.push('never'), 15);
    cancel();
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(order).toEqual([]);
    expect(clock.nextTimerAt()).toBe(1_010);
    clock.advance(25);
    expect(order).toEqual(['a@1010', 'b@1020', 'c@1020']);
    expect(clock.now()).toBe(1_025);
    expect(clock.pendingTimers()).toBe(0);
  });

  it('rejects going backwards and non-finite moves', () => {
    const clock = new ManualClock(1_000);
    expect(() => clock.set(999)).toThrow(RangeError);
    expect(() => clock.advance(Number.NaN)).toThrow(TypeError);
    expect(() => clock.advance(-1)).toThrow(TypeError);
  });

  it('sleep resolves on the clock and rejects on abort', async () => {
    const clock = new ManualClock(0);
    const slept = sleep(clock, 100);
    clock.advance(100);
    await expect(slept).resolves.toBeUndefined();
    const controller = new AbortController();
    const aborted = sleep(clock, 100, controller.signal);
    controller.abort(new Error('stop'));
    await expect(aborted).rejects.toThrow('stop');
    expect(clock.pendingTimers()).toBe(0);
  });
});

describe('ManualClock timer storm guard', () => {
  it('a timer that re-arms itself at the same instant fails with TimerStormError instead of looping forever', () => {
    const clock = new ManualClock(1_000, { maxTimersPerInstant: 500 });
    let fired = 0;
    const rearm = (): void => {
      fired++;
      clock.setTimer(rearm, 0);
    };
    clock.setTimer(rearm, 10);
    let error: unknown;
    try {
      clock.advance(100);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TimerStormError);
    const storm = error as TimerStormError;
    expect(storm.code).toBe('TIMER_STORM');
    expect([storm.instant, storm.fired, fired]).toEqual([1_010, 500, 500]);
    expect(storm.message).toMatch(/^ManualClock: more than 500 timers fired at one instant/);
    // The arming stack names the code that re-arms (here: this test's `rearm`).
    expect(storm.armedBy).toContain('rearm');
    // Time stops at the storming instant, with the storming timer still armed.
    expect([clock.now(), clock.nextTimerAt()]).toEqual([1_010, 1_010]);
  });

  it('many timers due at one instant within the limit all fire, and the count restarts at each instant', () => {
    const clock = new ManualClock(0, { maxTimersPerInstant: 3 });
    const fired: number[] = [];
    for (const at of [5, 5, 5, 6, 6, 6]) clock.setTimer(() => fired.push(clock.now()), at);
    clock.advance(10);
    expect(fired).toEqual([5, 5, 5, 6, 6, 6]);
    expect(clock.now()).toBe(10);
  });

  it('rejects a non-positive limit', () => {
    expect(() => new ManualClock(0, { maxTimersPerInstant: 0 })).toThrow(TypeError);
  });
});
