// Neuron view (BertViz's neuron view): for one layer and head, how attention is computed from the query and
// key vectors. Hover a query token (click to pin it): its query vector q, every key vector k, the
// elementwise q × k, the scaled dot product and the softmax (recomputed from q/k, causal / sliding-window
// masks applied), next to the stored attention. Positive values in one colour, negative in the other, with
// opacity tanh(|v| / 4). Collapsed, it shows the head's attention lines only.
import {CanvasStack} from '../draw/canvas';
import {alphaRamp, hexToRgb, type Theme} from '../draw/colors';
import type {Ctx} from '../draw/ctx';
import {drawHeatmap, paintSignedCells, pixelsToCanvas, type Bucketer} from '../draw/heatmap';
import {collectLines, drawLines} from '../draw/lines';
import {columnWidth, drawTokenColumn, highlightRow, rowAt, type ColumnLayout} from '../draw/tokens';
import {maxAbsDiff, recompute, type Recomputed} from '../math';
import type {QK, ResolvedLayerInfo} from '../types';
import {el, fontFor, rowHeightFor, type ViewBase} from './common';

export interface NeuronData {
  layer: number;
  head: number;
  nHeads: number;
  /** Shown rows (queries) and columns (keys): labels and their indices in the full sequences. */
  queryLabels: string[];
  keyLabels: string[];
  rowIdx: Int32Array;
  colIdx: Int32Array;
  /** Stored attention of this head over the full sequences: (q × k). */
  attention: Float32Array;
  q: number;
  k: number;
  qk: QK | null;
  info: ResolvedLayerInfo;
  selfAttention: boolean;
  /** Set when q/k are not available at this step. */
  missing?: {message: string; nearestStep: number | null};
  /** Extra notes (e.g. that word merging does not apply here). */
  notes?: string[];
}

export interface NeuronViewOptions {
  theme: Theme;
  collapsed: boolean;
  query: number | null;
  onPin?: (row: number | null) => void;
  onCollapsed?: (c: boolean) => void;
  onGoToStep?: (step: number) => void;
}

const HEAD = 44;
const tanhBucket: Bucketer = (v) => Math.round(255 * Math.tanh(Math.abs(v) / 4));

export class NeuronView implements ViewBase {
  readonly el: HTMLElement;
  private bar: HTMLElement;
  private notesEl: HTMLElement;
  private stack: CanvasStack;
  private data: NeuronData | null = null;
  private theme: Theme;
  private collapsed: boolean;
  private pinned: number | null;
  private hover: number | null = null;
  private L!: ColumnLayout;
  private Rt!: ColumnLayout;
  private x = {q: 0, k: 0, p: 0, dot: 0, soft: 0, mw: 0};
  private rowsN = 0;
  private colsN = 0;
  private qImg: HTMLCanvasElement | null = null;
  private kImg: HTMLCanvasElement | null = null;
  private rec: {row: number; r: Recomputed; img: HTMLCanvasElement} | null = null;

  constructor(private opts: NeuronViewOptions) {
    this.theme = opts.theme;
    this.collapsed = opts.collapsed;
    this.pinned = opts.query;
    this.stack = new CanvasStack(2, () => this.drawAll());
    this.bar = el('div', {class: 'view-toolbar'});
    this.notesEl = el('div', {class: 'notes', 'data-testid': 'neuron-notes'});
    this.el = el('div', {class: 'neuron-view', 'data-testid': 'neuron-view'}, this.bar, this.notesEl, this.stack.root);
    const top = this.stack.top;
    top.addEventListener('mousemove', (e) => this.onMove(e));
    top.addEventListener('mouseleave', () => this.setHover(null));
    top.addEventListener('click', (e) => this.onClick(e));
  }

  setTheme(t: Theme): void {
    this.theme = t;
    this.qImg = this.kImg = null;
    this.rec = null;
    this.drawAll();
  }

  setData(d: NeuronData): void {
    this.data = d;
    this.qImg = this.kImg = null;
    this.rec = null;
    this.hover = null;
    if (this.pinned !== null && this.pinned >= d.queryLabels.length) this.pinned = null;
    this.renderBar();
    this.renderNotes();
    this.layout();
    this.drawAll();
  }

  dispose(): void {
    this.stack.dispose();
  }

  private get expanded(): boolean {
    return !this.collapsed && !!this.data?.qk;
  }

