// Matrix view: one head's attention as a query × key heatmap over the whole sequence, zoomable like a map:
// wheel or pinch zooms at the pointer, drag pans, Shift-drag zooms to a box, double-click zooms in (Shift:
// out). The coarse level is the stored pyramid (long records) or the stored matrix (short ones); once the
// viewport holds at most EXACT_CELLS cells, exact tiles are fetched and replace it as they arrive. Hover a
// cell: query, key and weight (exact when a tile or the row is loaded), and the query's exact row as strips
// under the plot. Drawing: MatrixPainter (draw.ts); arithmetic: zoom.ts.
import {devicePixelRatioOf} from '../../draw/canvas';
import {nanColors, type Theme} from '../../draw/colors';
import {PlotCache} from './cache';
import type {Ctx} from '../../draw/ctx';
import {formatValue} from '../../math';
import {el} from '../common';
import {CanvasView} from '../canvas-view';
import {FrameScheduler} from './frames';
import {coarseValue, padded, planeOf, type MatrixData} from './data';
import {MatrixPainter, matrixLayout, renderPlot, type Rendered} from './draw';
import {around, binOf, binStart, boxViewport, cellAtPixel, chooseSource, clampViewport, fullViewport, panBy, pixelOf, TILE, tilesFor, zoomAt, type MatrixSourceKind, type Tile, type Viewport} from './zoom';

export interface MatrixViewOptions {
  theme: Theme;
  testid?: string;
  viewport?: Viewport | null;
  /** The viewport changed by the user (to sync other panes and remember it in the URL). */
  onViewport?: (v: Viewport) => void;
  onHover?: (cell: {i: number; j: number} | null) => void;
  /** What the view shows now, for the tab's status line. */
  onStatus?: (text: string) => void;
  /** Controls of the spec's (the heads selector), first in the view's toolbar. */
  controls?: HTMLElement[];
}

const MAX_PARALLEL = 6;
const ROW_CACHE = 64;

export class MatrixView extends CanvasView {
  readonly el: HTMLElement;
  private readout: HTMLElement;
  private notesEl: HTMLElement;
  private data: MatrixData | null = null;
  private painter: MatrixPainter | null = null;
  private theme: Theme;
  private v: Viewport = {x0: 0, x1: 1, y0: 0, y1: 1};
  private tiles = new Map<string, Float32Array | 'pending' | 'failed'>();
  private inflight = 0;
  private rows = new Map<number, Float32Array>();
  private hover: {i: number; j: number} | null = null;
  private found: number | null = null;
  private drag: {x: number; y: number; v: Viewport; box: boolean; moved: boolean} | null = null;
  private boxEnd: {x: number; y: number} | null = null;
  private tileTimer: ReturnType<typeof setTimeout> | null = null;
  private rowTimer: ReturnType<typeof setTimeout> | null = null;
  private rendered: Rendered | null = null;
  private renderedV: Viewport | null = null;
  private readonly frames = new FrameScheduler({scaled: () => this.drawScaled(), crisp: () => this.redraw()});
  private cache = new PlotCache();
  private source: MatrixSourceKind = 'pyramid';
  private gen = 0;

