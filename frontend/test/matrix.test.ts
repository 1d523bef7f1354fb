// The matrix view's arithmetic (zoom, pan, tiles, binning, masks), its renderer (what a pixel shows at each
// level) and its drawing through the recording context.
import {describe, expect, it} from 'vitest';
import {loadStory} from '../dev/stories';
import {FixtureSource} from '../dev/fixtures';
import {LIGHT} from '../src/draw/colors';
import {SvgContext} from '../src/draw/ctx';
import type {MatrixData} from '../src/views/matrix/data';
import {coarseValue, diffMatrixData, padded, planeOf, shareExtent} from '../src/views/matrix/data';
import {scaledDraw} from '../src/views/matrix/cache';
import {MAX_MULTI, MultiPainter, multiLayout, multiValueText, plotAt} from '../src/views/matrix/multi';
import {axisMap, logBucket, MatrixPainter, matrixLayout, renderPlot, tickStep} from '../src/views/matrix/draw';
import {formatViewport, multiHeads, multiMode, parseViewport} from '../src/views/matrix/spec';
import {topIndices} from '../src/views/matrix/view';
import {
  around,
  binCounts,
  binOf,
  binStart,
  blockMasked,
  boxViewport,
  cellAtPixel,
  chooseSource,
  clampViewport,
  EXACT_CELLS,
  fullViewport,
  masked,
  MIN_SPAN,
  panBy,
  tilesFor,
  TILE,
  zoomAt,
} from '../src/views/matrix/zoom';

const N = 32768;

describe('viewport arithmetic', () => {
  it('zooms around the pointer, which stays on the same token', () => {
    const v = fullViewport(N, N);
    const z = zoomAt(v, 0.25, 0.25, 0.75, N, N);
    expect(z.x1 - z.x0).toBeCloseTo(N / 4);
    // the anchor token (x = N/4, y = 3N/4) is at the same fraction of the new viewport
    expect((N / 4 - z.x0) / (z.x1 - z.x0)).toBeCloseTo(0.25);
    expect((0.75 * N - z.y0) / (z.y1 - z.y0)).toBeCloseTo(0.75);
    // zooming out past the matrix clamps to it
    expect(zoomAt(z, 100, 0.5, 0.5, N, N)).toEqual(v);
  });
  it('stops at MIN_SPAN tokens and keeps the aspect there', () => {
    let v = fullViewport(N, N);
    for (let t = 0; t < 40; t++) v = zoomAt(v, 0.3, 0.5, 0.5, N, N);
    expect(v.x1 - v.x0).toBeCloseTo(MIN_SPAN);
    expect(v.y1 - v.y0).toBeCloseTo(MIN_SPAN);
    // a matrix smaller than MIN_SPAN: the whole of it
    expect(clampViewport({x0: 0, x1: 1, y0: 0, y1: 1}, 2, 3)).toEqual({x0: 0, x1: 3, y0: 0, y1: 2});
  });
  it('pans within the matrix and boxes at least MIN_SPAN', () => {
    const v = {x0: 100, x1: 200, y0: 100, y1: 200};
    expect(panBy(v, -500, 50, N, N)).toEqual({x0: 0, x1: 100, y0: 150, y1: 250});
    expect(panBy(v, N, N, N, N)).toEqual({x0: N - 100, x1: N, y0: N - 100, y1: N});
    const b = boxViewport(10, 20, 11, 21, N, N);
    expect(b.x1 - b.x0).toBe(MIN_SPAN);
    expect(around(5, 5, 64, N, N)).toEqual({x0: 0, x1: 64, y0: 0, y1: 64});
  });
  it('maps plot pixels to cells', () => {
    const v = {x0: 1000, x1: 1100, y0: 2000, y1: 2050};
    expect(cellAtPixel(v, 500, 500, 0, 0, N, N)).toEqual({i: 2000, j: 1000});
    expect(cellAtPixel(v, 500, 500, 499, 499, N, N)).toEqual({i: 2049, j: 1099});
    expect(cellAtPixel(v, 500, 500, 500, 10, N, N)).toBeNull();
  });
  it('round-trips through the URL key', () => {
    expect(parseViewport(formatViewport({x0: 10.4, x1: 20.6, y0: 3, y1: 9}))).toEqual({x0: 10, x1: 21, y0: 3, y1: 9});
    expect(parseViewport('9:3,1:2')).toBeNull();
    expect(parseViewport('a')).toBeNull();
  });
});

