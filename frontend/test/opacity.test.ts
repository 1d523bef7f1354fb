// The head view's opacity rule: alpha = min(1, gain · |w| / (active heads · norm)), norm 1 (absolute) or the
// query row's largest weight (per row), and lines from a long record's stored top-k.
import {describe, expect, it} from 'vitest';
import {headColor, LIGHT} from '../src/draw/colors';
import {SvgContext} from '../src/draw/ctx';
import {alphaBucket, collectLines, collectSparseLines, rowMaxima} from '../src/draw/lines';
import {longHeadData} from '../src/views/head/data';
import {defaultOpacity, HeadPainter, headLayout, opacityScale} from '../src/views/head/draw';
import type {TopK} from '../src/types';

/** Diffuse softmax rows over n keys (every weight ≈ 1/n): the case that drew nothing at rest. */
function diffuse(n: number): Float32Array {
  const m = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) m[i * n + j] = (1 + 0.1 * Math.sin(i + 3 * j)) / n / 1.0;
  return m;
}

describe('opacity rule', () => {
  it('scales by gain over active heads (and by the largest difference for B − A)', () => {
    expect(opacityScale({mode: 'abs', gain: 1}, 12)).toBeCloseTo(1 / 12);
    expect(opacityScale({mode: 'row', gain: 4}, 12)).toBeCloseTo(4 / 12);
    expect(opacityScale({mode: 'abs', gain: 1}, 2, 0.5)).toBeCloseTo(1);
  });
  it('absolute draws nothing on diffuse rows at 2048 tokens; per row draws every row', () => {
    const n = 2048;
    const m = diffuse(n);
    const abs = collectLines(m, n, n, {scale: opacityScale({mode: 'abs', gain: 1}, 12), topk: 4});
    expect(abs.count).toBe(0);
    const row = collectLines(m, n, n, {scale: opacityScale({mode: 'row', gain: 1}, 12), topk: 4, rowNorm: rowMaxima(m, n, n)});
    // every row's strongest line at alpha gain / heads = 1/12, i.e. bucket 21
    const rows = new Set(Array.from(row.from));
    expect(rows.size).toBe(n);
    expect(alphaBucket(1, 1 / 12)).toBe(21);
    expect(row.bucketStarts[22] - row.bucketStarts[21]).toBeGreaterThanOrEqual(n);
  });
  it('stays visible up to 255 active heads at gain 1', () => {
    expect(alphaBucket(1, opacityScale({mode: 'row', gain: 1}, 255))).toBeGreaterThan(0);
    expect(alphaBucket(1, opacityScale({mode: 'row', gain: 1}, 600))).toBe(0);
  });
  it('defaults to per row past 512 tokens and for long records', () => {
    const short = {queryLabels: ['a', 'b'], keyLabels: ['a', 'b'], nHeads: 1, heads: [0], matrix: () => new Float32Array(4)};
    expect(defaultOpacity(short).mode).toBe('abs');
    expect(defaultOpacity({...short, queryLabels: new Array(513).fill('x')}).mode).toBe('row');
  });
});

describe('lines from the stored top-k', () => {
  const tk: TopK = {q: 3, k: 2, index: Uint32Array.from([0, 1, 1, 0, 2, 1]), values: Float32Array.from([0.6, 0.3, 0.9, 0.05, 0.5, 0.4])};
  it('keeps K (or the toolbar top-k) lines per row, each row relative to its top-1', () => {
    const s = collectSparseLines(tk.index, tk.values, tk.q, tk.k, {scale: 1, rowNorm: Float32Array.from([0.6, 0.9, 0.5])});
    expect(s.count).toBe(6);
    const one = collectSparseLines(tk.index, tk.values, tk.q, tk.k, {scale: 1, topk: 1});
    expect(Array.from(one.to).sort()).toEqual([0, 1, 2]);
  });
  it('draws a long record at rest and its hovered row from top-k until the exact row is set', () => {
    const labels = ['a', 'b', 'c'];
    const d = longHeadData(labels, labels, 1, new Map([[0, tk]]));
    const p = new HeadPainter(d, headLayout(d, LIGHT), {theme: LIGHT, colorOf: headColor, active: [0], topk: 0});
    expect(p.opacity.mode).toBe('row');
    expect(p.paint(new SvgContext())).toBe(6);
    const hv = {side: 'left' as const, index: 2};
    expect(p.hoverLine(0, hv).exact).toBe(false);
    expect(Array.from(p.hoverLine(0, hv).line)).toEqual(Array.from(Float32Array.from([0, 0.8, 1]))); // [0, 0.4, 0.5] / 0.5
    p.setExact('left', 2, new Map([[0, Float32Array.from([0.1, 0.4, 0.5])]]));
    const ex = p.hoverLine(0, hv);
    expect(ex.exact).toBe(true);
    expect(ex.line[0]).toBeCloseTo(0.2);
    expect(p.paintHover(new SvgContext(), hv)).toBe(3);
  });
  it("reads a key's column from the top-k grouped by key, as a scan of every row would", () => {
    const labels = ['a', 'b', 'c'];
    const d = longHeadData(labels, labels, 1, new Map([[0, tk]]));
    const p = new HeadPainter(d, headLayout(d, LIGHT), {theme: LIGHT, colorOf: headColor, active: [0], topk: 0, opacity: {mode: 'abs', gain: 1}});
    for (let j = 0; j < 3; j++) {
      const scan = new Float32Array(3);
      for (let i = 0; i < tk.q; i++) for (let r = 0; r < tk.k; r++) if (tk.index[i * tk.k + r] === j) scan[i] = tk.values[i * tk.k + r];
      expect(Array.from(p.hoverLine(0, {side: 'right', index: j}).line)).toEqual(Array.from(scan));
    }
  });
});

describe("the hovered line's top entries (the test hook)", () => {
  it('equals a full sort, ties to the lower index', async () => {
    const {topOf} = await import('../src/views/head/view');
    const line = new Float32Array(1000);
    for (let j = 0; j < line.length; j++) line[j] = Math.round(Math.abs(Math.sin(j * 12.9898)) * 50) / 50;
    const sorted = Array.from(line.keys()).sort((a, b) => line[b] - line[a] || a - b).slice(0, 5);
    expect(topOf(line, 5)).toBe(sorted.map((j) => `${j}:${line[j].toPrecision(4)}`).join(','));
    expect(topOf(Float32Array.from([0.5]), 5)).toBe('0:0.5000');
  });
});
