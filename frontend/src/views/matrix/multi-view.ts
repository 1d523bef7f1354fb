// Small multiples: several heads of one layer as a grid of small heatmaps sharing one viewport. Wheel or
// pinch on any plot zooms all of them there, drag pans all, double-click zooms in (Shift: out); hovering a
// cell marks it on every plot and titles each head with its value there. Plots show each head's stored level
// (dense: exact; long: the pyramid's bins; the single-head view fetches exact tiles). Zoom / pan frames
// draw the last crisp renders scaled; they are rendered again once the gesture rests.
import {nanColors, type Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {el} from '../common';
import {CanvasView} from '../canvas-view';
import {FrameScheduler} from './frames';
import {PlotCache} from './cache';
import {planeOf, type MatrixData} from './data';
import {renderPlot, type Rendered} from './draw';
import {MultiPainter, multiLayout, multiValueText, plotAt} from './multi';
import {cellAtPixel, clampViewport, fullViewport, panBy, TILE, zoomAt, type Viewport} from './zoom';

export interface MultiViewOptions {
  theme: Theme;
  viewport?: Viewport | null;
  onViewport?: (v: Viewport) => void;
  /** Controls of the spec's (the heads selector), put in the view's toolbar. */
  controls?: HTMLElement[];
}

export class MatrixMultiView extends CanvasView {
  readonly el: HTMLElement;
  private readout: HTMLElement;
  private notesEl: HTMLElement;
  private datas: MatrixData[] = [];
  private painter: MultiPainter | null = null;
  private theme: Theme;
  private v: Viewport = {x0: 0, x1: 1, y0: 0, y1: 1};
  private rendered: Rendered[] = [];
  private renderedV: Viewport | null = null;
  private readonly frames = new FrameScheduler({scaled: () => this.drawScaled(), crisp: () => this.redraw()});
  private caches: PlotCache[] = [];
  private hover: {i: number; j: number} | null = null;
  private drag: {x: number; y: number; v: Viewport} | null = null;

  constructor(private opts: MultiViewOptions) {
    super(2, 'matrix-multi-canvas');
    this.theme = opts.theme;
    const btn = (testid: string, text: string, title: string, f: () => void) => {
      const b = el('button', {type: 'button', 'data-testid': testid, text, title});
      b.addEventListener('click', f);
      return b;
    };
    const bar = el(
      'div',
      {class: 'view-toolbar'},
      ...(opts.controls ?? []),
      btn('matrix-zoom-in', '+', 'Zoom in (or: wheel, double-click)', () => this.zoomBy(0.5, 0.5, 0.5, false)),
      btn('matrix-zoom-out', '−', 'Zoom out (or: wheel, Shift-double-click)', () => this.zoomBy(2, 0.5, 0.5, false)),
      btn('matrix-reset', 'Whole sequence', 'Show the whole matrix', () => this.setViewport(this.fullView(), true)),
      el('span', {class: 'hint', text: 'One viewport for every head: wheel / pinch: zoom · drag: pan · double-click: zoom in (Shift: out)'}),
    );
    this.readout = el('div', {class: 'readout', 'data-testid': 'matrix-multi-readout', text: 'Hover a cell for its value in every head.'});
    this.notesEl = el('div', {class: 'notes', 'data-testid': 'matrix-notes'});
    this.el = el('div', {class: 'matrix-view', 'data-testid': 'matrix-multi'}, bar, this.notesEl, this.readout, this.stack.root);
    const top = this.stack.top;
    top.addEventListener('wheel', (e) => this.onWheel(e), {passive: false});
    top.addEventListener('mousedown', (e) => this.onDown(e));
    top.addEventListener('mousemove', (e) => this.onMove(e));
    top.addEventListener('mouseleave', () => this.setHover(null));
    top.addEventListener('dblclick', (e) => this.onDblClick(e));
    window.addEventListener('mouseup', this.onUp);
    if (opts.viewport) this.v = opts.viewport;
  }

  private plane(): {q: number; k: number} {
    return this.datas.length ? planeOf(this.datas[0]) : {q: 1, k: 1};
  }

  private fullView(): Viewport {
    const P = this.plane();
    return fullViewport(P.q, P.k);
  }

  setTheme(t: Theme): void {
    this.theme = t;
    if (this.painter) this.painter.theme = t;
    this.redraw();
  }

  /** Shows the heads `ds` (one record, one layer); at `viewport` when given, else where it was. */
  setData(ds: MatrixData[], notes: string[], viewport: Viewport | null = null): void {
    if (!ds.length) throw new Error('no heads to show');
    const same = this.datas.length && this.datas[0].q === ds[0].q && this.datas[0].k === ds[0].k;
    this.datas = ds;
    if (!same) this.hover = null;
    const total = (this.el.closest('.pane') as HTMLElement | null)?.clientWidth || (this.el.closest('.panes') as HTMLElement | null)?.clientWidth || document.documentElement.clientWidth || 1000;
    const L = multiLayout(total, ds.length);
    this.painter = new MultiPainter(ds, L, this.theme);
    this.caches = ds.map(() => new PlotCache());
    this.stack.resize(L.width, L.height);
    const P = this.plane();
    const want = viewport ?? this.opts.viewport ?? (same ? this.v : null);
    this.v = clampViewport(want ?? fullViewport(P.q, P.k), P.q, P.k);
    this.opts.viewport = null;
    const s = this.el.dataset;
    s.heads = ds.map((d) => d.head).join(',');
    s.q = String(ds[0].q);
    s.k = String(ds[0].k);
    s.side = String(L.side);
    s.cells = L.cells.map((c) => `${c.x}:${c.y}`).join(',');
    s.agg = ds[0].agg ?? 'mean';
    this.notesEl.textContent = '';
    for (const n of [...notes, ...ds[0].notes]) this.notesEl.appendChild(el('div', {class: 'note', text: n}));
    this.redraw();
  }

  viewport(): Viewport {
    return {...this.v};
  }

  /** Shows `v` (clamped); `emit`: tell the URL; `fast`: during a gesture (scaled frames, crisp at rest). */
  setViewport(v: Viewport, emit = false, fast = false): void {
    const P = this.plane();
    this.v = clampViewport(v, P.q, P.k);
    this.frames.schedule(!fast);
    if (emit) this.opts.onViewport?.(this.viewport());
  }

  reveal(pos: number): void {
    const P = this.plane();
    const span = 64;
    this.el.dataset.found = String(pos);
    this.setViewport(clampViewport({x0: pos + 0.5 - span / 2, x1: pos + 0.5 + span / 2, y0: pos + 0.5 - span / 2, y1: pos + 0.5 + span / 2}, P.q, P.k), true);
  }

  override dispose(): void {
    this.frames.dispose();
    window.removeEventListener('mouseup', this.onUp);
    super.dispose();
  }

  paint(ctx: Ctx): void {
    const p = this.painter;
    if (!p) return;
    p.paint(ctx, this.v, this.renderAll(), this.hover);
  }

  // ------------------------------------------------------------------------------------------ drawing

  private renderAll(): Rendered[] {
    const v = this.v;
    const r = this.renderedV;
    if (!(r && r.x0 === v.x0 && r.x1 === v.x1 && r.y0 === v.y0 && r.y1 === v.y1 && this.rendered.length === this.datas.length)) {
      const side = this.painter!.layout.side;
      this.rendered = this.datas.map((d) => renderPlot(d, v, side, side, this.theme, null, TILE));
      this.renderedV = {...v};
    }
    return this.rendered;
  }

  /** A gesture's frame: every plot's last crisp render, scaled to the viewport. */
  private drawScaled(): boolean {
    const p = this.painter;
    if (!p || this.caches.some((c) => !c.v)) return false;
    const t0 = performance.now();
    const L = p.layout;
    const ctx = this.stack.ctx(0, false);
    const fill = nanColors(this.theme).fill;
    this.caches.forEach((c, n) => c.draw(ctx, this.v, L.cells[n].x, L.cells[n].y, L.side, L.side, fill));
    p.paintBorders(ctx);
    this.drawOverlay();
    this.stamp('scaled', t0);
    return true;
  }

  protected redraw(): void {
    const p = this.painter;
    if (!p) return;
    const t0 = performance.now();
    const L = p.layout;
    const rs = this.renderAll();
    const ctx = this.stack.ctx(0);
    ctx.fillStyle = this.theme.bg;
    ctx.fillRect(0, 0, L.width, L.height);
    ctx.imageSmoothingEnabled = false; // crisp cells on a high-dpi screen
    rs.forEach((r, n) => {
      const c = this.caches[n].store(r.pixels, L.side, L.side, this.v);
      if (c) ctx.drawImage(c, L.cells[n].x, L.cells[n].y, L.side, L.side);
    });
    if (this.caches.some((c) => !c.v)) p.paintPlots(ctx, rs);
    else p.paintBorders(ctx);
    p.paintLegend(ctx);
    this.drawOverlay();
    this.el.dataset.maskedPixels = String(rs.reduce((a, r) => a + r.maskedPixels, 0));
    this.el.dataset.paddedPixels = String(rs.reduce((a, r) => a + r.paddedPixels, 0));
    this.stamp('full', t0);
  }

  private stamp(mode: string, t0: number): void {
    const ds = this.el.dataset;
    ds.x0 = this.v.x0.toFixed(2);
    ds.x1 = this.v.x1.toFixed(2);
    ds.y0 = this.v.y0.toFixed(2);
    ds.y1 = this.v.y1.toFixed(2);
    ds.frame = mode;
    ds.renderMs = (performance.now() - t0).toFixed(1);
  }

  private drawOverlay(): void {
    this.painter?.paintHover(this.stack.ctx(1), this.v, this.hover);
  }

  // ------------------------------------------------------------------------------------------ hover

  setHover(cell: {i: number; j: number} | null): void {
    if (cell?.i === this.hover?.i && cell?.j === this.hover?.j) return;
    const t0 = performance.now();
    this.hover = cell;
    this.drawOverlay();
    const ds = this.el.dataset;
    if (!cell) {
      ds.hover = ds.hoverValues = '';
      this.readout.textContent = 'Hover a cell for its value in every head.';
    } else {
      const values = this.datas.map((d) => multiValueText(d, cell.i, cell.j));
      ds.hover = `${cell.i},${cell.j}`;
      ds.hoverValues = values.join(';');
      const d0 = this.datas[0];
      this.readout.textContent = `query ${cell.i} “${d0.queryLabels[cell.i] ?? ''}” → key ${cell.j} “${d0.keyLabels[cell.j] ?? ''}”: ${this.datas.map((d, n) => `H${d.head} ${values[n]}`).join(' · ')}`;
    }
    ds.hoverMs = (performance.now() - t0).toFixed(1);
  }

  // ------------------------------------------------------------------------------------------ pointer

  private at(e: MouseEvent): {n: number; px: number; py: number} | null {
    if (!this.painter) return null;
    const c = this.stack.toContent(e);
    return plotAt(this.painter.layout, c.x, c.y);
  }

  private zoomBy(factor: number, fx: number, fy: number, fast: boolean): void {
    const P = this.plane();
    this.setViewport(zoomAt(this.v, factor, fx, fy, P.q, P.k), true, fast);
  }

  private onWheel(e: WheelEvent): void {
    const a = this.at(e);
    if (!a) return;
    e.preventDefault();
    const side = this.painter!.layout.side;
    const dy = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
    this.zoomBy(Math.exp(dy * (e.ctrlKey ? 0.01 : 0.002)), a.px / side, a.py / side, true);
  }

  private onDown(e: MouseEvent): void {
    if (e.button !== 0 || !this.at(e)) return;
    e.preventDefault();
    const c = this.stack.toContent(e);
    this.drag = {x: c.x, y: c.y, v: this.viewport()};
  }

  private onUp = (): void => {
    if (!this.drag) return;
    this.drag = null;
    this.frames.schedule(true);
  };

  private onMove(e: MouseEvent): void {
    const p = this.painter;
    if (!p) return;
    const g = this.drag;
    const P = this.plane();
    if (g && (e.buttons & 1) === 1) {
      const c = this.stack.toContent(e);
      const s = p.layout.side;
      this.setViewport(panBy(g.v, ((g.x - c.x) / s) * (g.v.x1 - g.v.x0), ((g.y - c.y) / s) * (g.v.y1 - g.v.y0), P.q, P.k), true, true);
      return;
    }
    const a = this.at(e);
    this.setHover(a ? cellAtPixel(this.v, p.layout.side, p.layout.side, a.px, a.py, P.q, P.k) : null);
  }

  private onDblClick(e: MouseEvent): void {
    const a = this.at(e);
    if (!a) return;
    e.preventDefault();
    const side = this.painter!.layout.side;
    this.zoomBy(e.shiftKey ? 2 : 0.5, a.px / side, a.py / side, false);
  }
}
