import {describe, expect, it} from 'vitest';
import {maxAbsDiff, nearestStep, recompute, resolveLayerInfo, topkColumns} from '../src/math';

describe('recomputing attention from q/k', () => {
  const d = 2;
  const keys = Float32Array.from([1, 0, 0, 1, 1, 1]);
  const queries = Float32Array.from([2, 0, 0, 2, 1, -1]);
  it('softmax of the scaled dot products, with elementwise products', () => {
    const r = recompute(queries, keys, d, 0, {scaling: 0.5, causal: false, sliding_window: null});
    expect(Array.from(r.products)).toEqual([2, 0, 0, 0, 2, 0]);
    expect(Array.from(r.scores)).toEqual([1, 0, 1]);
    const e = [Math.E, 1, Math.E];
    const s = e[0] + e[1] + e[2];
    r.probs.forEach((p, j) => expect(p).toBeCloseTo(e[j] / s, 6));
  });
  it('masks keys after the query when causal, and beyond the sliding window', () => {
    const r = recompute(queries, keys, d, 1, {scaling: 1, causal: true, sliding_window: null});
    expect(Array.from(r.masked)).toEqual([0, 0, 1]);
    expect(r.probs[2]).toBe(0);
    expect(r.probs[0] + r.probs[1]).toBeCloseTo(1, 6);
    const w = recompute(queries, keys, d, 2, {scaling: 1, causal: true, sliding_window: 2});
    expect(Array.from(w.masked)).toEqual([1, 0, 0]);
    expect(w.scores[0]).toBe(-Infinity);
    // cross attention: no causal mask even if the layer is causal
    expect(Array.from(recompute(queries, keys, d, 0, {scaling: 1, causal: true, sliding_window: null}, false).masked)).toEqual([0, 0, 0]);
  });
});

describe('steps', () => {
  it('finds the nearest step that has q/k (earlier on ties)', () => {
    expect(nearestStep([0, 20, 40], 25)).toBe(20);
    expect(nearestStep([0, 20, 40], 30)).toBe(20);
    expect(nearestStep([0, 20, 40], 31)).toBe(40);
    expect(nearestStep([], 3)).toBeNull();
    expect(maxAbsDiff([0.1, 0.5], [0.2, 0.2])).toBeCloseTo(0.3, 6);
  });
});

describe('layer info', () => {
  it('fills what a record leaves out and says so', () => {
    const r = resolveLayerInfo({}, 16, false);
    expect(r).toEqual({scaling: 0.25, causal: false, position_bias: false, softcap: null, sliding_window: null, assumed: ['scaling', 'causal']});
    expect(resolveLayerInfo(undefined, 64, true).causal).toBe(true);
    const full = resolveLayerInfo({scaling: 0.1, causal: false, position_bias: true, softcap: 30, sliding_window: 4096}, 64, true);
    expect(full).toEqual({scaling: 0.1, causal: false, position_bias: true, softcap: 30, sliding_window: 4096, assumed: []});
  });
});

describe('top-k by key', () => {
  it('groups every row\'s top-k by key, rows ascending, and skips indices past the keys', () => {
    // 3 rows x 2: row 0 keeps keys 2, 0; row 1 keeps 2, 1; row 2 keeps 0 and an index past the 3 keys
    const c = topkColumns(Uint32Array.from([2, 0, 2, 1, 0, 7]), Float32Array.from([0.5, 0.25, 0.75, 0.125, 1, 0.5]), 3, 2, 3);
    expect(Array.from(c.start)).toEqual([0, 2, 3, 5]);
    expect(Array.from(c.rows)).toEqual([0, 2, 1, 0, 1]);
    expect(Array.from(c.values)).toEqual([0.25, 1, 0.125, 0.5, 0.75]);
  });
});