describe('levels and tiles', () => {
  it('uses exact tiles only when the viewport holds at most EXACT_CELLS cells of an exact long layer', () => {
    expect(chooseSource(fullViewport(512, 512), false, true)).toBe('dense');
    expect(chooseSource(fullViewport(N, N), true, true)).toBe('pyramid');
    expect(chooseSource({x0: 0, x1: 1024, y0: 0, y1: 1024}, true, true)).toBe('exact');
    expect(chooseSource({x0: 0, x1: 1024, y0: 0, y1: 1025}, true, true)).toBe('pyramid');
    expect(chooseSource({x0: 0, x1: 64, y0: 0, y1: 64}, true, false)).toBe('pyramid');
    expect(1024 * 1024).toBe(EXACT_CELLS);
  });
  it('lists the tiles of a viewport, nearest the centre first, skipping wholly masked ones', () => {
    const v = {x0: 100, x1: 600, y0: 300, y1: 800};
    const all = tilesFor(v, N, N);
    expect(all.length).toBe(9); // tiles 0..2 × 1..3
    expect(all[0]).toEqual({ti: 2, tj: 1, r0: 512, r1: 768, c0: 256, c1: 512});
    const causal = tilesFor(v, N, N, {causal: true, window: null, off: 0});
    // tiles strictly right of the diagonal hidden: (ti=1, tj=2) starts at key 512 > row 511
    expect(causal.map((t) => `${t.ti},${t.tj}`).sort()).toEqual(['1,0', '1,1', '2,0', '2,1', '2,2', '3,0', '3,1', '3,2']);
    // clipped at the matrix's edge
    const edge = tilesFor({x0: 0, x1: 300, y0: 0, y1: 300}, 300, 300);
    expect(edge.map((t) => [t.r1, t.c1])).toContainEqual([300, 300]);
    expect(TILE).toBe(256);
  });
  it('knows which cells a causal or sliding-window mask hides', () => {
    const m = {causal: true, window: 4, off: 0};
    expect(masked(m, 5, 6)).toBe(true);
    expect(masked(m, 5, 5)).toBe(false);
    expect(masked(m, 5, 2)).toBe(false);
    expect(masked(m, 5, 1)).toBe(true); // 5 − 1 ≥ 4
    expect(blockMasked(m, 0, 4, 4, 8)).toBe(true);
    expect(blockMasked(m, 0, 5, 4, 8)).toBe(false);
    expect(blockMasked(m, 10, 12, 0, 7)).toBe(true);
    expect(blockMasked(m, 10, 12, 0, 8)).toBe(false);
    // cross-attention style offset: k_len − q_len = 2 moves the diagonal right
    expect(masked({causal: true, window: null, off: 2}, 0, 2)).toBe(false);
  });
  it('bins tokens as the backend does', () => {
    for (const [n, bins] of [[32768, 512], [1000, 512], [700, 512], [512, 512]]) {
      const counts = binCounts(n, bins);
      expect(counts.reduce((a, b) => a + b, 0)).toBe(n);
      for (let i = 0; i < n; i += 7) {
        const b = binOf(i, n, bins);
        expect(b).toBe(Math.floor((i * bins) / n));
        expect(binStart(b, n, bins) <= i && i < binStart(b + 1, n, bins)).toBe(true);
      }
    }
  });
  it('maps pixels onto bins with token overlaps', () => {
    const m = axisMap(0, 100, 10, 100, 50); // 10 tokens per pixel, 2 tokens per bin
    expect(m.start[1] - m.start[0]).toBe(5);
    expect(Array.from(m.frac.subarray(0, 5))).toEqual([1, 1, 1, 1, 1]);
    const z = axisMap(10, 1, 4, 100, 50); // a quarter token per pixel: a quarter of a bin's first token
    expect(z.bin[0]).toBe(5);
    expect(z.frac[0]).toBeCloseTo(0.125);
  });
});