  constructor(private opts: MatrixViewOptions) {
    super(2, 'matrix-canvas');
    this.theme = opts.theme;
    // layers: 0 the plot, axes, row strips and legend; 1 the overlay (crosshair, found token, box). A hover
    // redraws the overlay and, when its row changes, the strips' rectangle of layer 0, never the plot (a third
    // layer for the strips measured ~2 ms slower per hover frame: one more full-size layer to composite)
    const btn = (testid: string, text: string, title: string, f: () => void) => {
      const b = el('button', {type: 'button', 'data-testid': testid, text, title});
      b.addEventListener('click', f);
      return b;
    };
    const bar = el(
      'div',
      {class: 'view-toolbar'},
      ...(opts.controls ?? []),
      btn('matrix-zoom-in', '+', 'Zoom in (or: wheel, double-click)', () => this.zoomBy(0.5, 0.5, 0.5)),
      btn('matrix-zoom-out', '−', 'Zoom out (or: wheel, Shift-double-click)', () => this.zoomBy(2, 0.5, 0.5)),
      btn('matrix-reset', 'Whole sequence', 'Show the whole matrix', () => this.setViewport(this.data ? fullViewport(planeOf(this.data).q, planeOf(this.data).k) : this.v, true)),
      el('span', {class: 'hint', text: 'Wheel / pinch: zoom · drag: pan · Shift-drag: zoom to a box · double-click: zoom in (Shift: out)'}),
    );
    this.readout = el('div', {class: 'readout', 'data-testid': 'matrix-readout', text: 'Hover a cell for its query, key and weight.'});
    this.notesEl = el('div', {class: 'notes', 'data-testid': 'matrix-notes'});
    this.el = el('div', {class: 'matrix-view', 'data-testid': opts.testid ?? 'matrix-view'}, bar, this.notesEl, this.readout, this.stack.root);
    const top = this.stack.top;
    top.addEventListener('wheel', (e) => this.onWheel(e), {passive: false});
    top.addEventListener('mousedown', (e) => this.onDown(e));
    top.addEventListener('mousemove', (e) => this.onMove(e));
    top.addEventListener('mouseleave', () => this.setHover(null, true));
    top.addEventListener('dblclick', (e) => this.onDblClick(e));
    window.addEventListener('mouseup', this.onUp);
    if (opts.viewport) this.v = opts.viewport;
  }

  setTheme(t: Theme): void {
    this.theme = t;
    if (this.painter) this.painter.theme = t;
    this.redraw();
  }

  /** Shows `d`; at `viewport` when given, else where it was (same shape) or the whole matrix. */
  setData(d: MatrixData, viewport: Viewport | null = null): void {
    const same = this.data && this.data.q === d.q && this.data.k === d.k;
    const P = planeOf(d);
    this.data = d;
    this.gen++;
    this.tiles.clear();
    this.rows.clear();
    this.cache.clear();
    this.inflight = 0;
    if (!same) this.hover = null;
    const total = (this.el.closest('.pane') as HTMLElement | null)?.clientWidth || (this.el.closest('.panes') as HTMLElement | null)?.clientWidth || document.documentElement.clientWidth || 1000;
    const maxH = typeof window !== 'undefined' && window.innerHeight ? Math.max(320, window.innerHeight - 330) : 760;
    const L = matrixLayout(total, maxH);
    this.painter = new MatrixPainter(d, L, this.theme);
    this.stack.resize(L.width, L.height);
    const want = viewport ?? this.opts.viewport ?? (same ? this.v : null);
    this.v = clampViewport(want ?? fullViewport(P.q, P.k), P.q, P.k);
    this.opts.viewport = null;
    const ds = this.el.dataset;
    ds.q = String(d.q);
    ds.k = String(d.k);
    ds.left = String(L.x);
    ds.top = String(L.y);
    ds.width = String(L.w);
    ds.height = String(L.h);
    ds.long = d.long ? '1' : '0';
    ds.signed = d.signed ? '1' : '0';
    ds.agg = d.agg ?? 'mean';
    this.notesEl.textContent = '';
    for (const n of d.notes) this.notesEl.appendChild(el('div', {class: 'note', text: n}));
    this.redraw();
  }

  viewport(): Viewport {
    return {...this.v};
  }

  /** Shows `v` (clamped); `emit`: tell the other panes and the URL. */
  setViewport(v: Viewport, emit = false, fast = false): void {
    const d = this.data;
    if (!d) {
      this.v = v;
      return;
    }
    this.v = clampViewport(v, planeOf(d).q, planeOf(d).k);
    this.frames.schedule(!fast);
    if (emit) this.opts.onViewport?.(this.viewport());
  }

  /** Find-a-token: a 64-token window around token `pos` on both axes, marked. */
  reveal(pos: number): void {
    const d = this.data;
    if (!d) return;
    this.found = pos;
    this.el.dataset.found = String(pos);
    this.setViewport(around(Math.min(pos, d.q - 1), Math.min(pos, d.k - 1), 64, planeOf(d).q, planeOf(d).k), true);
  }

  override dispose(): void {
    this.gen++;
    this.frames.dispose();
    if (this.tileTimer) clearTimeout(this.tileTimer);
    if (this.rowTimer) clearTimeout(this.rowTimer);
    window.removeEventListener('mouseup', this.onUp);
    super.dispose();
  }

