// Drawing of the matrix view, DOM-free: the plot is rendered pixel by pixel from the best level loaded
// (exact tiles where they are, else the coarse level; a pixel shows the attention mass of the cells it
// covers, keys summed and queries averaged as the pyramid pools), colours on a log scale, masked cells grey,
// then token / index labels, the hovered query's row as two strips (visible keys, whole row) and a legend.
import {DIVERGING, hexToRgb, nanColors, sequentialRamp, VIRIDIS, type Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {drawRaster, raster} from '../../draw/heatmap';
import {fillTextRotated} from '../../draw/ctx';
import {fitText} from '../../draw/tokens';
import {formatValue} from '../../math';
import {padded, type MatrixData} from './data';
import {binOf, binStart, blockMasked, pixelOf, type Viewport} from './zoom';

export const RAMP = sequentialRamp(VIRIDIS);
/** Log colour scale: 10^LOG_MIN (and anything smaller but > 0) is the ramp's bottom, 1 its top. */
export const LOG_MIN = -5;
const STRIP_H = 56;
const WHOLE_H = 26;
const GAP = 12;
const FONT = '11px Roboto, "Helvetica Neue", Arial, sans-serif';

/** Ramp bucket of a weight on the log scale (0 for v ≤ 10^LOG_MIN). */
export function logBucket(v: number): number {
  if (!(v > 0)) return 0;
  const t = (Math.log10(v) - LOG_MIN) / -LOG_MIN;
  return Math.max(0, Math.min(255, Math.round(255 * t)));
}

export interface MatrixLayout {
  /** Plot rectangle (content coordinates). */
  x: number;
  y: number;
  w: number;
  h: number;
  /** Strips under the plot: the row over the visible keys, then the whole row. */
  stripY: number;
  wholeY: number;
  legendY: number;
  width: number;
  height: number;
}

export function matrixLayout(total: number, maxH = 760): MatrixLayout {
  const left = 118;
  const top = 86;
  const side = Math.max(240, Math.min(total - left - 24, maxH));
  const stripY = top + side + GAP;
  const wholeY = stripY + STRIP_H + GAP + 12;
  const legendY = wholeY + WHOLE_H + GAP + 4;
  return {x: left, y: top, w: Math.floor(side), h: Math.floor(side), stripY, wholeY, legendY, width: left + side + 16, height: legendY + 40};
}

/** What a rendered plot holds: pixels, and how many came from exact tiles or were masked. */
export interface Rendered {
  pixels: Uint8ClampedArray;
  /** Pixels drawn from exact tiles (the rest from the coarse level). */
  exactPixels: number;
  maskedPixels: number;
  /** Pixels past the record's own sequences (a plane shared with a longer record): grey, as masked. */
  paddedPixels: number;
  /** Largest |value| drawn (the scale of a difference). */
  maxAbs: number;
}

/** Tile values by tile index, for the renderer (null: not loaded). */
export type TileLookup = (ti: number, tj: number) => Float32Array | null;

/**
 * Which bins of an axis each of `px` pixels covers, and by how many tokens: pixel p spans tokens
 * [lo + p·s, lo + (p+1)·s) (s = span / px, clipped to [0, n)); bins as the pyramid's (`bins` = n: cells).
 * `tokens[t]` is the overlap in tokens, `frac[t]` that overlap over the bin's size.
 */
export interface AxisMap {
  /** Entries of pixel p: [start[p], start[p+1]). */
  start: Int32Array;
  bin: Int32Array;
  tokens: Float32Array;
  frac: Float32Array;
  /** Integer token cover of each pixel: [lo[p], hi[p]). */
  lo: Int32Array;
  hi: Int32Array;
}

export function axisMap(lo: number, span: number, px: number, n: number, bins: number): AxisMap {
  const s = span / px;
  const start = new Int32Array(px + 1);
  const bin: number[] = [];
  const tokens: number[] = [];
  const frac: number[] = [];
  const clo = new Int32Array(px);
  const chi = new Int32Array(px);
  for (let p = 0; p < px; p++) {
    start[p] = bin.length;
    const a = Math.max(0, lo + p * s);
    const b = Math.min(n, Math.max(a + 1e-9, lo + (p + 1) * s));
    clo[p] = Math.min(n - 1, Math.floor(a));
    chi[p] = Math.max(clo[p] + 1, Math.min(n, Math.ceil(b)));
    const b0 = binOf(clo[p], n, bins);
    const b1 = binOf(chi[p] - 1, n, bins);
    for (let k = b0; k <= b1; k++) {
      const s0 = binStart(k, n, bins);
      const s1 = binStart(k + 1, n, bins);
      const o = Math.min(b, s1) - Math.max(a, s0);
      if (o <= 0) continue;
      bin.push(k);
      tokens.push(o);
      frac.push(o / Math.max(1, s1 - s0));
    }
  }
  start[px] = bin.length;
  return {start, bin: Int32Array.from(bin), tokens: Float32Array.from(tokens), frac: Float32Array.from(frac), lo: clo, hi: chi};
}

/**
 * Renders viewport `v` of `d` into w × h RGBA pixels. Every pixel shows the attention mass its keys get
 * from its queries: keys summed, queries averaged (the pyramid's own pooling, so every level and zoom shows
 * the same quantity, and a single bright key is never averaged away). From exact tiles where every cell the
 * pixel covers is loaded (`tile`, tiles of `tileSize`; masked cells count as 0), else from the coarse level
 * (a pixel covering part of a bin gets that part of its mass; a max pyramid (`d.agg`): the largest bin it
 * covers, so a lone strong link stays bright). A pixel whose cells are all masked is grey.
 */
export function renderPlot(d: MatrixData, v: Viewport, w: number, h: number, theme: Theme, tile: TileLookup | null, tileSize: number): Rendered {
  const out = new Uint8ClampedArray(w * h * 4);
  const vals = new Float32Array(w * h);
  const B = d.base;
  const cx = axisMap(v.x0, v.x1 - v.x0, w, d.k, B.cols);
  const cy = axisMap(v.y0, v.y1 - v.y0, h, d.q, B.rows);
  const ex = tile ? axisMap(v.x0, v.x1 - v.x0, w, d.k, d.k) : null;
  const ey = tile ? axisMap(v.y0, v.y1 - v.y0, h, d.q, d.q) : null;
  let exactPixels = 0;
  let maskedPixels = 0;
  let paddedPixels = 0;
  let maxAbs = 0;
  // pixels that start past the record's last query / key (padding on a shared plane)
  const outX = new Uint8Array(w);
  const outY = new Uint8Array(h);
  for (let px = 0; px < w; px++) outX[px] = v.x0 + (px * (v.x1 - v.x0)) / w >= d.k ? 1 : 0;
  for (let py = 0; py < h; py++) outY[py] = v.y0 + (py * (v.y1 - v.y0)) / h >= d.q ? 1 : 0;
  for (let py = 0; py < h; py++) {
    for (let px = 0; px < w; px++) {
      const o = py * w + px;
      if (outX[px] || outY[py]) {
        vals[o] = NaN;
        paddedPixels++;
        continue;
      }
      if (blockMasked(d.mask, cy.lo[py], cy.hi[py], cx.lo[px], cx.hi[px])) {
        vals[o] = NaN;
        maskedPixels++;
        continue;
      }
      let value = NaN;
      if (ex && ey) {
        let sum = 0;
        let wsum = 0;
        let ok = true;
        for (let a = ey.start[py]; a < ey.start[py + 1] && ok; a++) {
          const i = ey.bin[a];
          const ti = Math.floor(i / tileSize);
          let rs = 0;
          for (let b = ex.start[px]; b < ex.start[px + 1]; b++) {
            const j = ex.bin[b];
            const tj = Math.floor(j / tileSize);
            const t = tile!(ti, tj);
            if (!t) {
              if (blockMasked(d.mask, i, i + 1, j, j + 1)) continue;
              ok = false;
              break;
            }
            const c0 = tj * tileSize;
            rs += t[(i - ti * tileSize) * Math.min(tileSize, d.k - c0) + (j - c0)] * ex.frac[b];
          }
          sum += rs * ey.tokens[a];
          wsum += ey.tokens[a];
        }
        if (ok && wsum > 0) {
          value = sum / wsum;
          exactPixels++;
        }
      }
      if (Number.isNaN(value) && d.agg === 'max') {
        // a max pyramid: the largest bin the pixel covers (largest |B − A| for a difference, its sign kept)
        value = 0;
        for (let a = cy.start[py]; a < cy.start[py + 1]; a++) {
          const row = cy.bin[a] * B.cols;
          for (let b = cx.start[px]; b < cx.start[px + 1]; b++) {
            const x = B.data[row + cx.bin[b]];
            if (Math.abs(x) > Math.abs(value)) value = x;
          }
        }
      }
      if (Number.isNaN(value)) {
        let sum = 0;
        let wsum = 0;
        for (let a = cy.start[py]; a < cy.start[py + 1]; a++) {
          const row = cy.bin[a] * B.cols;
          let rs = 0;
          for (let b = cx.start[px]; b < cx.start[px + 1]; b++) rs += B.data[row + cx.bin[b]] * cx.frac[b];
          sum += rs * cy.tokens[a];
          wsum += cy.tokens[a];
        }
        value = wsum > 0 ? sum / wsum : 0;
      }
      vals[o] = value;
      if (Math.abs(value) > maxAbs) maxAbs = Math.abs(value);
    }
  }
  const grey = hexToRgb(nanColors(theme).fill);
  const bg = hexToRgb(theme.bg);
  const pos = hexToRgb(DIVERGING.pos);
  const neg = hexToRgb(DIVERGING.neg);
  const scale = d.signed ? 1 / Math.max(maxAbs, 1e-9) : 0;
  for (let o = 0; o < w * h; o++) {
    const x = vals[o];
    const p = 4 * o;
    out[p + 3] = 255;
    if (Number.isNaN(x)) {
      // grey with a sparse diagonal hatch: masked reads as "not there", never as a colour
      const f = ((o % w) + Math.floor(o / w)) % 6 === 0 ? 0.8 : 1;
      out[p] = Math.round(grey[0] * f);
      out[p + 1] = Math.round(grey[1] * f);
      out[p + 2] = Math.round(grey[2] * f);
      continue;
    }
    if (d.signed) {
      const a = Math.sqrt(Math.min(1, Math.abs(x) * scale));
      const c = x >= 0 ? pos : neg;
      for (let ch = 0; ch < 3; ch++) out[p + ch] = Math.round(bg[ch] * (1 - a) + c[ch] * a);
      continue;
    }
    const b = 4 * logBucket(x);
    out[p] = RAMP[b];
    out[p + 1] = RAMP[b + 1];
    out[p + 2] = RAMP[b + 2];
  }
  return {pixels: out, exactPixels, maskedPixels, paddedPixels, maxAbs};
}

/** A "nice" tick step (1, 2, 5 × 10^e tokens) so ticks are at least `minPx` apart. */
export function tickStep(span: number, px: number, minPx = 60): number {
  const raw = (span * minPx) / Math.max(1, px);
  const e = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1))));
  for (const m of [1, 2, 5, 10]) if (m * e >= raw) return m * e;
  return 10 * e;
}