/** A long-layout fixture: uniform causal attention over n tokens, pyramid of `bins`, exact tiles on demand. */
function uniformCausal(n: number, bins: number): MatrixData {
  const pyr = new Float32Array(bins * bins);
  // bin (a, b): mean over the bin's queries of the summed weights 1/(i+1) of its visible keys
  for (let a = 0; a < bins; a++)
    for (let b = 0; b < bins; b++) {
      let s = 0;
      for (let i = binStart(a, n, bins); i < binStart(a + 1, n, bins); i++) for (let j = binStart(b, n, bins); j < binStart(b + 1, n, bins); j++) if (j <= i) s += 1 / (i + 1);
      pyr[a * bins + b] = s / (binStart(a + 1, n, bins) - binStart(a, n, bins));
    }
  const cell = (i: number, j: number) => (j <= i ? 1 / (i + 1) : 0);
  return {
    layer: 0,
    head: 0,
    q: n,
    k: n,
    queryLabels: Array.from({length: n}, (_, i) => `t${i}`),
    keyLabels: Array.from({length: n}, (_, i) => `t${i}`),
    long: true,
    exact: true,
    mask: {causal: true, window: null, off: 0},
    base: {rows: bins, cols: bins, data: pyr},
    loadTile: async (t) => {
      const out = new Float32Array((t.r1 - t.r0) * (t.c1 - t.c0));
      for (let i = t.r0; i < t.r1; i++) for (let j = t.c0; j < t.c1; j++) out[(i - t.r0) * (t.c1 - t.c0) + (j - t.c0)] = cell(i, j);
      return out;
    },
    loadRow: async (i) => Float32Array.from({length: n}, (_, j) => cell(i, j)),
    baseLabel: 'test pyramid',
    notes: [],
  };
}

describe('renderer', () => {
  it('shows the same mass from the pyramid and from exact tiles, and masked pixels grey', async () => {
    const n = 512;
    const d = uniformCausal(n, 64); // 8 tokens per bin
    const v = {x0: 0, x1: 64, y0: 64, y1: 128};
    const tiles = new Map<string, Float32Array>();
    for (const t of tilesFor(v, n, n, d.mask, 64)) tiles.set(`${t.ti},${t.tj}`, await d.loadTile!(t));
    const coarse = renderPlot(d, v, 8, 8, LIGHT, null, 64);
    const exact = renderPlot(d, v, 8, 8, LIGHT, (ti, tj) => tiles.get(`${ti},${tj}`) ?? null, 64);
    expect(coarse.exactPixels).toBe(0);
    expect(exact.exactPixels).toBe(64);
    // pixels are bins here: identical pixels either way
    expect(Array.from(exact.pixels)).toEqual(Array.from(coarse.pixels));
    // above the diagonal: grey (masked), not the ramp's zero colour
    const above = renderPlot(d, {x0: 256, x1: 320, y0: 0, y1: 64}, 4, 4, LIGHT, null, 64);
    expect(above.maskedPixels).toBe(16);
    expect(Array.from(above.pixels.subarray(4, 8))).not.toEqual([68, 1, 84, 255]);
  });
  it('falls back to the coarse level where a tile is missing, and keeps a single bright key', () => {
    const n = 256;
    const d = uniformCausal(n, 32);
    const r = renderPlot(d, fullViewport(n, n), 32, 32, LIGHT, () => null, 64);
    expect(r.exactPixels).toBe(0);
    // a spike at key 3 of row 200 survives pooling: keys are summed, not averaged
    const spike: MatrixData = {...d, mask: {causal: false, window: null, off: 0}, base: {rows: n, cols: n, data: new Float32Array(n * n)}, long: false};
    spike.base.data[200 * n + 3] = 1;
    const s = renderPlot(spike, fullViewport(n, n), 32, 32, LIGHT, null, 64);
    expect(s.maxAbs).toBeCloseTo(1 / 8); // 8 × 8 cells per pixel: keys summed (1), queries averaged (÷ 8)
  });
  it('colours on a log scale from 1e-5 to 1', () => {
    expect(logBucket(0)).toBe(0);
    expect(logBucket(1e-6)).toBe(0);
    expect(logBucket(1)).toBe(255);
    expect(logBucket(1e-3)).toBe(Math.round(255 * 0.4));
  });
  it('draws B − A by sign', async () => {
    const a = uniformCausal(128, 32);
    const b = {...uniformCausal(128, 32)};
    b.base = {...b.base, data: b.base.data.map((x, i) => (i === 33 ? x + 0.5 : x))};
    const diff = diffMatrixData(a, b);
    expect(diff.signed).toBe(true);
    const r = renderPlot(diff, fullViewport(128, 128), 32, 32, LIGHT, null, 64);
    expect(r.maxAbs).toBeCloseTo(0.5);
    expect(await diff.loadRow(5)).toEqual(new Float32Array(128));
  });
  it('picks round tick steps and the strongest keys', () => {
    expect(tickStep(32768, 600, 56)).toBe(5000);
    expect(tickStep(100, 600, 56)).toBe(10);
    expect(topIndices([0.1, 0.5, 0.2, 0.9, 0], 3)).toEqual([3, 1, 2]);
  });
});