  private renderBar(): void {
    const b = this.bar;
    while (b.firstChild) b.removeChild(b.firstChild);
    const btn = el('button', {
      type: 'button',
      'data-testid': 'neuron-toggle',
      text: this.collapsed ? 'Expand: show q, k, q × k, q · k, softmax' : 'Collapse: attention lines only',
    });
    btn.addEventListener('click', () => {
      this.collapsed = !this.collapsed;
      this.opts.onCollapsed?.(this.collapsed);
      this.renderBar();
      this.layout();
      this.drawAll();
    });
    b.appendChild(btn);
    b.appendChild(el('span', {class: 'hint', text: 'Hover a query token on the left; click to pin it.'}));
  }

  private renderNotes(): void {
    const d = this.data!;
    const n = this.notesEl;
    while (n.firstChild) n.removeChild(n.firstChild);
    const info = d.info;
    const add = (text: string, cls = 'note', testid?: string) => n.appendChild(el('div', {class: cls, text, 'data-testid': testid}));
    if (d.missing) {
      const box = el('div', {class: 'note warn', 'data-testid': 'qk-missing'}, d.missing.message + ' ');
      if (d.missing.nearestStep !== null) {
        const go = el('button', {type: 'button', 'data-testid': 'qk-nearest', text: `Go to step ${d.missing.nearestStep}`});
        const s = d.missing.nearestStep;
        go.addEventListener('click', () => this.opts.onGoToStep?.(s));
        box.appendChild(go);
      }
      n.appendChild(box);
    }
    if (info.position_bias || info.softcap != null) {
      const what = [info.position_bias ? 'a position bias' : '', info.softcap != null ? `a softcap of ${info.softcap}` : ''].filter(Boolean).join(' and ');
      add(
        `This layer adds ${what} to its attention scores. The scores and softmax here are recomputed from q and k before that (pre-bias / pre-softcap), so they may differ from the stored attention.`,
        'note warn',
        'neuron-bias-note',
      );
    }
    const masks = [info.causal && d.selfAttention ? 'causal mask' : '', info.sliding_window != null && d.selfAttention ? `sliding window of ${info.sliding_window} (keys i − j < ${info.sliding_window})` : '']
      .filter(Boolean)
      .join(', ');
    add(`Scores = q · k × ${fmt(info.scaling)}${masks ? `; ${masks} applied` : ''}. Filled bars: recomputed softmax; outlined: stored attention.`, 'note');
    if (info.assumed.length) {
      add(
        `The record does not give this layer's ${info.assumed.join(' or ')}: assumed ${info.assumed.includes('scaling') ? '1/√d scaling' : ''}${info.assumed.length > 1 ? ' and ' : ''}${info.assumed.includes('causal') ? (info.causal ? 'a causal mask' : 'no causal mask') : ''}; the recomputed softmax may differ from the stored attention.`,
        'note warn',
        'neuron-assumed-note',
      );
    }
    for (const t of d.notes ?? []) add(t);
  }

  private layout(): void {
    const d = this.data!;
    this.rowsN = d.queryLabels.length;
    this.colsN = d.keyLabels.length;
    const n = Math.max(this.rowsN, this.colsN);
    const rowH = Math.max(rowHeightFor(n), 14);
    const font = fontFor(rowH);
    const lw = columnWidth(d.queryLabels, font, 60, 160);
    const rw = columnWidth(d.keyLabels, font, 60, 160);
    this.L = {x: 0, width: lw, align: 'right', top: HEAD, rowH, font, color: this.theme.text};
    let width: number;
    if (this.expanded) {
      const dim = d.qk!.d;
      const mw = Math.max(120, Math.min(320, dim * 3));
      const q = lw + 24;
      const k = q + mw + 44;
      const p = k + mw + 24;
      const dot = p + mw + 20;
      const soft = dot + rowH + 14;
      this.x = {q, k, p, dot, soft, mw};
      this.Rt = {x: soft + 84, width: rw, align: 'left', top: HEAD, rowH, font, color: this.theme.text};
      width = this.Rt.x + rw;
    } else {
      this.Rt = {x: lw + 200, width: rw, align: 'left', top: HEAD, rowH, font, color: this.theme.text};
      width = this.Rt.x + rw;
    }
    this.stack.resize(width, HEAD + n * rowH + 8);
    const ds = this.el.dataset;
    ds.rows = String(this.rowsN);
    ds.cols = String(this.colsN);
    ds.rowHeight = String(rowH);
    ds.top = String(HEAD);
    ds.leftX = String(Math.round(lw / 2));
    ds.expanded = this.expanded ? '1' : '0';
  }