export class MatrixPainter {
  constructor(
    readonly data: MatrixData,
    readonly layout: MatrixLayout,
    public theme: Theme,
  ) {}

  /** The rendered plot at its place. */
  paintPlot(ctx: Ctx, r: Rendered): void {
    const L = this.layout;
    drawRaster(ctx, raster(r.pixels, L.w, L.h), L.x, L.y, L.w, L.h);
    ctx.strokeStyle = this.theme.border;
    ctx.lineWidth = 1;
    ctx.strokeRect(L.x - 0.5, L.y - 0.5, L.w + 1, L.h + 1);
  }

  /** Query labels left of the plot and key labels above it: tokens when cells are tall enough, else indices. */
  paintAxes(ctx: Ctx, v: Viewport): void {
    const L = this.layout;
    const d = this.data;
    const t = this.theme;
    ctx.fillStyle = t.bg;
    ctx.fillRect(0, 0, L.width, L.y - 1);
    ctx.fillRect(0, 0, L.x - 1, L.height);
    ctx.font = FONT;
    ctx.fillStyle = t.text;
    const ch = L.h / (v.y1 - v.y0);
    const cw = L.w / (v.x1 - v.x0);
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'right';
    if (ch >= 11) {
      for (let i = Math.floor(v.y0); i < Math.ceil(v.y1); i++) {
        const y = pixelOf(v, L.w, L.h, 0, i + 0.5).py + L.y;
        if (y < L.y || y > L.y + L.h) continue;
        ctx.fillText(fitText(ctx, `${i} ${d.queryLabels[i] ?? ''}`, L.x - 8), L.x - 4, y);
      }
    } else {
      const step = tickStep(v.y1 - v.y0, L.h, 28);
      for (let i = Math.ceil(v.y0 / step) * step; i < v.y1; i += step) ctx.fillText(String(i), L.x - 4, L.y + pixelOf(v, L.w, L.h, 0, i).py);
    }
    ctx.textAlign = 'left';
    if (cw >= 11) {
      for (let j = Math.floor(v.x0); j < Math.ceil(v.x1); j++) {
        const x = pixelOf(v, L.w, L.h, j + 0.5, 0).px + L.x;
        if (x < L.x || x > L.x + L.w) continue;
        fillTextRotated(ctx, fitText(ctx, `${j} ${d.keyLabels[j] ?? ''}`, L.y - 10), x, L.y - 4, -90);
      }
    } else {
      const step = tickStep(v.x1 - v.x0, L.w, 56);
      ctx.textAlign = 'center';
      for (let j = Math.ceil(v.x0 / step) * step; j < v.x1; j += step) ctx.fillText(String(j), L.x + pixelOf(v, L.w, L.h, j, 0).px, L.y - 8);
    }
    ctx.textAlign = 'left';
    ctx.fillStyle = t.muted;
    ctx.fillText('keys →', L.x, 10);
    fillTextRotated(ctx, 'queries →', 10, L.y + 60, 90);
  }

