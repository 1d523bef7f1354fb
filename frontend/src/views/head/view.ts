// Head view (BertViz's attention-head view) on canvas: queries on the left, keys on the right, one colour
// per head, line opacity = weight / number of active heads. Click a head swatch to toggle it, double-click
// to solo it (double-click the only active head to bring all back). Hover a query token: only its lines, and
// per-head bars on the keys; hover a key token: the transposed view. At rest, invisible lines are skipped
// and an optional top-k per query token thins long inputs; the hovered token always shows all its lines.
import {CanvasStack} from '../draw/canvas';
import {DIVERGING, lighten, type Theme} from '../draw/colors';
import type {Ctx} from '../draw/ctx';
import {collectLines, drawLines, type LineGeometry, type LineSet} from '../draw/lines';
import {columnWidth, drawTokenColumn, highlightRow, rowAt, type ColumnLayout} from '../draw/tokens';
import {el, fontFor, rowHeightFor, type ViewBase} from './common';

/** What the head view draws: already filtered / merged, per head. Knows nothing about HTTP. */
export interface HeadData {
  queryLabels: string[];
  keyLabels: string[];
  /** Heads in the layer (sets the palette). */
  nHeads: number;
  /** Heads this data holds (all, or the one of a detail view). */
  heads: number[];
  /** (queries × keys) row-major, for a head in `heads`. */
  matrix(h: number): Float32Array;
  /** Difference data (B − A): lines coloured by sign, opacity relative to `maxAbs`. */
  signed?: boolean;
  maxAbs?: number;
}

export interface HeadViewOptions {
  theme: Theme;
  colorOf: (h: number, nHeads: number) => string;
  /** Heads switched on (null: all). */
  active: number[] | null;
  topk: number;
  /** Show the head swatches (off in a single-head detail view). */
  swatches?: boolean;
  onActiveChange?: (active: number[] | null) => void;
  onHover?: (side: 'left' | 'right' | null, index: number) => void;
  testid?: string;
}

const MID_WIDTH = 200;
const PAD_TOP = 6;

export class HeadView implements ViewBase {
  readonly el: HTMLElement;
  private swatchBar: HTMLElement;
  private legend: HTMLElement;
  private stack: CanvasStack;
  private data: HeadData | null = null;
  private theme: Theme;
  private active: Set<number> = new Set();
  private activeSel: number[] | null;
  private topk: number;
  private hover: {side: 'left' | 'right'; index: number} | null = null;
  private restCache = new Map<number, LineSet>();
  private L!: ColumnLayout;
  private Rt!: ColumnLayout;
  private rows = 0;
  private cols = 0;
  private linesDrawn = 0;

  constructor(private opts: HeadViewOptions) {
    this.theme = opts.theme;
    this.activeSel = opts.active;
    this.topk = opts.topk;
    this.stack = new CanvasStack(3, () => this.drawAll());
    this.stack.root.setAttribute('data-testid', 'head-canvas');
    this.swatchBar = el('div', {class: 'swatches', 'data-testid': 'head-swatches'});
    this.legend = el('div', {class: 'legend'});
    this.el = el('div', {class: 'head-view', 'data-testid': opts.testid ?? 'head-view'}, this.swatchBar, this.legend, this.stack.root);
    if (opts.swatches === false) this.swatchBar.hidden = true;
    const top = this.stack.top;
    top.addEventListener('mousemove', (e) => this.onMove(e));
    top.addEventListener('mouseleave', () => this.setHover(null, -1, true));
  }

  setTheme(t: Theme): void {
    this.theme = t;
    this.renderSwatches();
    this.drawAll();
  }

  setData(d: HeadData): void {
    this.data = d;
    this.restCache.clear();
    this.hover = null;
    this.resolveActive();
    this.layout();
    this.renderSwatches();
    this.renderLegend();
    this.drawAll();
  }

  setActive(active: number[] | null): void {
    if (JSON.stringify(active) === JSON.stringify(this.activeSel)) return;
    this.activeSel = active;
    this.resolveActive();
    this.restCache.clear();
    this.renderSwatches();
    this.drawAll();
  }

  setTopk(k: number): void {
    if (k === this.topk) return;
    this.topk = k;
    this.restCache.clear();
    this.drawAll();
  }

  /** Hover from outside (the other pane of a side-by-side comparison). */
  setHover(side: 'left' | 'right' | null, index: number, emit = false): void {
    const next = side && index >= 0 ? {side, index} : null;
    if (next?.side === this.hover?.side && next?.index === this.hover?.index) return;
    this.hover = next;
    this.drawHover();
    if (emit) this.opts.onHover?.(side, index);
  }

  dispose(): void {
    this.stack.dispose();
  }

  private resolveActive(): void {
    const heads = this.data?.heads ?? [];
    const sel = this.activeSel ? heads.filter((h) => this.activeSel!.includes(h)) : heads;
    this.active = new Set(sel.length ? sel : heads);
  }