describe('matrix story', () => {
  it('draws the dense GPT-2 layer with its mask, labels and a row', async () => {
    const d = (await (await loadStory('matrix')).data(new FixtureSource())) as MatrixData;
    expect(d.long).toBe(false);
    expect(d.mask.causal).toBe(true);
    const L = matrixLayout(900);
    const p = new MatrixPainter(d, L, LIGHT);
    const v = fullViewport(d.q, d.k);
    const r = renderPlot(d, v, L.w, L.h, LIGHT, null, TILE);
    expect(r.maskedPixels).toBeGreaterThan(0);
    const svg = new SvgContext();
    p.paint(svg, v, r, {i: 3, row: await d.loadRow(3), exact: true});
    const texts = svg.elements.filter((e) => e.startsWith('<text ')).join('\n');
    // tokens as labels (cells are tall enough at this size), the row's caption, the legend
    expect(texts).toContain(d.queryLabels[1].replace(/&/g, '&amp;').replace(/</g, '&lt;'));
    expect(texts).toContain('query 3');
    expect(texts).toContain('masked');
  });
});

/** A dense fixture: q × k weights `f(i, j)`, no mask. */
function dense(q: number, k: number, head: number, f: (i: number, j: number) => number): MatrixData {
  const data = new Float32Array(q * k);
  for (let i = 0; i < q; i++) for (let j = 0; j < k; j++) data[i * k + j] = f(i, j);
  return {
    layer: 0, head, q, k, long: false, exact: true, notes: [], baseLabel: 'dense',
    queryLabels: Array.from({length: q}, (_, i) => `q${i}`),
    keyLabels: Array.from({length: k}, (_, j) => `k${j}`),
    mask: {causal: false, window: null, off: 0},
    base: {rows: q, cols: k, data},
    loadRow: async (i) => data.slice(i * k, (i + 1) * k),
  };
}

describe('small multiples', () => {
  it('lays heads out on a grid and finds the plot under a point', () => {
    const L = multiLayout(1000, 12);
    expect(L.cols).toBe(4);
    expect(L.rows).toBe(3);
    expect(L.cells.length).toBe(12);
    expect(L.side).toBeLessThanOrEqual(260);
    expect(L.cells[5].x).toBeGreaterThan(L.cells[4].x);
    expect(L.cells[4].y).toBeGreaterThan(L.cells[3].y);
    const c = L.cells[6];
    expect(plotAt(L, c.x + 3, c.y + 7)).toEqual({n: 6, px: 3, py: 7});
    expect(plotAt(L, c.x - 2, c.y + 7)).toBeNull(); // the gap between plots
    expect(multiLayout(300, 1).side).toBeGreaterThanOrEqual(80);
  });
  it('shows the selected heads or all of them, at most MAX_MULTI', () => {
    expect(multiHeads('all', 4, [1])).toEqual({shown: [0, 1, 2, 3], of: 4});
    expect(multiHeads('sel', 4, [3, 1, 9])).toEqual({shown: [3, 1], of: 2});
    expect(multiHeads('sel', 4, null).shown).toEqual([0, 1, 2, 3]); // nothing selected: all
    const many = multiHeads('all', 40, null);
    expect(many.shown.length).toBe(MAX_MULTI);
    expect(many.of).toBe(40);
    expect(multiMode({mh: 'all'})).toBe('all');
    expect(multiMode({mh: 'bogus'})).toBe('');
  });
  it('draws every head with the hovered cell’s value in its title, marked on every plot', () => {
    const ds = [0, 1, 2].map((h) => dense(8, 8, h, (i, j) => (i === j ? 0.5 + h / 10 : 0.01)));
    ds[2].mask = {causal: true, window: null, off: 0};
    const L = multiLayout(900, ds.length);
    const p = new MultiPainter(ds, L, LIGHT);
    const v = fullViewport(8, 8);
    const rs = ds.map((d) => renderPlot(d, v, L.side, L.side, LIGHT, null, TILE));
    expect(rs[2].maskedPixels).toBeGreaterThan(0);
    const svg = new SvgContext();
    p.paint(svg, v, rs, {i: 2, j: 5});
    const texts = svg.elements.filter((e) => e.startsWith('<text ')).join('\n');
    expect(texts).toContain('H0: 0.01');
    expect(texts).toContain('H1: 0.01');
    expect(texts).toContain('H2: masked'); // key 5 > query 2 under the causal mask
    expect(texts).toContain('query 2 “q2” → key 5 “k5”');
    expect(texts).toContain('queries 0–8 × keys 0–8');
    expect(multiValueText(ds[1], 3, 3)).toBe('0.6');
    // one mark per plot at the hovered cell: cell (2, 5) of an 8 × 8 viewport
    const s = L.side / 8;
    const marks = svg.elements.filter((e) => e.startsWith('<rect ') && e.includes('stroke-width="1.5"'));
    expect(marks.length).toBe(3);
    ds.forEach((_, n) => expect(marks[n]).toContain(`x="${+(L.cells[n].x + 5 * s - 1).toFixed(2)}" y="${+(L.cells[n].y + 2 * s - 1).toFixed(2)}"`));
    // every plot is drawn: one image per head (and the legend's ramp)
    expect(svg.elements.filter((e) => e.startsWith('<image ') || e.includes('placeholder')).length).toBeGreaterThanOrEqual(3);
  });
});

