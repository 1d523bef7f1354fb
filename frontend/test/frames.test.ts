// The matrix views' frame scheduler (views/matrix/frames.ts), on fake timers with a 16 ms animation frame.
import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest';
import {FrameScheduler, SETTLE_MS} from '../src/views/matrix/frames';

describe('frame scheduler', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.stubGlobal('requestAnimationFrame', (f: () => void) => setTimeout(f, 16) as unknown as number);
    vi.stubGlobal('cancelAnimationFrame', (id: number) => clearTimeout(id));
  });
  afterEach(() => {
    vi.unstubAllGlobals();
    vi.useRealTimers();
  });
  const make = (canScale = true) => {
    const log: string[] = [];
    const s = new FrameScheduler({scaled: () => (log.push('scaled'), canScale), crisp: () => void log.push('crisp')});
    return {s, log};
  };
  it('draws one crisp frame however often it is asked within a frame', () => {
    const {s, log} = make();
    s.schedule();
    s.schedule();
    vi.advanceTimersByTime(16);
    expect(log).toEqual(['crisp']);
  });
  it('draws a gesture scaled, then crisp once it rests', () => {
    const {s, log} = make();
    s.schedule(false);
    vi.advanceTimersByTime(16);
    expect(log).toEqual(['scaled']);
    s.schedule(false); // the gesture goes on: the settle timer restarts
    vi.advanceTimersByTime(SETTLE_MS - 1);
    expect(log).toEqual(['scaled', 'scaled']);
    vi.advanceTimersByTime(1 + 16);
    expect(log).toEqual(['scaled', 'scaled', 'crisp']);
  });
  it('renders crisp when there is nothing to scale, and nothing after dispose', () => {
    const {s, log} = make(false);
    s.schedule(false);
    vi.advanceTimersByTime(16);
    expect(log).toEqual(['scaled', 'crisp']);
    s.schedule(false);
    s.dispose();
    vi.advanceTimersByTime(1000);
    expect(log).toEqual(['scaled', 'crisp']);
  });
});