  /**
   * The hovered query's row: over the visible keys (aligned with the plot; a pixel shows the largest weight
   * it covers, bars scaled to the largest shown) and over the whole sequence (the visible keys bracketed).
   */
  paintRow(ctx: Ctx, v: Viewport, i: number | null, row: Float32Array | null, exact: boolean): void {
    const L = this.layout;
    const t = this.theme;
    ctx.fillStyle = t.bg;
    ctx.fillRect(0, L.stripY - 14, L.width, L.legendY - L.stripY + 14);
    ctx.font = FONT;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'left';
    ctx.fillStyle = t.muted;
    if (i === null || !row) {
      ctx.fillText(i === null ? 'Hover a cell: its query’s row appears here.' : `Loading query ${i}’s row…`, L.x, L.stripY - 5);
      return;
    }
    const label = this.data.queryLabels[i] ?? '';
    ctx.fillText(fitText(ctx, `query ${i} “${label}”: ${exact ? 'exact row' : 'row'} over the visible keys, then the whole row`, L.w), L.x, L.stripY - 5);
    const bar = (y: number, hgt: number, j0: number, j1: number, color: string) => {
      const n = L.w;
      const s = (j1 - j0) / n;
      const col = new Float32Array(n);
      let mx = 0;
      for (let px = 0; px < n; px++) {
        const a = Math.floor(j0 + px * s);
        const b = Math.max(a + 1, Math.ceil(j0 + (px + 1) * s));
        let m = 0;
        for (let j = a; j < b && j < row.length; j++) m = Math.max(m, Math.abs(row[j]));
        col[px] = m;
        mx = Math.max(mx, m);
      }
      ctx.strokeStyle = t.border;
      ctx.lineWidth = 1;
      ctx.strokeRect(L.x - 0.5, y - 0.5, L.w + 1, hgt + 1);
      ctx.fillStyle = color;
      ctx.beginPath();
      for (let px = 0; px < n; px++) {
        const bh = mx > 0 ? (col[px] / mx) * hgt : 0;
        if (bh >= 0.5) ctx.rect(L.x + px, y + hgt - bh, 1, bh);
      }
      ctx.fill();
      return mx;
    };
    const mx = bar(L.stripY, STRIP_H, v.x0, v.x1, t.attn);
    ctx.fillStyle = t.muted;
    ctx.textAlign = 'right';
    ctx.fillText(`max ${formatValue(mx)}`, L.x - 4, L.stripY + 6);
    bar(L.wholeY, WHOLE_H, 0, this.data.k, t.muted);
    ctx.fillText('whole row', L.x - 4, L.wholeY + WHOLE_H / 2);
    // bracket of the visible keys on the whole row
    const a = L.x + (v.x0 / this.data.k) * L.w;
    const b = L.x + (v.x1 / this.data.k) * L.w;
    ctx.strokeStyle = t.attn;
    ctx.lineWidth = 2;
    ctx.strokeRect(a, L.wholeY - 2, Math.max(2, b - a), WHOLE_H + 4);
  }

