// Token columns drawn with fillText (tokens are untrusted text: never parsed as HTML), with row highlights.
import {fillTextRotated, type Ctx} from './ctx';

export interface ColumnLayout {
  /** Left edge and width of the column. */
  x: number;
  width: number;
  /** Text alignment inside the column: queries right-aligned (next to the lines), keys left-aligned. */
  align: 'left' | 'right';
  /** y of the top of row 0 and the row height. */
  top: number;
  rowH: number;
  font: string;
  color: string;
}

let measureCanvas: CanvasRenderingContext2D | null = null;

/** Width of the widest label in `font`, clamped to [min, max]. */
export function columnWidth(labels: readonly string[], font: string, min: number, max: number): number {
  if (typeof document === 'undefined') return max;
  measureCanvas ??= document.createElement('canvas').getContext('2d');
  if (!measureCanvas) return max;
  measureCanvas.font = font;
  let w = 0;
  const step = labels.length > 4096 ? Math.ceil(labels.length / 4096) : 1;
  for (let i = 0; i < labels.length; i += step) w = Math.max(w, measureCanvas.measureText(labels[i]).width);
  return Math.max(min, Math.min(max, Math.ceil(w) + 12));
}

/** Shortens `text` with an ellipsis to fit `width`. */
export function fitText(ctx: Ctx, text: string, width: number): string {
  if (ctx.measureText(text).width <= width) return text;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ctx.measureText(text.slice(0, mid) + '…').width <= width) lo = mid;
    else hi = mid - 1;
  }
  return text.slice(0, lo) + '…';
}

/** Every how many rows a label fits when rows are `rowH` px apart (labels need about `minPx`). */
export function labelStride(rowH: number, minPx = 9): number {
  return rowH >= minPx ? 1 : Math.ceil(minPx / Math.max(rowH, 1e-6));
}

/**
 * Rows of the column between y0 and y1 (content coordinates). `stride` > 1 labels every stride-th row only
 * (rows too thin for text), centred on its row.
 */
export function drawTokenColumn(ctx: Ctx, labels: readonly string[], L: ColumnLayout, y0 = -Infinity, y1 = Infinity, stride = 1): void {
  let first = Math.max(0, Math.floor((y0 - L.top) / L.rowH));
  if (stride > 1) first -= first % stride;
  const last = Math.min(labels.length - 1, Math.ceil((y1 - L.top) / L.rowH));
  ctx.font = L.font;
  ctx.fillStyle = L.color;
  ctx.textBaseline = 'middle';
  ctx.textAlign = L.align;
  const pad = 6;
  const tx = L.align === 'right' ? L.x + L.width - pad : L.x + pad;
  for (let i = first; i <= last; i += stride) {
    ctx.fillText(fitText(ctx, labels[i], L.width - pad - 2), tx, L.top + (i + 0.5) * L.rowH);
  }
}

export interface RowLayout {
  /** x of the left edge of column 0 and the column width. */
  left: number;
  colW: number;
  /** Baseline y the labels start from (they run upwards, rotated −90°) and their room. */
  bottom: number;
  height: number;
  font: string;
  color: string;
}

/** Labels over the columns of a matrix, written bottom-up (rotated −90°), every `stride`-th one. */
export function drawTokenRow(ctx: Ctx, labels: readonly string[], L: RowLayout, stride = 1): void {
  ctx.font = L.font;
  ctx.fillStyle = L.color;
  ctx.textBaseline = 'middle';
  ctx.textAlign = 'left';
  for (let j = 0; j < labels.length; j += stride) {
    fillTextRotated(ctx, fitText(ctx, labels[j], L.height - 4), L.left + (j + 0.5) * L.colW, L.bottom, -90);
  }
}

/** Background of one row of a column. */
export function highlightRow(ctx: Ctx, L: ColumnLayout, i: number, color: string, alpha = 1): void {
  ctx.globalAlpha = alpha;
  ctx.fillStyle = color;
  ctx.fillRect(L.x, L.top + i * L.rowH, L.width, L.rowH);
  ctx.globalAlpha = 1;
}

/** Row index at content y, or -1. */
export function rowAt(L: ColumnLayout, n: number, y: number): number {
  const i = Math.floor((y - L.top) / L.rowH);
  return i >= 0 && i < n ? i : -1;
}