  exportSize(): {width: number; height: number} {
    return {width: this.stack.width, height: this.stack.height};
  }

  private selected(): number | null {
    return this.hover ?? this.pinned;
  }

  private setHover(r: number | null): void {
    if (r === this.hover) return;
    this.hover = r;
    this.drawDynamic();
  }

  private onMove(e: MouseEvent): void {
    if (!this.data) return;
    const {x, y} = this.stack.toContent(e);
    const r = x < this.L.width ? rowAt(this.L, this.rowsN, y) : -1;
    this.setHover(r >= 0 ? r : null);
  }

  private onClick(e: MouseEvent): void {
    if (!this.data) return;
    const {x, y} = this.stack.toContent(e);
    const r = x < this.L.width ? rowAt(this.L, this.rowsN, y) : -1;
    if (r < 0) return;
    this.pinned = this.pinned === r ? null : r;
    this.opts.onPin?.(this.pinned);
    this.drawDynamic();
  }

  private drawAll(): void {
    if (!this.data) return;
    // static (tokens, q and k) on top, so highlights drawn below never cover the text
    const ctx = this.stack.ctx(1);
    this.paintStatic(ctx, this.stack.y0, this.stack.y1);
    this.drawDynamic();
  }

  private drawDynamic(): void {
    if (!this.data) return;
    const ctx = this.stack.ctx(0);
    const sel = this.selected();
    this.el.dataset.selected = sel === null ? '' : String(sel);
    this.paintDynamic(ctx, sel, this.stack.y0, this.stack.y1);
  }

  paint(ctx: Ctx): void {
    if (!this.data) return;
    this.paintDynamic(ctx, this.selected(), -Infinity, Infinity);
    this.paintStatic(ctx, -Infinity, Infinity);
  }

  private vectorImage(src: Float32Array, idx: Int32Array, dim: number): HTMLCanvasElement {
    const vals = new Float32Array(idx.length * dim);
    for (let r = 0; r < idx.length; r++) vals.set(src.subarray(idx[r] * dim, (idx[r] + 1) * dim), r * dim);
    return this.cellsImage(vals, idx.length, dim);
  }

  private cellsImage(vals: Float32Array, rows: number, cols: number): HTMLCanvasElement {
    const t = this.theme;
    return pixelsToCanvas(paintSignedCells(vals, rows, cols, alphaRamp(hexToRgb(t.pos)), alphaRamp(hexToRgb(t.neg)), tanhBucket), cols, rows);
  }

  private paintStatic(ctx: Ctx, y0: number, y1: number): void {
    const d = this.data!;
    const t = this.theme;
    this.L.color = this.Rt.color = t.text;
    drawTokenColumn(ctx, d.queryLabels, this.L, y0, y1);
    drawTokenColumn(ctx, d.keyLabels, this.Rt, y0, y1);
    ctx.fillStyle = t.text;
    ctx.font = 'bold 13px Roboto, Arial, sans-serif';
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'left';
    ctx.fillText(`Layer ${d.layer}, Head ${d.head}`, 4, 12);
    ctx.textAlign = 'center';
    if (!this.expanded) return;
    const qk = d.qk!;
    const {q, k, p, dot, soft, mw} = this.x;
    const rowH = this.L.rowH;
    ctx.fillText('Query q', q + mw / 2, 30);
    ctx.fillText('Key k', k + mw / 2, 30);
    ctx.fillText('q × k (elementwise)', p + mw / 2, 30);
    ctx.fillText('q · k', dot + rowH / 2, 30);
    ctx.textAlign = 'left';
    ctx.fillText('Softmax', soft, 30);
    this.qImg ??= this.vectorImage(qk.queries, d.rowIdx, qk.d);
    this.kImg ??= this.vectorImage(qk.keys, d.colIdx, qk.d);
    drawHeatmap(ctx, this.qImg, q, HEAD, mw, this.rowsN * rowH);
    drawHeatmap(ctx, this.kImg, k, HEAD, mw, this.colsN * rowH);
    // row separators so vectors read as rows (as BertViz's boxes)
    if (rowH >= 12) {
      ctx.fillStyle = t.bg;
      for (let r = 1; r < Math.max(this.rowsN, this.colsN); r++) {
        const y = HEAD + r * rowH - 1;
        if (y < y0 || y > y1) continue;
        if (r < this.rowsN) ctx.fillRect(q, y, mw, 2);
        if (r < this.colsN) ctx.fillRect(k, y, mw, 2);
      }
    }
  }