  /** Colour scale and what grey means. */
  paintLegend(ctx: Ctx, maxAbs: number): void {
    const L = this.layout;
    const t = this.theme;
    const y = L.legendY;
    ctx.fillStyle = t.bg;
    ctx.fillRect(0, y - 2, L.width, 40);
    ctx.font = FONT;
    ctx.textBaseline = 'top';
    ctx.textAlign = 'left';
    if (this.data.signed) {
      ctx.fillStyle = DIVERGING.pos;
      ctx.fillRect(L.x, y, 14, 12);
      ctx.fillStyle = DIVERGING.neg;
      ctx.fillRect(L.x + 110, y, 14, 12);
      ctx.fillStyle = t.text;
      ctx.fillText('more in B', L.x + 18, y);
      ctx.fillText('more in A', L.x + 128, y);
      ctx.fillText(`full colour = ±${formatValue(maxAbs)} (largest on screen)`, L.x + 220, y);
    } else {
      const px = new Uint8ClampedArray(256 * 4);
      px.set(RAMP.subarray(0, 1024));
      drawRaster(ctx, raster(px, 256, 1), L.x, y, 200, 12);
      ctx.fillStyle = t.text;
      ctx.fillText(`0 / ≤1e${LOG_MIN}`, L.x, y + 15);
      ctx.textAlign = 'right';
      ctx.fillText('1 (log scale)', L.x + 200, y + 15);
      ctx.textAlign = 'left';
    }
    const grey = nanColors(t);
    ctx.fillStyle = grey.fill;
    ctx.fillRect(L.x + 420, y, 14, 12);
    ctx.strokeStyle = grey.hatch;
    ctx.lineWidth = 1;
    ctx.strokeRect(L.x + 420.5, y + 0.5, 13, 11);
    ctx.fillStyle = t.text;
    ctx.textAlign = 'left';
    ctx.fillText('masked (causal / window)', L.x + 438, y);
    if (padded(this.data)) ctx.fillText('or padding: past this record’s tokens', L.x + 438, y + 15);
  }

  /** Everything at rest (the export). */
  paint(ctx: Ctx, v: Viewport, r: Rendered, hoverRow: {i: number; row: Float32Array; exact: boolean} | null): void {
    this.paintPlot(ctx, r);
    this.paintAxes(ctx, v);
    this.paintRow(ctx, v, hoverRow?.i ?? null, hoverRow?.row ?? null, hoverRow?.exact ?? false);
    this.paintLegend(ctx, r.maxAbs);
  }
}
