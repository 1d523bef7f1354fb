import {describe, expect, it} from 'vitest';
import {chartLayout, logTicks, makeScale, nearestPoint, niceTicks} from '../src/draw/chart';
import {rampColor, sequentialRamp, VIRIDIS} from '../src/draw/colors';
import {SvgContext, fillTextRotated} from '../src/draw/ctx';
import {cellAt} from '../src/draw/grid';
import {linearBucketer, paintCells, rangeBucketer} from '../src/draw/heatmap';
import {labelStride} from '../src/draw/tokens';

describe('sequential scale and NaN', () => {
  it('maps [lo, hi] onto 0..255, clamps outside, NaN to no bucket', () => {
    const b = rangeBucketer(-1, 1);
    expect([b(-1), b(0), b(1), b(-5), b(5)]).toEqual([0, 128, 255, 0, 255]);
    expect(b(NaN)).toBe(-1);
    expect(rangeBucketer(2, 2)(2)).toBe(0); // flat domain
    expect(linearBucketer(1)(NaN)).toBe(-1);
  });
  it('paints NaN cells transparent (hatched by the view), others opaque', () => {
    const ramp = sequentialRamp(VIRIDIS);
    const px = paintCells([0, NaN, 1], 1, 3, ramp, rangeBucketer(0, 1));
    expect(Array.from(px.subarray(0, 4))).toEqual([68, 1, 84, 255]);
    expect(Array.from(px.subarray(4, 8))).toEqual([0, 0, 0, 0]);
    expect(Array.from(px.subarray(8, 12))).toEqual([253, 231, 37, 255]);
    expect(rampColor(ramp, 0)).toBe('#440154');
  });
});

describe('chart scales', () => {
  it('linear and log(1 + step) x scales, with inverse', () => {
    const lin = makeScale([0, 200], [0, 100]);
    expect(lin(100)).toBe(50);
    expect(lin.invert(50)).toBe(100);
    const log = makeScale([0, 999], [0, 300], true);
    expect(log(0)).toBe(0);
    expect(log(9)).toBeCloseTo(100);
    expect(log(99)).toBeCloseTo(200);
    expect(log.invert(200)).toBeCloseTo(99);
    expect(makeScale([5, 5], [0, 10])(5)).toBe(5); // flat: middle
  });
  it('nice ticks and log ticks', () => {
    expect(niceTicks(0, 200, 5)).toEqual([0, 50, 100, 150, 200]);
    expect(niceTicks(0, 1, 4)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(3, 3)).toEqual([3]);
    expect(logTicks(0, 200)).toEqual([0, 1, 10, 100]);
    expect(logTicks(0, 60, 10)).toEqual([0, 1, 2, 5, 10, 20, 50]);
  });
  it('finds the nearest finite point', () => {
    const L = chartLayout(400, 200, [0, 100], [0, 1]);
    const xs = [0, 50, 100];
    const ys = [0.1, NaN, 0.9];
    expect(nearestPoint(L, xs, ys, L.sx(100) + 2, L.sy(0.9) - 3)).toBe(2);
    expect(nearestPoint(L, xs, ys, L.sx(50), L.sy(0.5))).toBe(-1); // NaN point is not a target
  });
});

describe('grid and labels', () => {
  it('hit-tests cells', () => {
    const g = {x: 10, y: 20, cw: 5, ch: 4, rows: 2, cols: 3};
    expect(cellAt(g, 10, 20)).toEqual({row: 0, col: 0});
    expect(cellAt(g, 24.9, 27.9)).toEqual({row: 1, col: 2});
    expect(cellAt(g, 25, 20)).toBeNull();
    expect(cellAt(g, 9, 20)).toBeNull();
  });
  it('thins labels of thin rows', () => {
    expect(labelStride(20)).toBe(1);
    expect(labelStride(3, 9)).toBe(3);
    expect(labelStride(0.5, 10)).toBe(20);
  });
  it('rotated text in SVG is escaped and transformed', () => {
    const svg = new SvgContext();
    svg.translate(5, 0);
    fillTextRotated(svg, '<b>', 10, 20, -90);
    const out = svg.toSvg(50, 50);
    expect(out).toContain('transform="rotate(-90 15 20)"');
    expect(out).toContain('&lt;b&gt;');
  });
});