describe('padding (cells past a record’s tokens)', () => {
  it('shares one plane between records of other lengths and draws the shorter one’s outside grey', () => {
    const a = dense(6, 6, 0, () => 1 / 6);
    const b = dense(10, 10, 0, () => 0.1);
    shareExtent([a, b]);
    expect(a.extent).toEqual({q: 10, k: 10});
    expect(padded(a)).toBe(true);
    expect(padded(b)).toBe(false);
    expect(planeOf(a)).toEqual({q: 10, k: 10});
    const v = fullViewport(10, 10);
    const r = renderPlot(a, v, 10, 10, LIGHT, null, TILE);
    expect(r.paddedPixels).toBe(100 - 36);
    expect(r.maskedPixels).toBe(0);
    // a padding pixel is the masked grey (never the ramp's colour of 0), an inside one is not
    const masked = renderPlot({...dense(2, 2, 0, () => 0.5), mask: {causal: true, window: null, off: 0}}, fullViewport(2, 2), 2, 2, LIGHT, null, TILE);
    const greyPx = Array.from(masked.pixels.subarray(4, 8)); // (0, 1): masked
    expect(Array.from(r.pixels.subarray(4 * 7, 4 * 8))).toEqual(greyPx); // (0, 7): past key 5
    expect(Array.from(r.pixels.subarray(0, 4))).not.toEqual(greyPx);
    expect(coarseValue(a, 7, 2)).toMatchObject({masked: true, beyond: true});
    expect(coarseValue(a, 2, 2)).toMatchObject({masked: false, beyond: false});
    expect(multiValueText(a, 2, 8)).toBe('padding');
    // same lengths: no extent, nothing padded
    const c = dense(6, 6, 0, () => 0.1);
    const d = dense(6, 6, 0, () => 0.2);
    shareExtent([c, d]);
    expect(c.extent).toBeUndefined();
    // the legend says what grey means
    const svg = new SvgContext();
    new MatrixPainter(a, matrixLayout(900), LIGHT).paintLegend(svg, 1);
    expect(svg.elements.filter((e) => e.startsWith('<text ')).join('\n')).toContain('padding: past this record’s tokens');
    const plain = new SvgContext();
    new MatrixPainter(b, matrixLayout(900), LIGHT).paintLegend(plain, 1);
    expect(plain.elements.join('\n')).not.toContain('padding');
  });
});

describe('scaled frames', () => {
  it('maps a viewport into the cached render of another', () => {
    const c = {x0: 0, x1: 100, y0: 0, y1: 100};
    // zoomed in 2× on the middle: the middle half of the cache fills the plot
    expect(scaledDraw(c, 200, 200, {x0: 25, x1: 75, y0: 25, y1: 75}, 400, 400)).toEqual({sx: 50, sy: 50, sw: 100, sh: 100, dx: 0, dy: 0, dw: 400, dh: 400});
    // zoomed out (past the cache on the right and bottom): the whole cache in the plot's top-left part
    const out = scaledDraw({x0: 0, x1: 50, y0: 0, y1: 50}, 100, 100, {x0: 0, x1: 100, y0: 0, y1: 100}, 400, 400)!;
    expect(out).toEqual({sx: 0, sy: 0, sw: 100, sh: 100, dx: 0, dy: 0, dw: 200, dh: 200});
    // panned left by 10 tokens: the cache's left part moves right by 10 % of the plot
    const pan = scaledDraw(c, 100, 100, {x0: -10, x1: 90, y0: 0, y1: 100}, 100, 100)!;
    expect(pan.sx).toBe(0);
    expect(pan.dx).toBeCloseTo(10);
    expect(pan.sw).toBeCloseTo(90);
    // no overlap
    expect(scaledDraw(c, 100, 100, {x0: 200, x1: 300, y0: 0, y1: 100}, 100, 100)).toBeNull();
  });
});