  paint(ctx: Ctx): void {
    const p = this.painter;
    if (!p || !this.rendered) return;
    const rv = this.renderedV;
    if (!rv || rv.x0 !== this.v.x0 || rv.x1 !== this.v.x1 || rv.y0 !== this.v.y0 || rv.y1 !== this.v.y1) this.redraw(); // a scaled frame is shown: render it
    const h = this.hover ? this.rows.get(this.hover.i) : undefined;
    p.paint(ctx, this.v, this.rendered, this.hover && h ? {i: this.hover.i, row: h, exact: this.data!.exact} : null);
  }

  // ------------------------------------------------------------------------------------------ drawing

  /** A gesture's frame: the cached crisp render scaled, axes, the row strip over the visible keys, the overlay. */
  private drawScaled(): boolean {
    const p = this.painter;
    const d = this.data;
    if (!p || !d || !this.cache.v) return false;
    const t0 = performance.now();
    const L = p.layout;
    const ctx = this.stack.ctx(0, false);
    this.cache.draw(ctx, this.v, L.x, L.y, L.w, L.h, nanColors(this.theme).fill);
    ctx.strokeStyle = this.theme.border;
    ctx.lineWidth = 1;
    ctx.strokeRect(L.x - 0.5, L.y - 0.5, L.w + 1, L.h + 1);
    p.paintAxes(ctx, this.v);
    const hv = this.hover;
    const i = hv && hv.i < d.q ? hv.i : null;
    p.paintRow(ctx, this.v, i, i !== null ? this.rows.get(i) ?? null : null, d.exact);
    this.drawOverlay();
    this.source = chooseSource(this.v, d.long, d.exact && !!d.loadTile);
    this.stampViewport();
    const ds = this.el.dataset;
    ds.frame = 'scaled';
    ds.frameMs = (performance.now() - t0).toFixed(1);
    ds.pending = String(this.pendingTiles());
    return true;
  }

  private stampViewport(): void {
    const ds = this.el.dataset;
    ds.x0 = this.v.x0.toFixed(2);
    ds.x1 = this.v.x1.toFixed(2);
    ds.y0 = this.v.y0.toFixed(2);
    ds.y1 = this.v.y1.toFixed(2);
    ds.source = this.source;
  }

  private tileKey(ti: number, tj: number): string {
    return `${ti},${tj}`;
  }

  protected redraw(): void {
    const p = this.painter;
    const d = this.data;
    if (!p || !d) return;
    const t0 = performance.now();
    const L = p.layout;
    this.source = chooseSource(this.v, d.long, d.exact && !!d.loadTile);
    const lookup = this.source === 'exact' ? (ti: number, tj: number) => {
      const t = this.tiles.get(this.tileKey(ti, tj));
      return t instanceof Float32Array ? t : null;
    } : null;
    const r = (this.rendered = renderPlot(d, this.v, L.w, L.h, this.theme, lookup, TILE));
    this.renderedV = {...this.v};
    const ctx = this.stack.ctx(0);
    // kept for the next gesture's scaled frames
    const cached = this.cache.store(r.pixels, L.w, L.h, this.v);
    if (cached) {
      const dpr1 = devicePixelRatioOf() === 1;
      if (dpr1) ctx.putImageData(new ImageData(r.pixels as Uint8ClampedArray<ArrayBuffer>, L.w, L.h), L.x, L.y); // one pixel per plot pixel
      else {
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(cached, L.x, L.y, L.w, L.h);
      }
      ctx.strokeStyle = this.theme.border;
      ctx.lineWidth = 1;
      ctx.strokeRect(L.x - 0.5, L.y - 0.5, L.w + 1, L.h + 1);
    } else p.paintPlot(ctx, r);
    p.paintAxes(ctx, this.v);
    const hi = this.hover && this.hover.i < d.q ? this.hover.i : null;
    p.paintRow(ctx, this.v, hi, hi !== null ? this.rows.get(hi) ?? null : null, d.exact);
    p.paintLegend(ctx, r.maxAbs);
    this.drawOverlay();
    this.stampViewport();
    const ds = this.el.dataset;
    ds.frame = 'full';
    ds.frameMs = (performance.now() - t0).toFixed(1);
    ds.exactPixels = String(r.exactPixels);
    ds.maskedPixels = String(r.maskedPixels);
    ds.paddedPixels = String(r.paddedPixels);
    ds.renderMs = (performance.now() - t0).toFixed(1);
    this.reportStatus();
    if (this.source === 'exact') this.requestTiles();
    ds.pending = String(this.pendingTiles());
  }

