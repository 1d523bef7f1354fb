// Attention rollout (Abnar & Zuidema 2020): a tokens × tokens heatmap of how much each input token (column)
// contributes to each position (row) after the last layer, following attention through the residual stream,
// with the residual weight and the head fusion as controls. Hovering a row draws that query's rollout over
// the input tokens as bars under the heatmap (click pins the row). Knows nothing about HTTP.
import {CanvasStack} from '../draw/canvas';
import {nanColors, sequentialRamp, VIRIDIS, type Theme} from '../draw/colors';
import type {Ctx} from '../draw/ctx';
import {cellAt, drawGridImage, gridHeight, gridImage, gridWidth, outlineRow, type CellGrid} from '../draw/grid';
import {drawLegend, rangeBucketer} from '../draw/heatmap';
import {columnWidth, drawTokenColumn, drawTokenRow, labelStride} from '../draw/tokens';
import {formatValue} from '../training';
import {FUSIONS, type Fusion} from '../types';
import {clear, el, fontFor, type ViewBase} from './common';

export interface RolloutData {
  rowLabels: string[];
  colLabels: string[];
  rows: number;
  cols: number;
  /** rows × cols, row-major. */
  matrix: Float32Array;
  /** Tokens the rollout was computed over. */
  n: number;
  residual: number;
  fusion: Fusion;
  notes: string[];
}

export interface RolloutViewOptions {
  theme: Theme;
  residual: number;
  fusion: Fusion;
  onResidual?: (r: number) => void;
  onFusion?: (f: Fusion) => void;
}

export const ROLLOUT_HELP =
  'Rollout R = Â_L ··· Â_1 with Â_l = residual·I + (1 − residual)·A_l, A_l the heads of layer l fused by mean / max / min, rows renormalised to sum to 1 (Abnar & Zuidema 2020; residual 0.5 is the paper’s). R[i, j]: how much input token j contributes to position i after the last layer. Colour: √ scale.';

const BAR_H = 84;
const GAP = 14;
const RAMP = sequentialRamp(VIRIDIS);

export class RolloutView implements ViewBase {
  readonly el: HTMLElement;
  private theme: Theme;
  private data: RolloutData | null = null;
  private stack: CanvasStack;
  private toolbar: HTMLElement;
  private notesEl: HTMLElement;
  private readout: HTMLElement;
  private residualInput: HTMLInputElement;
  private residualLabel: HTMLElement;
  private fusionSel: HTMLSelectElement;
  private G: CellGrid = {x: 0, y: 0, cw: 20, ch: 20, rows: 0, cols: 0};
  private leftW = 80;
  private image: HTMLCanvasElement | null = null;
  private max = 1;
  private hover: {row: number; col: number} | null = null;
  private pinned: number | null = null;
  private font = fontFor(20);

