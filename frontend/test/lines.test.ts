import {describe, expect, it} from 'vitest';
import type {Ctx} from '../src/draw/ctx';
import {MIN_VISIBLE_ALPHA, alphaBucket, collectLines, drawLines, type LineSet} from '../src/draw/lines';
import {difference, maxAbs} from '../src/math';

function lines(set: LineSet): [number, number, number][] {
  const out: [number, number, number][] = [];
  for (let b = 0; b < 256; b++) for (let t = set.bucketStarts[b]; t < set.bucketStarts[b + 1]; t++) out.push([set.from[t], set.to[t], b]);
  return out;
}

/** Records the calls drawLines makes. */
class RecCtx {
  strokes: {alpha: number; color: string; segs: number}[] = [];
  segs = 0;
  globalAlpha = 1;
  strokeStyle = '';
  beginPath() {
    this.segs = 0;
  }
  moveTo() {
    this.segs++;
  }
  lineTo() {}
  stroke() {
    this.strokes.push({alpha: this.globalAlpha, color: String(this.strokeStyle), segs: this.segs});
  }
}

describe('paired lines', () => {
  it('draws a 2 px line as two 1 px lines half a pixel either side, along its normal', () => {
    const pts: [number, number][] = [];
    const ctx = {
      globalAlpha: 1,
      strokeStyle: '',
      beginPath() {},
      moveTo(x: number, y: number) {
        pts.push([x, y]);
      },
      lineTo(x: number, y: number) {
        pts.push([x, y]);
      },
      stroke() {},
    };
    const set = collectLines(Float32Array.from([0, 1]), 1, 2, {scale: 1}); // one line: row 0 → column 1
    const drawn = drawLines(ctx as unknown as Ctx, set, '#f00', {x1: 0, x2: 30, rowY: () => 0, colY: (j) => j * 40}, -Infinity, Infinity, 1, true);
    expect(drawn).toBe(1);
    expect(pts.length).toBe(4);
    const [a0, a1, b0, b1] = pts;
    // both parallel to (0,0)→(30,40), 1 px apart
    for (const [p, q] of [[a0, a1], [b0, b1]]) expect((q[1] - p[1]) / (q[0] - p[0])).toBeCloseTo(40 / 30, 9);
    expect(Math.hypot(a0[0] - b0[0], a0[1] - b0[1])).toBeCloseTo(1, 9);
    expect((a0[0] + b0[0]) / 2).toBeCloseTo(0, 9);
    expect((a1[1] + b1[1]) / 2).toBeCloseTo(40, 9);
  });
});

describe('visibility culling', () => {
  it('skips exactly the lines whose alpha rounds to 0 in 8 bits', () => {
    expect(MIN_VISIBLE_ALPHA).toBeCloseTo(0.5 / 255, 12);
    // scale 1: w·255 < 0.5 is invisible
    expect(alphaBucket(0.49 / 255, 1)).toBe(0);
    expect(alphaBucket(0.5 / 255, 1)).toBe(1);
    expect(alphaBucket(1, 1)).toBe(255);
    expect(alphaBucket(3, 1)).toBe(255);
    const m = Float32Array.from([0.49 / 255, 0.51 / 255, 0.5, 0]);
    expect(lines(collectLines(m, 1, 4, {scale: 1}))).toEqual([
      [0, 1, 1],
      [0, 2, 128],
    ]);
  });
  it('divides by the number of active heads (BertViz opacity) before culling', () => {
    const m = Float32Array.from([0.02, 0.9]);
    // 12 heads: 0.02/12·255 = 0.425 → culled
    expect(lines(collectLines(m, 1, 2, {scale: 1 / 12}))).toEqual([[0, 1, 19]]);
    expect(lines(collectLines(m, 1, 2, {scale: 1})).length).toBe(2);
  });
  it('orders lines by alpha bucket: one path per bucket', () => {
    const m = Float32Array.from([0.5, 0.1, 0.5, 0.1, 0.9, 0.5]);
    const set = collectLines(m, 2, 3, {scale: 1});
    expect(set.count).toBe(6);
    const ctx = new RecCtx();
    const drawn = drawLines(ctx as unknown as Ctx, set, '#f00', {x1: 0, x2: 1, rowY: (i) => i, colY: (j) => j});
    expect(drawn).toBe(6);
    expect(ctx.strokes.map((s) => [Math.round(s.alpha * 255), s.segs])).toEqual([
      [26, 2],
      [128, 3],
      [229, 1], // float32(0.9)·255 = 229.49…
    ]);
  });
  it('skips lines entirely above or below the drawn band', () => {
    const n = 10;
    const m = new Float32Array(n * n);
    for (let i = 0; i < n; i++) m[i * n + i] = 1; // horizontal lines at y = i
    m[0 * n + 9] = 1; // one line crossing the band
    const set = collectLines(m, n, n, {scale: 1});
    const ctx = new RecCtx();
    const drawn = drawLines(ctx as unknown as Ctx, set, '#000', {x1: 0, x2: 1, rowY: (i) => i, colY: (j) => j}, 4, 6);
    expect(drawn).toBe(4); // rows 4, 5, 6 and the crossing line
  });
});