  private pendingTiles(): number {
    const d = this.data;
    if (!d || this.source !== 'exact') return 0;
    return tilesFor(this.v, d.q, d.k, d.mask).filter((t) => !(this.tiles.get(this.tileKey(t.ti, t.tj)) instanceof Float32Array)).length;
  }

  private reportStatus(): void {
    const d = this.data!;
    const what =
      this.source === 'dense'
        ? `stored dense (${d.q} × ${d.k})`
        : this.source === 'exact'
          ? `exact from q/k (tiles of ${TILE}; ${this.pendingTiles() ? 'loading, pyramid meanwhile' : 'all loaded'})`
          : `${d.baseLabel}${d.exact ? '; zoom in for exact values' : ''}`;
    const text = `matrix L${d.layer} H${d.head}: ${what}${d.long && !d.exact ? '; exact windows not available for this layer (no q/k, or a learned position bias): pyramid and top-k only' : ''}${padded(d) ? `; grey past its ${d.q} × ${d.k} tokens: padding (the other record is longer)` : ''}`;
    this.el.dataset.status = text;
    this.opts.onStatus?.(text);
  }

  /** Fetches the viewport's missing exact tiles (nearest the centre first), a few at a time. */
  private requestTiles(): void {
    if (this.tileTimer) return;
    // wait until zooming / panning pauses: tiles of a viewport only passed through are not fetched
    this.tileTimer = setTimeout(() => {
      this.tileTimer = null;
      const d = this.data;
      if (!d?.loadTile || this.source !== 'exact') return;
      const gen = this.gen;
      for (const t of tilesFor(this.v, d.q, d.k, d.mask)) {
        if (this.inflight >= MAX_PARALLEL) break;
        const key = this.tileKey(t.ti, t.tj);
        if (this.tiles.has(key)) continue;
        this.fetchTile(d, t, key, gen);
      }
    }, 60);
  }

  private fetchTile(d: MatrixData, t: Tile, key: string, gen: number): void {
    this.tiles.set(key, 'pending');
    this.inflight++;
    d.loadTile!(t).then(
      (vals) => {
        if (gen !== this.gen) return;
        this.inflight--;
        this.tiles.set(key, vals);
        this.frames.schedule();
      },
      () => {
        if (gen !== this.gen) return;
        this.inflight--;
        this.tiles.set(key, 'failed');
        this.frames.schedule();
      },
    );
  }

  private drawOverlay(): void {
    const p = this.painter;
    const d = this.data;
    if (!p || !d) return;
    const ctx = this.stack.ctx(1);
    const L = p.layout;
    const v = this.v;
    const cell = (i: number, j: number) => {
      const a = pixelOf(v, L.w, L.h, j, i);
      const b = pixelOf(v, L.w, L.h, j + 1, i + 1);
      return {x: L.x + a.px, y: L.y + a.py, w: Math.max(1, b.px - a.px), h: Math.max(1, b.py - a.py)};
    };
    if (this.found !== null) {
      const c = cell(this.found, this.found);
      ctx.strokeStyle = '#ff9800';
      ctx.lineWidth = 2;
      if (c.y + c.h >= L.y && c.y <= L.y + L.h) ctx.strokeRect(L.x, c.y, L.w, c.h);
      if (c.x + c.w >= L.x && c.x <= L.x + L.w) ctx.strokeRect(c.x, L.y, c.w, L.h);
    }
    if (this.hover) {
      const c = cell(this.hover.i, this.hover.j);
      ctx.strokeStyle = this.theme.dark ? '#ffffff' : '#000000';
      ctx.globalAlpha = 0.35;
      ctx.lineWidth = 1;
      ctx.strokeRect(L.x + 0.5, c.y, L.w - 1, c.h);
      ctx.strokeRect(c.x, L.y + 0.5, c.w, L.h - 1);
      ctx.globalAlpha = 1;
      ctx.lineWidth = 2;
      ctx.strokeRect(c.x - 1, c.y - 1, c.w + 2, c.h + 2);
    }
    if (this.drag?.box && this.boxEnd) {
      ctx.strokeStyle = this.theme.attn;
      ctx.lineWidth = 1.5;
      ctx.strokeRect(this.drag.x, this.drag.y, this.boxEnd.x - this.drag.x, this.boxEnd.y - this.drag.y);
    }
  }