  constructor(private opts: RolloutViewOptions) {
    this.theme = opts.theme;
    this.stack = new CanvasStack(2, () => this.draw());
    this.stack.root.setAttribute('data-testid', 'rollout-canvas');
    this.residualInput = el('input', {type: 'range', min: 0, max: 1, step: 0.05, value: opts.residual, 'data-testid': 'rollout-residual', title: 'Residual weight: Â = residual·I + (1 − residual)·A'});
    this.residualLabel = el('span', {class: 'step-label', 'data-testid': 'rollout-residual-value', text: opts.residual.toFixed(2)});
    this.fusionSel = el('select', {'data-testid': 'rollout-fusion', title: 'How the heads of a layer are fused'});
    for (const f of FUSIONS) this.fusionSel.appendChild(el('option', {value: f, text: f}));
    this.fusionSel.value = opts.fusion;
    this.residualInput.addEventListener('input', () => (this.residualLabel.textContent = Number(this.residualInput.value).toFixed(2)));
    this.residualInput.addEventListener('change', () => this.opts.onResidual?.(Math.round(Number(this.residualInput.value) * 100) / 100));
    this.fusionSel.addEventListener('change', () => this.opts.onFusion?.(this.fusionSel.value as Fusion));
    this.toolbar = el(
      'div',
      {class: 'view-toolbar'},
      el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'Residual'}), this.residualInput, this.residualLabel),
      el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'Head fusion'}), this.fusionSel),
      el('span', {class: 'hint', text: 'Hover a row (query token) for its rollout over the input tokens; click to pin it.'}),
    );
    this.notesEl = el('div', {class: 'notes', 'data-testid': 'rollout-notes'});
    this.readout = el('div', {class: 'readout', 'data-testid': 'rollout-readout'});
    this.el = el(
      'div',
      {class: 'rollout-view', 'data-testid': 'rollout-view'},
      this.toolbar,
      el('div', {class: 'legend', 'data-testid': 'rollout-help', title: ROLLOUT_HELP, text: ROLLOUT_HELP}),
      this.notesEl,
      this.readout,
      this.stack.root,
    );
    const top = this.stack.top;
    top.addEventListener('mousemove', (e) => this.onMove(e));
    top.addEventListener('mouseleave', () => this.setHover(null));
    top.addEventListener('click', (e) => this.onClick(e));
  }

  setTheme(t: Theme): void {
    this.theme = t;
    this.draw();
  }

  setData(d: RolloutData): void {
    const same = this.data && this.data.rows === d.rows && this.data.cols === d.cols;
    this.data = d;
    if (!same) {
      this.pinned = null;
      this.hover = null;
    }
    this.residualInput.value = String(d.residual);
    this.residualLabel.textContent = d.residual.toFixed(2);
    this.fusionSel.value = d.fusion;
    clear(this.notesEl);
    for (const n of d.notes) this.notesEl.appendChild(el('div', {class: 'note', text: n}));
    let mx = 0;
    const sq = new Float32Array(d.matrix.length);
    for (let i = 0; i < d.matrix.length; i++) {
      const v = d.matrix[i];
      sq[i] = Number.isNaN(v) ? NaN : Math.sqrt(Math.max(0, v));
      if (v > mx) mx = v;
    }
    this.max = mx > 0 ? mx : 1;
    this.image = gridImage(sq, d.rows, d.cols, RAMP, rangeBucketer(0, Math.sqrt(this.max)));
    this.layout();
    this.draw();
  }

  dispose(): void {
    this.stack.dispose();
  }

  private layout(): void {
    const d = this.data!;
    const total = (this.el.closest('.panes') as HTMLElement | null)?.clientWidth || document.documentElement.clientWidth || 1000;
    const probeFont = fontFor(d.cols <= 128 ? 20 : 12);
    const left = columnWidth(d.rowLabels, probeFont, 40, 150);
    const avail = Math.max(200, total - left - 40);
    const cell = Math.max(0.25, Math.min(24, avail / Math.max(1, d.cols)));
    const c = cell >= 2 ? Math.floor(cell) : cell;
    this.font = fontFor(Math.max(9, Math.min(20, c)));
    this.leftW = columnWidth(d.rowLabels, this.font, 40, 150);
    const topH = Math.min(110, columnWidth(d.colLabels, this.font, 30, 110));
    this.G = {x: this.leftW, y: topH + 4, cw: c, ch: c, rows: d.rows, cols: d.cols};
    const width = this.leftW + gridWidth(this.G) + 20;
    const height = this.G.y + gridHeight(this.G) + GAP + BAR_H + 62;
    this.stack.resize(Math.max(width, this.leftW + 340), height);
    const ds = this.stack.root.dataset;
    ds.rows = String(d.rows);
    ds.cols = String(d.cols);
    ds.left = String(this.G.x);
    ds.top = String(this.G.y);
    ds.cell = String(c);
  }

  exportSize(): {width: number; height: number} {
    return {width: this.stack.width, height: this.stack.height};
  }

  private barTop(): number {
    return this.G.y + gridHeight(this.G) + GAP;
  }

  private draw(): void {
    if (!this.data || !this.image) return;
    const cells = this.paintBase(this.stack.ctx(0));
    this.stack.root.dataset.cells = String(cells);
    this.el.dataset.cells = String(cells);
    this.drawOverlay();
  }

  private paintBase(ctx: Ctx): number {
    const d = this.data!;
    const t = this.theme;
    const cells = drawGridImage(ctx, this.G, this.image!, null, nanColors(t));
    const stride = labelStride(this.G.ch, 10);
    drawTokenColumn(ctx, d.rowLabels, {x: 0, width: this.leftW, align: 'right', top: this.G.y, rowH: this.G.ch, font: this.font, color: t.text}, -Infinity, Infinity, stride);
    drawTokenRow(ctx, d.colLabels, {left: this.G.x, colW: this.G.cw, bottom: this.G.y - 6, height: this.G.y - 6, font: this.font, color: t.text}, labelStride(this.G.cw, 10));
    const by = this.barTop();
    ctx.strokeStyle = t.border;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(this.G.x, by + BAR_H + 0.5);
    ctx.lineTo(this.G.x + gridWidth(this.G), by + BAR_H + 0.5);
    ctx.stroke();
    const lw = Math.min(220, Math.max(140, gridWidth(this.G)));
    drawLegend(ctx, RAMP, this.G.x, by + BAR_H + 14, lw, 10, ['0', formatValue(this.max)], t.text, '√ scale');
    ctx.fillStyle = t.muted;
    ctx.font = '11px Roboto, Arial, sans-serif';
    ctx.textAlign = 'left';
    ctx.textBaseline = 'top';
    ctx.fillText('bars: the hovered query’s row (scaled to its largest value)', this.G.x, by + BAR_H + 42);
    this.paintBars(ctx, this.pinned ?? d.rows - 1, t.muted);
    return cells;
  }

  /** The rollout of one query over the input tokens, as bars under the heatmap (scaled to the row's max). */
  private paintBars(ctx: Ctx, row: number, color: string): void {
    const d = this.data!;
    if (row < 0 || row >= d.rows) return;
    const by = this.barTop();
    let mx = 0;
    for (let j = 0; j < d.cols; j++) mx = Math.max(mx, d.matrix[row * d.cols + j]);
    if (!(mx > 0)) return;
    ctx.fillStyle = color;
    const w = Math.max(this.G.cw >= 3 ? this.G.cw - 1 : this.G.cw, 0.5);
    for (let j = 0; j < d.cols; j++) {
      const h = (BAR_H - 4) * (d.matrix[row * d.cols + j] / mx);
      if (h > 0) ctx.fillRect(this.G.x + j * this.G.cw, by + BAR_H - h, w, h);
    }
  }

  paint(ctx: Ctx): void {
    if (!this.data) return;
    this.paintBase(ctx);
  }

  private drawOverlay(): void {
    const ctx = this.stack.ctx(1);
    const d = this.data;
    const ds = this.stack.root.dataset;
    if (!d) return;
    const row = this.hover?.row ?? this.pinned;
    ds.hover = this.hover ? String(this.hover.row) : '';
    ds.pinned = this.pinned === null ? '' : String(this.pinned);
    if (row === null || row === undefined) {
      this.readout.textContent = `Bars: rollout of the last query token “${d.rowLabels[d.rows - 1] ?? ''}”.`;
      return;
    }
    const accent = this.theme.dark ? '#ffb74d' : '#e65100';
    // cover the resting bars, then this row's
    ctx.fillStyle = this.theme.bg;
    ctx.fillRect(this.G.x, this.barTop(), gridWidth(this.G) + 1, BAR_H);
    this.paintBars(ctx, row, accent);
    outlineRow(ctx, this.G, row, accent, 1.5);
    if (this.hover && this.hover.col >= 0) {
      ctx.strokeStyle = this.theme.text;
      ctx.lineWidth = 1;
      ctx.strokeRect(this.G.x + this.hover.col * this.G.cw - 0.5, this.G.y + row * this.G.ch - 0.5, this.G.cw + 1, this.G.ch + 1);
    }
    const vals = Array.from({length: d.cols}, (_, j) => [j, d.matrix[row * d.cols + j]] as [number, number]);
    vals.sort((a, b) => b[1] - a[1]);
    const top = vals
      .slice(0, 5)
      .map(([j, v]) => `${d.colLabels[j]} ${formatValue(v)}`)
      .join(', ');
    let text = `Query ${row} “${d.rowLabels[row]}”: top input tokens ${top}`;
    if (this.hover && this.hover.col >= 0) text = `R[${row}, ${this.hover.col}] (“${d.rowLabels[row]}” ← “${d.colLabels[this.hover.col]}”) = ${formatValue(d.matrix[row * d.cols + this.hover.col])} · ` + text;
    this.readout.textContent = text;
    this.stack.top.title = text;
  }

  private setHover(h: {row: number; col: number} | null): void {
    if (h?.row === this.hover?.row && h?.col === this.hover?.col) return;
    this.hover = h;
    this.drawOverlay();
  }

  private onMove(e: MouseEvent): void {
    const p = this.stack.toContent(e);
    const c = cellAt(this.G, p.x, p.y);
    if (c) {
      this.setHover(c);
      return;
    }
    // the label column: the row without a key
    const inLabels = p.x >= 0 && p.x < this.G.x && p.y >= this.G.y && p.y < this.G.y + gridHeight(this.G);
    this.setHover(inLabels ? {row: Math.floor((p.y - this.G.y) / this.G.ch), col: -1} : null);
  }

  private onClick(e: MouseEvent): void {
    const p = this.stack.toContent(e);
    if (p.y < this.G.y || p.y >= this.G.y + gridHeight(this.G)) return;
    const row = Math.floor((p.y - this.G.y) / this.G.ch);
    this.pinned = this.pinned === row ? null : row;
    this.draw();
  }
}
