// Drawing of the neuron view, DOM-free: token columns, q and k as coloured cells (blue +, orange −, opacity
// tanh(|v|/4)), and for the selected query its lines, q ⊙ k, the scores and the recomputed softmax beside
// the stored attention (outlined). Collapsed (or without q/k): the head's attention lines.
import {alphaRamp, hexToRgb, type Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {drawHeatmap, paintSignedCells, raster, type Bucketer, type Raster} from '../../draw/heatmap';
import {collectLines, drawLines} from '../../draw/lines';
import {columnWidth, drawTokenColumn, highlightRow, type ColumnLayout} from '../../draw/tokens';
import {maxAbsDiff, recompute, type Recomputed} from '../../math';
import {fontFor, rowHeightFor} from '../common';
import type {NeuronData} from './data';

export const HEAD = 44;
const tanhBucket: Bucketer = (v) => Math.round(255 * Math.tanh(Math.abs(v) / 4));

export interface NeuronLayout {
  L: ColumnLayout;
  Rt: ColumnLayout;
  /** x of the q, k, q ⊙ k, q · k and softmax columns, and the width of a vector column. */
  x: {q: number; k: number; p: number; dot: number; soft: number; mw: number};
  rows: number;
  cols: number;
  expanded: boolean;
  width: number;
  height: number;
}

/** Expanded (q, k, products, scores) when q/k are there and the view is not collapsed. */
export function neuronLayout(d: NeuronData, theme: Theme, collapsed: boolean): NeuronLayout {
  const rows = d.queryLabels.length;
  const cols = d.keyLabels.length;
  const rowH = Math.max(rowHeightFor(Math.max(rows, cols)), 14);
  const font = fontFor(rowH);
  const lw = columnWidth(d.queryLabels, font, 60, 160);
  const rw = columnWidth(d.keyLabels, font, 60, 160);
  const L: ColumnLayout = {x: 0, width: lw, align: 'right', top: HEAD, rowH, font, color: theme.text};
  const expanded = !collapsed && !!d.qk;
  let x = {q: 0, k: 0, p: 0, dot: 0, soft: 0, mw: 0};
  let rx = lw + 200;
  if (expanded) {
    const mw = Math.max(120, Math.min(320, d.qk!.d * 3));
    const q = lw + 24;
    const k = q + mw + 44;
    const p = k + mw + 24;
    const dot = p + mw + 20;
    const soft = dot + rowH + 14;
    x = {q, k, p, dot, soft, mw};
    rx = soft + 84;
  }
  const Rt: ColumnLayout = {x: rx, width: rw, align: 'left', top: HEAD, rowH, font, color: theme.text};
  return {L, Rt, x, rows, cols, expanded, width: rx + rw, height: HEAD + Math.max(rows, cols) * rowH + 8};
}

export class NeuronPainter {
  private qImg: Raster | null = null;
  private kImg: Raster | null = null;
  private rec: {row: number; r: Recomputed; img: Raster} | null = null;
  constructor(
    readonly data: NeuronData,
    readonly layout: NeuronLayout,
    private theme: Theme,
  ) {}

  setTheme(t: Theme): void {
    this.theme = t;
    this.qImg = this.kImg = null;
    this.rec = null;
  }

  private vectorImage(src: Float32Array, idx: Int32Array, dim: number): Raster {
    const vals = new Float32Array(idx.length * dim);
    for (let r = 0; r < idx.length; r++) vals.set(src.subarray(idx[r] * dim, (idx[r] + 1) * dim), r * dim);
    return this.cellsImage(vals, idx.length, dim);
  }

  private cellsImage(vals: Float32Array, rows: number, cols: number): Raster {
    const t = this.theme;
    return raster(paintSignedCells(vals, rows, cols, alphaRamp(hexToRgb(t.pos)), alphaRamp(hexToRgb(t.neg)), tanhBucket), cols, rows);
  }

  /** Tokens, titles, q and k. */
  paintStatic(ctx: Ctx, y0 = -Infinity, y1 = Infinity): void {
    const d = this.data;
    const t = this.theme;
    const {L, Rt, rows, cols} = this.layout;
    L.color = Rt.color = t.text;
    drawTokenColumn(ctx, d.queryLabels, L, y0, y1);
    drawTokenColumn(ctx, d.keyLabels, Rt, y0, y1);
    ctx.fillStyle = t.text;
    ctx.font = 'bold 13px Roboto, Arial, sans-serif';
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'left';
    ctx.fillText(`Layer ${d.layer}, Head ${d.head}`, 4, 12);
    ctx.textAlign = 'center';
    if (!this.layout.expanded) return;
    const qk = d.qk!;
    const {q, k, p, dot, soft, mw} = this.layout.x;
    const rowH = L.rowH;
    ctx.fillText('Query q', q + mw / 2, 30);
    ctx.fillText('Key k', k + mw / 2, 30);
    ctx.fillText('q × k (elementwise)', p + mw / 2, 30);
    ctx.fillText('q · k', dot + rowH / 2, 30);
    ctx.textAlign = 'left';
    ctx.fillText('Softmax', soft, 30);
    this.qImg ??= this.vectorImage(qk.queries, d.rowIdx, qk.d);
    this.kImg ??= this.vectorImage(qk.keys, d.colIdx, qk.d);
    drawHeatmap(ctx, this.qImg, q, HEAD, mw, rows * rowH);
    drawHeatmap(ctx, this.kImg, k, HEAD, mw, cols * rowH);
    // row separators so vectors read as rows (as BertViz's boxes)
    if (rowH >= 12) {
      ctx.fillStyle = t.bg;
      for (let r = 1; r < Math.max(rows, cols); r++) {
        const y = HEAD + r * rowH - 1;
        if (y < y0 || y > y1) continue;
        if (r < rows) ctx.fillRect(q, y, mw, 2);
        if (r < cols) ctx.fillRect(k, y, mw, 2);
      }
    }
  }

  /**
   * What depends on the selected query `sel` (null: none): lines, products, scores and softmax bars.
   * Returns the lines drawn and, expanded, max |recomputed softmax − stored attention| over the row.
   */
  paintDynamic(ctx: Ctx, sel: number | null, y0 = -Infinity, y1 = Infinity): {lines: number; maxDiff: number | null} {
    const d = this.data;
    const t = this.theme;
    const {L, Rt, rows, cols, expanded} = this.layout;
    const rowH = L.rowH;
    const yOf = (i: number) => HEAD + (i + 0.5) * rowH;
    const attnRow = (r: number, c: number) => d.attention[d.rowIdx[r] * d.k + d.colIdx[c]];
    if (sel === null) {
      if (expanded) {
        ctx.fillStyle = t.muted;
        ctx.font = '16px Roboto, Arial, sans-serif';
        ctx.textAlign = 'left';
        ctx.textBaseline = 'middle';
        ctx.fillText('No token selected', this.layout.x.p + 10, HEAD + 20);
        return {lines: 0, maxDiff: null};
      }
      // collapsed at rest: all lines of the head
      const m = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) m[r * cols + c] = attnRow(r, c);
      ctx.lineWidth = rowH >= 14 ? 2 : 1;
      const n = drawLines(ctx, collectLines(m, rows, cols, {scale: 1}), t.attn, {x1: L.width, x2: Rt.x, rowY: yOf, colY: yOf}, y0, y1);
      return {lines: n, maxDiff: null};
    }
    highlightRow(ctx, L, sel, t.highlight);
    // keys highlighted by the stored attention (BertViz)
    for (let c = 0; c < cols; c++) {
      const a = attnRow(sel, c);
      if (a * 255 < 0.5) continue;
      highlightRow(ctx, Rt, c, t.attn, Math.min(1, a) * 0.6);
    }
    const row = new Float32Array(cols);
    for (let c = 0; c < cols; c++) row[c] = attnRow(sel, c);
    ctx.lineWidth = 2;
    if (!expanded) {
      const n = drawLines(ctx, collectLines(row, 1, cols, {scale: 1}), t.attn, {x1: L.width, x2: Rt.x, rowY: () => yOf(sel), colY: yOf}, y0, y1);
      return {lines: n, maxDiff: null};
    }
    const qk = d.qk!;
    const {q, k, p, dot, soft, mw} = this.layout.x;
    // the selected query vector's box, and lines from it to the keys (opacity tanh(1.8 · attention))
    ctx.strokeStyle = t.attn;
    ctx.strokeRect(q - 1, HEAD + sel * rowH - 1, mw + 2, rowH);
    const shaped = row.map((a) => Math.tanh(1.8 * a));
    const lines = drawLines(ctx, collectLines(shaped, 1, cols, {scale: 1}), t.attn, {x1: q + mw + 2, x2: k - 2, rowY: () => yOf(sel), colY: yOf}, y0, y1);
    const origRow = d.rowIdx[sel];
    if (!this.rec || this.rec.row !== origRow) {
      const r = recompute(qk.queries, qk.keys, qk.d, origRow, d.info, d.selfAttention);
      const shown = new Float32Array(cols * qk.d);
      // masked keys (after the query when causal) show no product, as BertViz
      for (let c = 0; c < cols; c++) if (!r.masked[d.colIdx[c]]) shown.set(r.products.subarray(d.colIdx[c] * qk.d, (d.colIdx[c] + 1) * qk.d), c * qk.d);
      this.rec = {row: origRow, r, img: this.cellsImage(shown, cols, qk.d)};
    }
    const {r, img} = this.rec;
    drawHeatmap(ctx, img, p, HEAD, mw, cols * rowH);
    const stored = new Float32Array(cols);
    const probs = new Float32Array(cols);
    const first = Math.max(0, Math.floor((y0 - HEAD) / rowH));
    const last = Math.min(cols - 1, Math.ceil((y1 - HEAD) / rowH));
    for (let c = 0; c < cols; c++) {
      const j = d.colIdx[c];
      stored[c] = row[c];
      probs[c] = r.probs[j];
      if (c < first || c > last) continue;
      const y = HEAD + c * rowH + 1;
      const s = r.scores[j];
      const box = rowH - 3;
      if (r.masked[j]) {
        ctx.strokeStyle = t.muted;
        ctx.lineWidth = 1;
        ctx.strokeRect(dot + 0.5, y + 0.5, box - 1, box - 1);
        ctx.beginPath();
        ctx.moveTo(dot + 2, y + 2);
        ctx.lineTo(dot + box - 2, y + box - 2);
        ctx.stroke();
      } else {
        ctx.globalAlpha = Math.tanh(Math.abs(s) / 4);
        ctx.fillStyle = s >= 0 ? t.pos : t.neg;
        ctx.fillRect(dot, y, box, box);
        ctx.globalAlpha = 1;
      }
      ctx.fillStyle = t.attn;
      ctx.fillRect(soft, y + 1, Math.max(1, probs[c] * 70), box - 2);
      ctx.strokeStyle = t.text;
      ctx.lineWidth = 1;
      ctx.strokeRect(soft + 0.5, y + 0.5, Math.max(1, stored[c] * 70), box - 1);
    }
    return {lines, maxDiff: maxAbsDiff(probs, stored)};
  }

  /** Everything (the export): the selected query's part under the static part. */
  paint(ctx: Ctx, sel: number | null): void {
    this.paintDynamic(ctx, sel);
    this.paintStatic(ctx);
  }
}