  // ------------------------------------------------------------------------------------------ hover

  /** The best value known for cell (i, j), and whether it is exact. */
  valueAt(i: number, j: number): {value: number; exact: boolean; masked: boolean; beyond: boolean} {
    const d = this.data!;
    const c = coarseValue(d, i, j);
    if (c.masked || !d.long) return c;
    // the drawn tile first: log8 windows dither values under 1.3e-4 per request, so a row may differ there
    const ti = Math.floor(i / TILE);
    const tj = Math.floor(j / TILE);
    const t = this.tiles.get(this.tileKey(ti, tj));
    if (t instanceof Float32Array) return {value: t[(i - ti * TILE) * Math.min(TILE, d.k - tj * TILE) + (j - tj * TILE)], exact: true, masked: false, beyond: false};
    const row = this.rows.get(i);
    if (row) return {value: row[j], exact: d.exact, masked: false, beyond: false};
    return c;
  }

  setHover(cell: {i: number; j: number} | null, emit = false): void {
    if (cell?.i === this.hover?.i && cell?.j === this.hover?.j) return;
    const t0 = performance.now();
    const rowChanged = cell?.i !== this.hover?.i;
    this.hover = cell;
    this.drawOverlay();
    this.describeHover();
    if (rowChanged && this.painter) {
      const i = cell && cell.i < this.data!.q ? cell.i : null; // a padding row has no row to show
      const row = i !== null ? this.rows.get(i) : undefined;
      this.painter.paintRow(this.stack.ctx(0, false), this.v, i, row ?? null, this.data!.exact);
      if (i !== null && !row) this.loadRowSoon(i);
    }
    this.el.dataset.hoverMs = (performance.now() - t0).toFixed(1);
    if (emit) this.opts.onHover?.(cell);
  }

  private describeHover(): void {
    const d = this.data!;
    const hv = this.hover;
    const ds = this.el.dataset;
    if (!hv) {
      ds.hover = ds.hoverValue = ds.hoverExact = '';
      this.readout.textContent = 'Hover a cell for its query, key and weight.';
      this.stack.top.title = '';
      return;
    }
    const {value, exact, masked, beyond} = this.valueAt(hv.i, hv.j);
    ds.hover = `${hv.i},${hv.j}`;
    ds.hoverValue = beyond ? 'padding' : masked ? 'masked' : String(value);
    ds.hoverExact = exact ? '1' : '0';
    const what = beyond ? `padding: past this record’s ${d.q} × ${d.k} tokens` : masked ? 'masked' : `${d.signed ? 'B − A ' : ''}${formatValue(value)}${exact ? (d.long ? ' (exact)' : ' (stored)') : (d.agg === 'max' ? ' (largest in its pyramid bin; loading exact)' : ' (pyramid bin mean; loading exact)')}`;
    const text = `query ${hv.i} “${d.queryLabels[hv.i] ?? ''}” → key ${hv.j} “${d.keyLabels[hv.j] ?? ''}”: ${what}`;
    this.readout.textContent = text;
    this.stack.top.title = text;
    const row = this.rows.get(hv.i);
    if (row) {
      // the row's strongest keys (exact): what a query reads, wherever it is
      const top = topIndices(row, 5);
      ds.rowTop = top.map((j) => `${j}:${row[j].toPrecision(3)}`).join(',');
    }
  }

  private loadRowSoon(i: number): void {
    if (this.rowTimer) clearTimeout(this.rowTimer);
    const gen = this.gen;
    this.rowTimer = setTimeout(() => {
      this.rowTimer = null;
      const d = this.data;
      if (!d || this.hover?.i !== i) return;
      d.loadRow(i).then(
        (row) => {
          if (gen !== this.gen) return;
          this.rows.set(i, row);
          if (this.rows.size > ROW_CACHE) this.rows.delete(this.rows.keys().next().value!);
          if (this.hover?.i !== i || !this.painter) return;
          this.painter.paintRow(this.stack.ctx(0, false), this.v, i, row, d.exact);
          this.describeHover();
          this.el.dataset.rowLoaded = String(i);
        },
        () => undefined,
      );
    }, 40);
  }

  // ------------------------------------------------------------------------------------------ pointer

