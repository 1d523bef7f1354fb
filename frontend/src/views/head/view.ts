// Head view (BertViz's attention-head view) on canvas: queries on the left, keys on the right, one colour
// per head, line opacity = weight / number of active heads. Click a head swatch to toggle it, double-click
// to solo it (double-click the only active head to bring all back). Hover a query token: only its lines, and
// per-head bars on the keys; hover a key token: the transposed view. At rest, invisible lines are skipped
// and an optional top-k per query token thins long inputs; the hovered token always shows all its lines.
// The drawing itself is HeadPainter (draw.ts); this is its DOM: canvases, swatches, pointer.
import {CanvasStack} from '../../draw/canvas';
import {lighten, type Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {rowAt} from '../../draw/tokens';
import {el, type ViewBase} from '../common';
import type {HeadData} from './data';
import {HeadPainter, headLayout, type HeadHover} from './draw';

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

export class HeadView implements ViewBase {
  readonly el: HTMLElement;
  private swatchBar: HTMLElement;
  private legend: HTMLElement;
  private stack: CanvasStack;
  private painter: HeadPainter | null = null;
  private theme: Theme;
  private active: Set<number> = new Set();
  private activeSel: number[] | null;
  private topk: number;
  private hover: HeadHover | null = null;
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

  private get data(): HeadData | null {
    return this.painter?.data ?? null;
  }

  setTheme(t: Theme): void {
    this.theme = t;
    this.painter?.set({theme: t});
    this.renderSwatches();
    this.drawAll();
  }

  setData(d: HeadData): void {
    this.hover = null;
    const layout = headLayout(d, this.theme);
    this.painter = new HeadPainter(d, layout, {theme: this.theme, colorOf: this.opts.colorOf, active: [], topk: this.topk});
    this.resolveActive();
    this.stack.resize(layout.width, layout.height);
    const r = this.el.dataset;
    r.rows = String(layout.rows);
    r.cols = String(layout.cols);
    r.rowHeight = String(layout.L.rowH);
    r.top = String(layout.L.top);
    r.leftX = String(Math.round(layout.L.width / 2));
    r.rightX = String(Math.round(layout.Rt.x + layout.Rt.width / 2));
    this.renderSwatches();
    this.renderLegend();
    this.drawAll();
  }

  setActive(active: number[] | null): void {
    if (JSON.stringify(active) === JSON.stringify(this.activeSel)) return;
    this.activeSel = active;
    this.resolveActive();
    this.renderSwatches();
    this.drawAll();
  }

  setTopk(k: number): void {
    if (k === this.topk) return;
    this.topk = k;
    this.painter?.set({topk: k});
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
    this.painter?.set({active: this.activeList()});
  }

  private activeList(): number[] {
    return (this.data?.heads ?? []).filter((h) => this.active.has(h));
  }

  exportSize(): {width: number; height: number} {
    return {width: this.stack.width, height: this.stack.height};
  }

  private drawAll(): void {
    const p = this.painter;
    if (!p) return;
    const t0 = performance.now();
    const {y0, y1} = this.stack;
    p.paintText(this.stack.ctx(2), y0, y1);
    const drawn = p.paintRest(this.stack.ctx(1), y0, y1);
    this.el.dataset.linesRest = String(drawn);
    this.linesDrawn = drawn;
    this.drawHover();
    this.el.dataset.renderMs = (performance.now() - t0).toFixed(1);
  }

  private drawHover(): void {
    const p = this.painter;
    if (!p) return;
    const t0 = performance.now();
    const ctx = this.stack.ctx(0);
    const restLayer = this.stack.layers[1];
    const hv = this.hover;
    this.el.dataset.hover = hv ? `${hv.side}:${hv.index}` : '';
    // the hovered token as the tooltip: its full text (columns clip long tokens), as text, never markup
    this.stack.top.title = hv ? ((hv.side === 'left' ? p.data.queryLabels : p.data.keyLabels)[hv.index] ?? '') : '';
    if (!hv) {
      restLayer.style.visibility = '';
      this.el.dataset.linesDrawn = this.stack.root.dataset.linesDrawn = String(this.linesDrawn);
      return;
    }
    restLayer.style.visibility = 'hidden';
    const drawn = p.paintHover(ctx, hv, this.stack.y0, this.stack.y1);
    this.el.dataset.linesDrawn = this.stack.root.dataset.linesDrawn = String(drawn);
    this.el.dataset.hoverMs = (performance.now() - t0).toFixed(1);
  }

  private onMove(e: MouseEvent): void {
    const p = this.painter;
    if (!p) return;
    const {x, y} = this.stack.toContent(e);
    const {L, Rt, rows, cols} = p.layout;
    if (x < L.width) this.setHover('left', rowAt(L, rows, y), true);
    else if (x >= Rt.x) this.setHover('right', rowAt(Rt, cols, y), true);
    else this.setHover(null, -1, true);
  }

  paint(ctx: Ctx): void {
    this.painter?.paint(ctx);
  }

  private renderSwatches(): void {
    const bar = this.swatchBar;
    while (bar.firstChild) bar.removeChild(bar.firstChild);
    const d = this.data;
    const p = this.painter;
    if (!d || !p) return;
    bar.appendChild(el('span', {class: 'swatch-label', text: 'Heads'}));
    for (const h of d.heads) {
      const on = this.active.has(h);
      const c = p.color(h);
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
    this.painter?.set({active: list});
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
