import {describe, expect, it} from 'vitest';
import {
  allTrajectories,
  finiteRange,
  formatRanked,
  metricDomain,
  metricGrid,
  rankByDivergence,
  rankHeads,
  stepIndex,
  toGrid,
  trainingData,
  trajectory,
} from '../src/views/training/data';
import {formatValue} from '../src/math';
import type {MetricsResponse} from '../src/types';

// 3 steps, 2 layers × 3 heads; L1 H2 "forms" an induction head; L0 H1 is undefined (null) throughout
const grid = (s: number): (number | null)[][] => [
  [0.1 * s, null, 0.2],
  [0.0, 0.05, 0.3 * s],
];
const METRICS: MetricsResponse = {
  steps: [0, 10, 100],
  kinds: {
    decoder: {
      induction: [grid(0), grid(1), grid(3)],
      entropy: [grid(1), null, grid(1)], // a step without this metric
    },
  },
};

describe('metrics response → grid and trajectories', () => {
  it('takes the grid of the selected step, nulls as NaN', () => {
    const g = metricGrid(METRICS, 'decoder', 'induction', 10);
    expect([g.layers, g.heads, g.step]).toEqual([2, 3, 10]);
    expect(Array.from(g.values).map((v) => (Number.isNaN(v) ? 'nan' : Number(v.toFixed(3))))).toEqual([0.1, 'nan', 0.2, 0, 0.05, 0.3]);
  });
  it('uses the latest step for null and the nearest step otherwise', () => {
    expect(metricGrid(METRICS, 'decoder', 'induction', null).step).toBe(100);
    expect(metricGrid(METRICS, 'decoder', 'induction', 70).step).toBe(100);
    expect(metricGrid(METRICS, 'decoder', 'induction', 40).step).toBe(10);
    expect(stepIndex([], 5)).toBe(-1);
    expect(stepIndex([0, 10], 5)).toBe(0); // tie: the earlier
  });
  it('extracts one head over steps', () => {
    const t = trajectory(METRICS, 'decoder', 'induction', 1, 2);
    expect(t.steps).toEqual([0, 10, 100]);
    expect(Array.from(t.values).map((v) => Number(v.toFixed(3)))).toEqual([0, 0.3, 0.9]);
    const undef = trajectory(METRICS, 'decoder', 'induction', 0, 1);
    expect(Array.from(undef.values).every(Number.isNaN)).toBe(true);
    // a step without the metric, a missing kind, a head out of range: NaN, never a throw
    expect(Number.isNaN(trajectory(METRICS, 'decoder', 'entropy', 0, 0).values[1])).toBe(true);
    expect(Array.from(trajectory(METRICS, 'encoder', 'entropy', 0, 0).values).every(Number.isNaN)).toBe(true);
    expect(Array.from(trajectory(METRICS, 'decoder', 'induction', 5, 9).values).every(Number.isNaN)).toBe(true);
  });
  it('lays every trajectory out head-major', () => {
    const all = allTrajectories(METRICS, 'decoder', 'induction');
    expect([all.layers, all.heads]).toEqual([2, 3]);
    const n = all.steps.length;
    const k = 1 * all.heads + 2;
    expect(Array.from(all.values.subarray(k * n, (k + 1) * n)).map((v) => Number(v.toFixed(3)))).toEqual([0, 0.3, 0.9]);
  });
  it('pads ragged rows with NaN', () => {
    const g = toGrid([[1, 2, 3], [4], null]);
    expect([g.layers, g.heads]).toEqual([3, 3]);
    expect(Array.from(g.values).map((v) => (Number.isNaN(v) ? null : v))).toEqual([1, 2, 3, 4, null, null, null, null, null]);
  });
});

describe('scales ignore NaN', () => {
  it('finite range', () => {
    expect(finiteRange([NaN, 3, -1, Infinity, NaN])).toEqual([-1, 3]);
    expect(finiteRange([NaN, NaN])).toBeNull();
    expect(finiteRange([])).toBeNull();
  });
  it('metric domains: known ranges, else data (with 0) and never flat', () => {
    expect(metricDomain('entropy', [5, NaN])).toEqual([0, 1]);
    expect(metricDomain('distance', [NaN, 2, 7.5])).toEqual([0, 7.5]);
    expect(metricDomain('distance', [NaN])).toEqual([0, 1]);
    expect(metricDomain('distance', [0, 0])).toEqual([0, 1]);
  });
});

describe('ranking by divergence', () => {
  it('orders heads by JS divergence, drops undefined ones, breaks ties by layer then head', () => {
    const r = rankByDivergence({js: [[0.1, null, 0.41], [0.41, 0.02, 0]], unit: 'nats', max: Math.LN2});
    expect(r.map((x) => `${x.layer},${x.head}`)).toEqual(['0,2', '1,0', '0,0', '1,1', '1,2']);
    expect(formatRanked(r[0])).toBe('L0 H2 0.41 nats');
  });
  it('keeps the top n', () => {
    const js = Array.from({length: 4}, (_, l) => Array.from({length: 5}, (_, h) => (l * 5 + h) / 100));
    const r = rankByDivergence({js, unit: 'nats', max: Math.LN2}, 10);
    expect(r).toHaveLength(10);
    expect(r[0]).toEqual({layer: 3, head: 4, value: 0.19});
    expect(rankHeads(toGrid([[NaN as unknown as number]]), 3)).toEqual([]);
  });
  it('formats values compactly', () => {
    expect(formatValue(0.41234)).toBe('0.41');
    expect(formatValue(12.345)).toBe('12.3');
    expect(formatValue(0)).toBe('0');
    expect(formatValue(NaN)).toBe('–');
    expect(formatValue(0.00001)).toBe('1.0e-5');
  });
});

describe('training view data', () => {
  it('focuses the selected head, else the top one at the step; ranks the divergence', () => {
    const base = {metrics: METRICS, kind: 'decoder' as const, metric: 'induction' as const, step: null, divSteps: [0, 100] as [number, number]};
    const d = trainingData({...base, selected: null, divergence: {js: [[0, 0.1, 0], [0, 0, 0.5]], unit: 'nats', max: Math.LN2}});
    expect(d.focus).toEqual([1, 2]);
    expect(d.stepIndex).toBe(2);
    expect(d.domain).toEqual([0, 1]);
    expect(d.ranking[0]).toMatchObject({layer: 1, head: 2, value: 0.5});
    expect(d.divMax).toBeCloseTo(Math.LN2);
    expect(trainingData({...base, selected: [0, 1], divergence: null}).focus).toEqual([0, 1]);
    expect(trainingData({...base, selected: [7, 1], divergence: null}).focus).toEqual([1, 2]); // out of range: ignored
  });
  it('says when there is nothing to show, and when the step has no metrics', () => {
    const d = trainingData({metrics: {steps: [0], kinds: {}}, kind: 'encoder', metric: 'sink', step: null, selected: null, divSteps: null, divergence: null});
    expect(d.layers).toBe(0);
    expect(d.focus).toBeNull();
    expect(d.notes.join(' ')).toMatch(/No sink values/);
    const e = trainingData({metrics: METRICS, kind: 'decoder', metric: 'induction', step: 50, selected: null, divSteps: null, divergence: null});
    expect(e.notes.join(' ')).toMatch(/No metrics at step 50: showing step 10/);
  });
});
