import {describe, expect, it} from 'vitest';
import {CATEGORY10, alphaRamp, headColor, hexToRgb} from '../src/draw/colors';
import {SvgContext, escapeXml} from '../src/draw/ctx';
import {linearBucketer, paintCells, paintSignedCells} from '../src/draw/heatmap';
import {collectLines, drawLines} from '../src/draw/lines';

describe('head palette', () => {
  it('uses the categorical palette up to 10 heads', () => {
    expect(Array.from({length: 10}, (_, i) => headColor(i, 10))).toEqual(CATEGORY10);
  });
  it('stays distinct past 10 heads', () => {
    for (const n of [12, 16, 20, 32, 64]) {
      const cs = Array.from({length: n}, (_, i) => hexToRgb(headColor(i, n)));
      expect(new Set(cs.map(String)).size).toBe(n);
      let min = Infinity;
      for (let i = 0; i < n; i++)
        for (let j = i + 1; j < n; j++) min = Math.min(min, Math.hypot(cs[i][0] - cs[j][0], cs[i][1] - cs[j][1], cs[i][2] - cs[j][2]));
      expect(min).toBeGreaterThan(n <= 20 ? 50 : 25);
    }
  });
});

describe('heatmap cells', () => {
  it('maps values through the ramp, and signs to two colours', () => {
    const ramp = alphaRamp([10, 20, 30]);
    const px = paintCells([0, 0.5, 1], 1, 3, ramp, linearBucketer(1));
    expect(Array.from(px)).toEqual([10, 20, 30, 0, 10, 20, 30, 128, 10, 20, 30, 255]);
    const s = paintSignedCells([-1, 1], 1, 2, alphaRamp([0, 0, 255]), alphaRamp([255, 0, 0]), linearBucketer(1));
    expect(Array.from(s)).toEqual([255, 0, 0, 255, 0, 0, 255, 255]);
  });
});

describe('SVG export', () => {
  it('escapes untrusted token text', () => {
    const svg = new SvgContext();
    svg.fillText('<script>alert("x")</script>&', 1, 2);
    const out = svg.toSvg(10, 10);
    expect(out).not.toContain('<script>');
    expect(out).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;');
    expect(escapeXml(`'`)).toBe('&#39;');
  });
  it('records one path per alpha bucket, translated', () => {
    const svg = new SvgContext();
    svg.translate(100, 0);
    const set = collectLines(Float32Array.from([0.5, 0.5, 1, 0]), 2, 2, {scale: 1});
    const n = drawLines(svg, set, '#123456', {x1: 0, x2: 10, rowY: (i) => i * 10, colY: (j) => j * 10});
    expect(n).toBe(3);
    expect(svg.elementCount).toBe(2);
    const out = svg.toSvg(200, 30, '#fff');
    expect(out).toContain('d="M100 0L110 0M100 0L110 10"');
    expect(out).toContain('stroke-opacity="0.502"');
    expect(out.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="200" height="30"')).toBe(true);
  });
});