describe('top-k per token', () => {
  const m = Float32Array.from([0.1, 0.4, 0.2, 0.3, /**/ 0.7, 0.1, 0.1, 0.1]);
  it('keeps the k largest weights of every query row', () => {
    const set = collectLines(m, 2, 4, {scale: 1, topk: 2});
    expect(set.count).toBe(4);
    expect(lines(set).filter(([i]) => i === 0).map(([, j]) => j).sort()).toEqual([1, 3]);
    // row 1: 0.7 and one of the three tied 0.1s
    const r1 = lines(set).filter(([i]) => i === 1).map(([, j]) => j);
    expect(r1).toHaveLength(2);
    expect(r1).toContain(0);
  });
  it('never exceeds k, ignores invisible lines, and k = 0 keeps all', () => {
    expect(collectLines(m, 2, 4, {scale: 1, topk: 1}).count).toBe(2);
    expect(collectLines(m, 2, 4, {scale: 1, topk: 10}).count).toBe(8);
    expect(collectLines(m, 2, 4, {scale: 1, topk: 0}).count).toBe(8);
    expect(collectLines(Float32Array.from([1e-5, 1e-5, 0.9]), 1, 3, {scale: 1, topk: 2}).count).toBe(1);
  });
  it('does not apply to the hovered token: it shows all its visible lines', () => {
    const row = collectLines(m, 2, 4, {scale: 1, topk: 1, row: 0});
    expect(lines(row).map(([i, j]) => [i, j]).sort()).toEqual([
      [0, 0],
      [0, 1],
      [0, 2],
      [0, 3],
    ]);
    const col = collectLines(m, 2, 4, {scale: 1, topk: 1, col: 1});
    expect(lines(col).map(([i, j]) => [i, j])).toEqual(expect.arrayContaining([[0, 1], [1, 1]]));
    expect(col.count).toBe(2);
  });
});

describe('difference B − A', () => {
  it('subtracts element-wise and splits lines by sign', () => {
    const a = Float32Array.from([0.5, 0.5, 1, 0]);
    const b = Float32Array.from([0.9, 0.1, 0.25, 0.75]);
    const d = difference(a, b);
    expect(Array.from(d).map((x) => +x.toFixed(6))).toEqual([0.4, -0.4, -0.75, 0.75]);
    expect(maxAbs(d)).toBeCloseTo(0.75, 6);
    const pos = collectLines(d, 2, 2, {scale: 1 / 0.75, sign: 1});
    const neg = collectLines(d, 2, 2, {scale: 1 / 0.75, sign: -1});
    expect(lines(pos).map(([i, j, bk]) => [i, j, bk])).toEqual([
      [0, 0, Math.round((0.4 / 0.75) * 255)],
      [1, 1, 255],
    ]);
    expect(lines(neg).map(([i, j]) => [i, j])).toEqual([
      [0, 1],
      [1, 0],
    ]);
    expect(() => difference(a, Float32Array.from([1]))).toThrow(/sizes/);
  });
});
