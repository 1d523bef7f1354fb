// Drawing of the rollout view, DOM-free: the tokens × tokens heatmap (viridis on a √ scale), token labels,
// the bars of one query's row under it, the legend, and the hovered / pinned row's outline.
import {nanColors, sequentialRamp, VIRIDIS, type Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {drawGridImage, gridHeight, gridImage, gridWidth, outlineRow, type CellGrid} from '../../draw/grid';
import {drawLegend, rangeBucketer, type Raster} from '../../draw/heatmap';
import {columnWidth, drawTokenColumn, drawTokenRow, labelStride} from '../../draw/tokens';
import {formatValue} from '../../math';
import {fontFor} from '../common';
import type {RolloutData} from './data';

const BAR_H = 84;
const GAP = 14;
const RAMP = sequentialRamp(VIRIDIS);

export interface RolloutLayout {
  G: CellGrid;
  leftW: number;
  font: string;
  width: number;
  height: number;
}

/** Cell size so that the columns fit `total` px (cells under a pixel are allowed: drawn downsampled). */
export function rolloutLayout(d: RolloutData, total: number): RolloutLayout {
  const probeFont = fontFor(d.cols <= 128 ? 20 : 12);
  const left = columnWidth(d.rowLabels, probeFont, 40, 150);
  const avail = Math.max(200, total - left - 40);
  const cell = Math.max(0.25, Math.min(24, avail / Math.max(1, d.cols)));
  const c = cell >= 2 ? Math.floor(cell) : cell;
  const font = fontFor(Math.max(9, Math.min(20, c)));
  const leftW = columnWidth(d.rowLabels, font, 40, 150);
  const topH = Math.min(110, columnWidth(d.colLabels, font, 30, 110));
  const G = {x: leftW, y: topH + 4, cw: c, ch: c, rows: d.rows, cols: d.cols};
  const width = leftW + gridWidth(G) + 20;
  const height = G.y + gridHeight(G) + GAP + BAR_H + 62;
  return {G, leftW, font, width: Math.max(width, leftW + 340), height};
}

export class RolloutPainter {
  readonly max: number;
  private image: Raster;
  constructor(
    readonly data: RolloutData,
    readonly layout: RolloutLayout,
    public theme: Theme,
  ) {
    let mx = 0;
    const sq = new Float32Array(data.matrix.length);
    for (let i = 0; i < data.matrix.length; i++) {
      const v = data.matrix[i];
      sq[i] = Number.isNaN(v) ? NaN : Math.sqrt(Math.max(0, v));
      if (v > mx) mx = v;
    }
    this.max = mx > 0 ? mx : 1;
    this.image = gridImage(sq, data.rows, data.cols, RAMP, rangeBucketer(0, Math.sqrt(this.max)));
  }

  barTop(): number {
    return this.layout.G.y + gridHeight(this.layout.G) + GAP;
  }

  /** Heatmap, labels, legend and the resting bars (of `pinned`, else the last query). Returns cells drawn. */
  paintBase(ctx: Ctx, pinned: number | null): number {
    const d = this.data;
    const t = this.theme;
    const {G, leftW, font} = this.layout;
    const cells = drawGridImage(ctx, G, this.image, null, nanColors(t));
    const stride = labelStride(G.ch, 10);
    drawTokenColumn(ctx, d.rowLabels, {x: 0, width: leftW, align: 'right', top: G.y, rowH: G.ch, font, color: t.text}, -Infinity, Infinity, stride);
    drawTokenRow(ctx, d.colLabels, {left: G.x, colW: G.cw, bottom: G.y - 6, height: G.y - 6, font, color: t.text}, labelStride(G.cw, 10));
    const by = this.barTop();
    ctx.strokeStyle = t.border;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(G.x, by + BAR_H + 0.5);
    ctx.lineTo(G.x + gridWidth(G), by + BAR_H + 0.5);
    ctx.stroke();
    const lw = Math.min(220, Math.max(140, gridWidth(G)));
    drawLegend(ctx, RAMP, G.x, by + BAR_H + 14, lw, 10, ['0', formatValue(this.max)], t.text, '√ scale');
    ctx.fillStyle = t.muted;
    ctx.font = '11px Roboto, Arial, sans-serif';
    ctx.textAlign = 'left';
    ctx.textBaseline = 'top';
    ctx.fillText('bars: the hovered query’s row (scaled to its largest value)', G.x, by + BAR_H + 42);
    this.paintBars(ctx, pinned ?? d.rows - 1, t.muted);
    return cells;
  }

  /** The rollout of one query over the input tokens, as bars under the heatmap (scaled to the row's max). */
  paintBars(ctx: Ctx, row: number, color: string): number {
    const d = this.data;
    const G = this.layout.G;
    if (row < 0 || row >= d.rows) return 0;
    const by = this.barTop();
    let mx = 0;
    for (let j = 0; j < d.cols; j++) mx = Math.max(mx, d.matrix[row * d.cols + j]);
    if (!(mx > 0)) return 0;
    ctx.fillStyle = color;
    const w = Math.max(G.cw >= 3 ? G.cw - 1 : G.cw, 0.5);
    let n = 0;
    for (let j = 0; j < d.cols; j++) {
      const h = (BAR_H - 4) * (d.matrix[row * d.cols + j] / mx);
      if (h > 0) {
        ctx.fillRect(G.x + j * G.cw, by + BAR_H - h, w, h);
        n++;
      }
    }
    return n;
  }

  /** The hovered (or pinned) row over the base: outline, its bars in the accent colour, the hovered cell. */
  paintOverlay(ctx: Ctx, row: number, col: number): void {
    const G = this.layout.G;
    const accent = this.theme.dark ? '#ffb74d' : '#e65100';
    // cover the resting bars, then this row's
    ctx.fillStyle = this.theme.bg;
    ctx.fillRect(G.x, this.barTop(), gridWidth(G) + 1, BAR_H);
    this.paintBars(ctx, row, accent);
    outlineRow(ctx, G, row, accent, 1.5);
    if (col >= 0) {
      ctx.strokeStyle = this.theme.text;
      ctx.lineWidth = 1;
      ctx.strokeRect(G.x + col * G.cw - 0.5, G.y + row * G.ch - 0.5, G.cw + 1, G.ch + 1);
    }
  }

  /** What the readout line says about `row` (and the hovered cell), or about the resting bars. */
  describe(row: number | null, col: number): string {
    const d = this.data;
    if (row === null) return `Bars: rollout of the last query token “${d.rowLabels[d.rows - 1] ?? ''}”.`;
    const vals = Array.from({length: d.cols}, (_, j) => [j, d.matrix[row * d.cols + j]] as [number, number]);
    vals.sort((a, b) => b[1] - a[1]);
    const top = vals
      .slice(0, 5)
      .map(([j, v]) => `${d.colLabels[j]} ${formatValue(v)}`)
      .join(', ');
    let text = `Query ${row} “${d.rowLabels[row]}”: top input tokens ${top}`;
    if (col >= 0) text = `R[${row}, ${col}] (“${d.rowLabels[row]}” ← “${d.colLabels[col]}”) = ${formatValue(d.matrix[row * d.cols + col])} · ` + text;
    return text;
  }
}
