// Small multiples of the matrix view, DOM-free: several heads of one layer as a grid of small heatmaps
// sharing one viewport (each rendered by renderPlot from its stored level: the dense matrix, or the pyramid),
// a head's title with the hovered cell's value in it, the hovered cell marked on every plot, and a legend.
import {nanColors, type Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {drawRaster, raster} from '../../draw/heatmap';
import {fitText} from '../../draw/tokens';
import {formatValue} from '../../math';
import {coarseValue, padded, type MatrixData} from './data';
import {LOG_MIN, RAMP, type Rendered} from './draw';
import {pixelOf, type Viewport} from './zoom';

/** Most heads drawn as small multiples (the rest are named in a note). */
export const MAX_MULTI = 16;
const FONT = '11px Roboto, "Helvetica Neue", Arial, sans-serif';
const TITLE_H = 16;
const GAP = 14;

export interface MultiLayout {
  count: number;
  cols: number;
  rows: number;
  /** Each plot is side × side pixels. */
  side: number;
  /** Plot rectangles' top-left corners (content coordinates), in head order. */
  cells: {x: number; y: number}[];
  /** Line above the grid: viewport and hovered cell. */
  headerY: number;
  legendY: number;
  width: number;
  height: number;
}

/** A grid of `count` square plots in `total` px of width (columns: ⌈√count⌉; sides 80–260 px). */
export function multiLayout(total: number, count: number, maxSide = 260): MultiLayout {
  const left = 16;
  const top = 30;
  const cols = Math.max(1, Math.ceil(Math.sqrt(count)));
  const rows = Math.max(1, Math.ceil(count / cols));
  const side = Math.max(80, Math.min(maxSide, Math.floor((total - left - 16 - (cols - 1) * GAP) / cols)));
  const cells = Array.from({length: count}, (_, n) => ({x: left + (n % cols) * (side + GAP), y: top + Math.floor(n / cols) * (side + GAP + TITLE_H) + TITLE_H}));
  const legendY = top + rows * (side + GAP + TITLE_H) + 4;
  return {count, cols, rows, side, cells, headerY: 12, legendY, width: Math.max(left + cols * (side + GAP) + 2, 560), height: legendY + 34};
}

/** Which plot (index) and plot pixel a content point is on, or null between plots. */
export function plotAt(L: MultiLayout, x: number, y: number): {n: number; px: number; py: number} | null {
  for (let n = 0; n < L.cells.length; n++) {
    const c = L.cells[n];
    const px = x - c.x;
    const py = y - c.y;
    if (px >= 0 && py >= 0 && px < L.side && py < L.side) return {n, px, py};
  }
  return null;
}

/** The hovered cell's value in one head, as its title shows it. */
export function multiValueText(d: MatrixData, i: number, j: number): string {
  const c = coarseValue(d, i, j);
  if (c.beyond) return 'padding';
  if (c.masked) return 'masked';
  return `${formatValue(c.value)}${c.exact ? '' : d.agg === 'max' ? ' (bin max)' : ' (bin mean)'}`;
}

export class MultiPainter {
  constructor(
    readonly datas: readonly MatrixData[],
    readonly layout: MultiLayout,
    public theme: Theme,
  ) {}

  /** Every plot at its place (rendered at `side` × `side`), with a border. */
  paintPlots(ctx: Ctx, rs: readonly Rendered[]): void {
    const L = this.layout;
    ctx.strokeStyle = this.theme.border;
    ctx.lineWidth = 1;
    rs.forEach((r, n) => {
      const c = L.cells[n];
      drawRaster(ctx, raster(r.pixels, L.side, L.side), c.x, c.y, L.side, L.side);
      ctx.strokeRect(c.x - 0.5, c.y - 0.5, L.side + 1, L.side + 1);
    });
  }

  /** Border of each plot (after a scaled frame drew the plots without one). */
  paintBorders(ctx: Ctx): void {
    const L = this.layout;
    ctx.strokeStyle = this.theme.border;
    ctx.lineWidth = 1;
    for (const c of L.cells) ctx.strokeRect(c.x - 0.5, c.y - 0.5, L.side + 1, L.side + 1);
  }

  /**
   * The overlay: the viewport and hovered cell above the grid, each head's title (with the hovered cell's
   * value in that head), and the hovered cell marked on every plot. Clears what it draws over.
   */
  paintHover(ctx: Ctx, v: Viewport, hover: {i: number; j: number} | null): void {
    const L = this.layout;
    const t = this.theme;
    const d0 = this.datas[0];
    ctx.font = FONT;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'left';
    ctx.fillStyle = t.muted;
    const range = `queries ${Math.floor(v.y0)}–${Math.ceil(v.y1)} × keys ${Math.floor(v.x0)}–${Math.ceil(v.x1)}`;
    const cell = hover ? ` · query ${hover.i} “${d0.queryLabels[hover.i] ?? ''}” → key ${hover.j} “${d0.keyLabels[hover.j] ?? ''}”` : ' · hover a cell: its value in every head';
    ctx.fillText(fitText(ctx, range + cell, L.width - 20), 16, L.headerY);
    this.datas.forEach((d, n) => {
      const c = L.cells[n];
      ctx.fillStyle = t.text;
      const value = hover ? `: ${multiValueText(d, hover.i, hover.j)}` : '';
      ctx.fillText(fitText(ctx, `H${d.head}${value}`, L.side), c.x, c.y - TITLE_H / 2);
      if (!hover) return;
      const a = pixelOf(v, L.side, L.side, hover.j, hover.i);
      const b = pixelOf(v, L.side, L.side, hover.j + 1, hover.i + 1);
      const x = Math.max(0, Math.min(L.side, a.px));
      const y = Math.max(0, Math.min(L.side, a.py));
      const w = Math.max(1, Math.min(L.side, b.px) - x);
      const h = Math.max(1, Math.min(L.side, b.py) - y);
      ctx.strokeStyle = t.dark ? '#ffffff' : '#000000';
      ctx.lineWidth = 1.5;
      ctx.strokeRect(c.x + x - 1, c.y + y - 1, w + 2, h + 2);
    });
  }

  /** Colour scale and what grey means (masked, and padding when a record is shown past its tokens). */
  paintLegend(ctx: Ctx): void {
    const L = this.layout;
    const t = this.theme;
    const y = L.legendY;
    const x = 16;
    ctx.font = FONT;
    ctx.textBaseline = 'top';
    ctx.textAlign = 'left';
    const px = new Uint8ClampedArray(256 * 4);
    px.set(RAMP.subarray(0, 1024));
    drawRaster(ctx, raster(px, 256, 1), x, y, 160, 12);
    ctx.fillStyle = t.text;
    ctx.fillText(`0 / ≤1e${LOG_MIN} … 1 (log scale)`, x, y + 15);
    const grey = nanColors(t);
    ctx.fillStyle = grey.fill;
    ctx.fillRect(x + 200, y, 14, 12);
    ctx.strokeStyle = grey.hatch;
    ctx.lineWidth = 1;
    ctx.strokeRect(x + 200.5, y + 0.5, 13, 11);
    ctx.fillStyle = t.text;
    ctx.fillText(this.datas.some(padded) ? 'masked (causal / window) or padding' : 'masked (causal / window)', x + 218, y);
  }

  /** Everything (the export): plots, legend, overlay. */
  paint(ctx: Ctx, v: Viewport, rs: readonly Rendered[], hover: {i: number; j: number} | null): void {
    ctx.fillStyle = this.theme.bg;
    ctx.fillRect(0, 0, this.layout.width, this.layout.height);
    this.paintPlots(ctx, rs);
    this.paintLegend(ctx);
    this.paintHover(ctx, v, hover);
  }
}