  private paintDynamic(ctx: Ctx, sel: number | null, y0: number, y1: number): void {
    const d = this.data!;
    const t = this.theme;
    const rowH = this.L.rowH;
    const yOf = (i: number) => HEAD + (i + 0.5) * rowH;
    const attnRow = (r: number, c: number) => d.attention[d.rowIdx[r] * d.k + d.colIdx[c]];
    if (sel === null) {
      if (this.expanded) {
        ctx.fillStyle = t.muted;
        ctx.font = '16px Roboto, Arial, sans-serif';
        ctx.textAlign = 'left';
        ctx.textBaseline = 'middle';
        ctx.fillText('No token selected', this.x.p + 10, HEAD + 20);
        this.el.dataset.linesDrawn = '0';
        return;
      }
      // collapsed at rest: all lines of the head
      const m = new Float32Array(this.rowsN * this.colsN);
      for (let r = 0; r < this.rowsN; r++) for (let c = 0; c < this.colsN; c++) m[r * this.colsN + c] = attnRow(r, c);
      ctx.lineWidth = rowH >= 14 ? 2 : 1;
      const n = drawLines(ctx, collectLines(m, this.rowsN, this.colsN, {scale: 1}), t.attn, {x1: this.L.width, x2: this.Rt.x, rowY: yOf, colY: yOf}, y0, y1);
      this.el.dataset.linesDrawn = String(n);
      return;
    }
    highlightRow(ctx, this.L, sel, t.highlight);
    // keys highlighted by the stored attention (BertViz)
    for (let c = 0; c < this.colsN; c++) {
      const a = attnRow(sel, c);
      if (a * 255 < 0.5) continue;
      highlightRow(ctx, this.Rt, c, t.attn, Math.min(1, a) * 0.6);
    }
    const row = new Float32Array(this.colsN);
    for (let c = 0; c < this.colsN; c++) row[c] = attnRow(sel, c);
    ctx.lineWidth = 2;
    if (!this.expanded) {
      const n = drawLines(ctx, collectLines(row, 1, this.colsN, {scale: 1}), t.attn, {x1: this.L.width, x2: this.Rt.x, rowY: () => yOf(sel), colY: yOf}, y0, y1);
      this.el.dataset.linesDrawn = String(n);
      return;
    }
    const qk = d.qk!;
    const {q, k, p, dot, soft, mw} = this.x;
    // the selected query vector's box, and lines from it to the keys (opacity tanh(1.8 · attention))
    ctx.strokeStyle = t.attn;
    ctx.strokeRect(q - 1, HEAD + sel * rowH - 1, mw + 2, rowH);
    const shaped = row.map((a) => Math.tanh(1.8 * a));
    const n = drawLines(ctx, collectLines(shaped, 1, this.colsN, {scale: 1}), t.attn, {x1: q + mw + 2, x2: k - 2, rowY: () => yOf(sel), colY: yOf}, y0, y1);
    this.el.dataset.linesDrawn = String(n);
    const origRow = d.rowIdx[sel];
    if (!this.rec || this.rec.row !== origRow) {
      const r = recompute(qk.queries, qk.keys, qk.d, origRow, d.info, d.selfAttention);
      const shown = new Float32Array(this.colsN * qk.d);
      // masked keys (after the query when causal) show no product, as BertViz
      for (let c = 0; c < this.colsN; c++) if (!r.masked[d.colIdx[c]]) shown.set(r.products.subarray(d.colIdx[c] * qk.d, (d.colIdx[c] + 1) * qk.d), c * qk.d);
      this.rec = {row: origRow, r, img: this.cellsImage(shown, this.colsN, qk.d)};
    }
    const {r, img} = this.rec;
    drawHeatmap(ctx, img, p, HEAD, mw, this.colsN * rowH);
    const stored = new Float32Array(this.colsN);
    const probs = new Float32Array(this.colsN);
    const first = Math.max(0, Math.floor((y0 - HEAD) / rowH));
    const last = Math.min(this.colsN - 1, Math.ceil((y1 - HEAD) / rowH));
    for (let c = 0; c < this.colsN; c++) {
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
    this.el.dataset.recomputedMaxDiff = maxAbsDiff(probs, stored).toFixed(4);
  }
}

function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toPrecision(4);
}