  private plotPoint(e: MouseEvent): {px: number; py: number; inside: boolean} {
    const L = this.painter!.layout;
    const p = this.stack.toContent(e);
    const px = p.x - L.x;
    const py = p.y - L.y;
    return {px, py, inside: px >= 0 && py >= 0 && px < L.w && py < L.h};
  }

  private zoomBy(factor: number, fx: number, fy: number, fast = false): void {
    const d = this.data;
    if (!d) return;
    this.setViewport(zoomAt(this.v, factor, fx, fy, planeOf(d).q, planeOf(d).k), true, fast);
  }

  private onWheel(e: WheelEvent): void {
    if (!this.painter || !this.data) return;
    const p = this.plotPoint(e);
    if (!p.inside) return;
    e.preventDefault();
    const L = this.painter.layout;
    // pixels or lines; a pinch arrives as a wheel with ctrlKey and small deltas
    const dy = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
    this.zoomBy(Math.exp(dy * (e.ctrlKey ? 0.01 : 0.002)), p.px / L.w, p.py / L.h, true);
  }

  private onDown(e: MouseEvent): void {
    if (!this.painter || e.button !== 0) return;
    const p = this.plotPoint(e);
    if (!p.inside) return;
    e.preventDefault();
    const c = this.stack.toContent(e);
    this.drag = {x: c.x, y: c.y, v: this.viewport(), box: e.shiftKey, moved: false};
    this.boxEnd = null;
  }

  private onUp = (e: MouseEvent): void => {
    const g = this.drag;
    if (!g) return;
    this.drag = null;
    if (g.box && this.boxEnd && this.painter && this.data) {
      const L = this.painter.layout;
      const tok = (x: number, y: number) => ({x: g.v.x0 + ((x - L.x) / L.w) * (g.v.x1 - g.v.x0), y: g.v.y0 + ((y - L.y) / L.h) * (g.v.y1 - g.v.y0)});
      const a = tok(g.x, g.y);
      const b = tok(this.boxEnd.x, this.boxEnd.y);
      this.boxEnd = null;
      if (Math.abs(b.x - a.x) > 0 && Math.abs(b.y - a.y) > 0) this.setViewport(boxViewport(a.x, a.y, b.x, b.y, planeOf(this.data).q, planeOf(this.data).k), true);
      else this.drawOverlay();
    }
    void e;
  };

  private onMove(e: MouseEvent): void {
    const p = this.painter;
    const d = this.data;
    if (!p || !d) return;
    const g = this.drag;
    if (g && (e.buttons & 1) === 1) {
      const c = this.stack.toContent(e);
      if (g.box) {
        this.boxEnd = c;
        this.drawOverlay();
        return;
      }
      const L = p.layout;
      const dx = ((g.x - c.x) / L.w) * (g.v.x1 - g.v.x0);
      const dy = ((g.y - c.y) / L.h) * (g.v.y1 - g.v.y0);
      g.moved = true;
      this.v = panBy(g.v, dx, dy, planeOf(d).q, planeOf(d).k);
      this.frames.schedule(false);
      this.opts.onViewport?.(this.viewport());
      return;
    }
    const q = this.plotPoint(e);
    this.setHover(cellAtPixel(this.v, p.layout.w, p.layout.h, q.px, q.py, planeOf(d).q, planeOf(d).k), true);
  }

  private onDblClick(e: MouseEvent): void {
    if (!this.painter) return;
    const p = this.plotPoint(e);
    if (!p.inside) return;
    e.preventDefault();
    const L = this.painter.layout;
    this.zoomBy(e.shiftKey ? 2 : 0.5, p.px / L.w, p.py / L.h);
  }
}

/** Indices of the n largest |values|, largest first. */
export function topIndices(row: ArrayLike<number>, n: number): number[] {
  const idx: number[] = [];
  for (let j = 0; j < row.length; j++) {
    const a = Math.abs(row[j]);
    if (idx.length < n || a > Math.abs(row[idx[idx.length - 1]])) {
      let p = idx.length < n ? idx.length : n - 1;
      idx[p] = j;
      while (p > 0 && Math.abs(row[idx[p - 1]]) < a) {
        idx[p] = idx[p - 1];
        idx[p - 1] = j;
        p--;
      }
    }
  }
  return idx;
}