  private activeList(): number[] {
    return (this.data?.heads ?? []).filter((h) => this.active.has(h));
  }

  private color(h: number): string {
    return this.opts.colorOf(h, this.data?.nHeads ?? 1);
  }

  private layout(): void {
    const d = this.data!;
    this.rows = d.queryLabels.length;
    this.cols = d.keyLabels.length;
    const n = Math.max(this.rows, this.cols);
    const rowH = rowHeightFor(n);
    const font = fontFor(rowH);
    const lw = columnWidth(d.queryLabels, font, 60, 180);
    const rw = columnWidth(d.keyLabels, font, 60, 180);
    this.L = {x: 0, width: lw, align: 'right', top: PAD_TOP, rowH, font, color: this.theme.text};
    this.Rt = {x: lw + MID_WIDTH, width: rw, align: 'left', top: PAD_TOP, rowH, font, color: this.theme.text};
    this.stack.resize(lw + MID_WIDTH + rw, PAD_TOP * 2 + n * rowH);
    const r = this.el.dataset;
    r.rows = String(this.rows);
    r.cols = String(this.cols);
    r.rowHeight = String(rowH);
    r.top = String(PAD_TOP);
    r.leftX = String(Math.round(lw / 2));
    r.rightX = String(Math.round(lw + MID_WIDTH + rw / 2));
  }

  exportSize(): {width: number; height: number} {
    return {width: this.stack.width, height: this.stack.height};
  }

  private geometry(): LineGeometry {
    const {top, rowH} = this.L;
    const y = (i: number) => top + (i + 0.5) * rowH;
    return {x1: this.L.width, x2: this.Rt.x, rowY: y, colY: y};
  }

  private scaleFor(): number {
    const d = this.data!;
    const a = Math.max(1, this.active.size);
    if (d.signed) return 1 / (Math.max(d.maxAbs ?? 0, 1e-9) * a);
    return 1 / a;
  }

  /** Rest lines of one head (cached until data, active heads or top-k change). */
  private restLines(h: number, sign: 0 | 1 | -1): LineSet {
    const key = h * 4 + sign + 1;
    let s = this.restCache.get(key);
    if (!s) {
      s = collectLines(this.data!.matrix(h), this.rows, this.cols, {scale: this.scaleFor(), topk: this.topk, sign});
      this.restCache.set(key, s);
    }
    return s;
  }

  private drawAll(): void {
    if (!this.data) return;
    const t0 = performance.now();
    const {y0, y1} = this.stack;
    const text = this.stack.ctx(2);
    this.paintText(text, y0, y1);
    const rest = this.stack.ctx(1);
    const drawn = this.paintRest(rest, y0, y1);
    this.el.dataset.linesRest = String(drawn);
    this.linesDrawn = drawn;
    this.drawHover();
    this.el.dataset.renderMs = (performance.now() - t0).toFixed(1);
  }

  private paintText(ctx: Ctx, y0: number, y1: number): void {
    const d = this.data!;
    this.L.color = this.Rt.color = this.theme.text;
    drawTokenColumn(ctx, d.queryLabels, this.L, y0, y1);
    drawTokenColumn(ctx, d.keyLabels, this.Rt, y0, y1);
  }

  private paintRest(ctx: Ctx, y0: number, y1: number): number {
    const d = this.data!;
    const g = this.geometry();
    // 2 px lines read better on short inputs; past 128 tokens software raster of thousands of long 2 px
    // lines dominates first paint (measured 4x at 512 tokens), so the resting layer uses 1 px there.
    ctx.lineWidth = this.L.rowH >= 14 && this.rows <= 128 ? 2 : 1;
    let drawn = 0;
    for (const h of this.activeList()) {
      if (d.signed) {
        drawn += drawLines(ctx, this.restLines(h, 1), DIVERGING.pos, g, y0, y1);
        drawn += drawLines(ctx, this.restLines(h, -1), DIVERGING.neg, g, y0, y1);
      } else {
        drawn += drawLines(ctx, this.restLines(h, 0), this.color(h), g, y0, y1);
      }
    }
    return drawn;
  }

