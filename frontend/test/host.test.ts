import {describe, expect, it} from 'vitest';
import {DEFAULT_RELOAD_MS, MIN_POLL_MS, Poller, readReloadSetting, TB_SETTINGS_KEY} from '../src/host';

const store = (v: unknown) => ({getItem: (k: string) => (k === TB_SETTINGS_KEY ? (typeof v === 'string' ? v : JSON.stringify(v)) : null)});

describe("TensorBoard's auto-reload setting", () => {
  it('is on every 30 s unless TensorBoard stored otherwise', () => {
    expect(readReloadSetting(null)).toEqual({enabled: true, periodMs: DEFAULT_RELOAD_MS});
    expect(readReloadSetting(store('{not json'))).toEqual({enabled: true, periodMs: DEFAULT_RELOAD_MS});
    expect(readReloadSetting(store({autoReload: false}))).toEqual({enabled: false, periodMs: DEFAULT_RELOAD_MS});
    expect(readReloadSetting(store({autoReload: true, autoReloadPeriodInMs: 60_000}))).toEqual({enabled: true, periodMs: 60_000});
    expect(readReloadSetting(store({autoReloadPeriodInMs: 10}))).toEqual({enabled: true, periodMs: MIN_POLL_MS});
    expect(readReloadSetting(store({autoReload: 'yes', autoReloadPeriodInMs: 'x'}))).toEqual({enabled: true, periodMs: DEFAULT_RELOAD_MS});
  });
});

/** Timers run by hand: `advance(ms)` fires what is due. */
function fakeClock() {
  let now = 0;
  let id = 0;
  const timers = new Map<number, {at: number; f: () => void}>();
  return {
    setTimeout: (f: () => void, ms: number) => {
      timers.set(++id, {at: now + ms, f});
      return id;
    },
    clearTimeout: (t: unknown) => void timers.delete(t as number),
    async advance(ms: number) {
      const end = now + ms;
      for (;;) {
        const due = [...timers].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].at;
        due[1].f();
        for (let i = 0; i < 5; i++) await Promise.resolve();
      }
      now = end;
    },
    get pending() {
      return timers.size;
    },
  };
}

describe('polling /index at the reload period', () => {
  it('ticks each period while visible and enabled, never overlapping; a TensorBoard reload restarts the period', async () => {
    const clock = fakeClock();
    let visible = true;
    let enabled = true;
    let ticks = 0;
    let release: (() => void) | null = null;
    const p = new Poller(
      () => {
        ticks++;
        return new Promise<void>((r) => (release = r));
      },
      {setting: () => ({enabled, periodMs: 1000}), visible: () => visible, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout},
    );
    p.start();
    await clock.advance(999);
    expect(ticks).toBe(0);
    await clock.advance(1);
    expect(ticks).toBe(1);
    await clock.advance(3000); // the first tick has not finished: no second one meanwhile
    expect(ticks).toBe(1);
    release!();
    await clock.advance(0);
    await clock.advance(1000);
    expect(ticks).toBe(2);
    release!();
    visible = false;
    await clock.advance(5000);
    expect(ticks).toBe(2);
    visible = true;
    enabled = false;
    await clock.advance(5000);
    expect(ticks).toBe(2);
    enabled = true;
    await clock.advance(500);
    p.reset(); // TensorBoard's own DataReloaded came: wait a full period from now
    await clock.advance(900);
    expect(ticks).toBe(2);
    await clock.advance(100);
    expect(ticks).toBe(3);
    release!();
    p.stop();
    await clock.advance(10_000);
    expect([ticks, clock.pending]).toEqual([3, 0]);
  });
});