  private drawHover(): void {
    if (!this.data) return;
    const t0 = performance.now();
    const {y0, y1} = this.stack;
    const ctx = this.stack.ctx(0);
    const restLayer = this.stack.layers[1];
    const hv = this.hover;
    this.el.dataset.hover = hv ? `${hv.side}:${hv.index}` : '';
    // the hovered token as the tooltip: its full text (columns clip long tokens), as text, never markup
    this.stack.top.title = hv ? ((hv.side === 'left' ? this.data.queryLabels : this.data.keyLabels)[hv.index] ?? '') : '';
    if (!hv) {
      restLayer.style.visibility = '';
      this.el.dataset.linesDrawn = this.stack.root.dataset.linesDrawn = String(this.linesDrawn);
      return;
    }
    restLayer.style.visibility = 'hidden';
    const d = this.data;
    const left = hv.side === 'left';
    const own = left ? this.L : this.Rt;
    const other = left ? this.Rt : this.L;
    highlightRow(ctx, own, hv.index, this.theme.highlight);
    const g = this.geometry();
    const scale = this.scaleFor();
    const heads = this.activeList();
    const a = Math.max(1, heads.length);
    const bw = other.width / a;
    const n = left ? this.cols : this.rows;
    const first = Math.max(0, Math.floor((y0 - other.top) / other.rowH));
    const last = Math.min(n - 1, Math.ceil((y1 - other.top) / other.rowH));
    const maxAbs = d.signed ? Math.max(d.maxAbs ?? 0, 1e-9) : 1;
    let drawn = 0;
    ctx.lineWidth = this.L.rowH >= 14 ? 2 : 1;
    heads.forEach((h, hi) => {
      const m = d.matrix(h);
      // per-head bars on the other column: opacity = weight (BertViz)
      for (let t = first; t <= last; t++) {
        const w = left ? m[hv.index * this.cols + t] : m[t * this.cols + hv.index];
        const alpha = Math.min(1, Math.abs(w) / maxAbs);
        if (alpha * 255 < 0.5) continue;
        ctx.globalAlpha = alpha;
        ctx.fillStyle = d.signed ? (w >= 0 ? DIVERGING.pos : DIVERGING.neg) : this.color(h);
        ctx.fillRect(other.x + hi * bw, other.top + t * other.rowH, bw, other.rowH);
      }
      ctx.globalAlpha = 1;
      const opt = left ? {row: hv.index} : {col: hv.index};
      if (d.signed) {
        drawn += drawLines(ctx, collectLines(m, this.rows, this.cols, {scale, sign: 1, ...opt}), DIVERGING.pos, g, y0, y1);
        drawn += drawLines(ctx, collectLines(m, this.rows, this.cols, {scale, sign: -1, ...opt}), DIVERGING.neg, g, y0, y1);
      } else {
        drawn += drawLines(ctx, collectLines(m, this.rows, this.cols, {scale, ...opt}), this.color(h), g, y0, y1);
      }
    });
    this.el.dataset.linesDrawn = this.stack.root.dataset.linesDrawn = String(drawn);
    this.el.dataset.hoverMs = (performance.now() - t0).toFixed(1);
  }

  private onMove(e: MouseEvent): void {
    if (!this.data) return;
    const {x, y} = this.stack.toContent(e);
    if (x < this.L.width) this.setHover('left', rowAt(this.L, this.rows, y), true);
    else if (x >= this.Rt.x) this.setHover('right', rowAt(this.Rt, this.cols, y), true);
    else this.setHover(null, -1, true);
  }

  paint(ctx: Ctx): void {
    if (!this.data) return;
    this.paintText(ctx, -Infinity, Infinity);
    this.paintRest(ctx, -Infinity, Infinity);
  }

  private renderSwatches(): void {
    const bar = this.swatchBar;
    while (bar.firstChild) bar.removeChild(bar.firstChild);
    const d = this.data;
    if (!d) return;
    bar.appendChild(el('span', {class: 'swatch-label', text: 'Heads'}));
    for (const h of d.heads) {
      const on = this.active.has(h);
      const c = this.color(h);
      const b = el('button', {
        class: 'swatch' + (on ? ' on' : ''),
        type: 'button',
        title: `Head ${h}: click to toggle, double-click to show only this head`,
        'aria-pressed': on ? 'true' : 'false',
        'data-testid': `head-swatch-${h}`,
        'data-head': h,
        text: String(h),
      });
      b.style.backgroundColor = on ? c : lighten(c, 0.7);
      b.style.borderColor = c;
      b.addEventListener('click', () => this.toggle(h));
      b.addEventListener('dblclick', () => this.solo(h));
      bar.appendChild(b);
    }
    this.el.dataset.activeHeads = this.activeList().join(',');
  }

  private renderLegend(): void {
    const d = this.data!;
    this.legend.textContent = d.signed
      ? `Difference B − A: blue = more attention in B, red = more in A; full opacity = ±${(d.maxAbs ?? 0).toFixed(3)} (divided by the number of active heads).`
      : '';
    this.legend.hidden = !d.signed;
  }

  private emitActive(): void {
    const all = this.data!.heads;
    const list = this.activeList();
    this.activeSel = list.length === all.length ? null : list;
    this.restCache.clear();
    this.renderSwatches();
    this.drawAll();
    this.opts.onActiveChange?.(this.activeSel);
  }

  private toggle(h: number): void {
    if (this.active.has(h)) {
      if (this.active.size === 1) return;
      this.active.delete(h);
    } else this.active.add(h);
    this.emitActive();
  }

  private solo(h: number): void {
    const heads = this.data!.heads;
    if (this.active.has(h) && this.active.size === 1) this.active = new Set(heads);
    else this.active = new Set([h]);
    this.emitActive();
  }
}
