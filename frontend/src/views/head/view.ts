// Head view (BertViz's attention-head view) on canvas: queries on the left, keys on the right, one colour
// per head, line opacity = weight / number of active heads. Click a head swatch to toggle it, double-click
// to solo it (double-click the only active head to bring all back). Hover a query token: only its lines, and
// per-head bars on the keys; hover a key token: the transposed view. At rest, invisible lines are skipped
// and an optional top-k per query token thins long inputs; the hovered token always shows all its lines.
// The drawing itself is HeadPainter (draw.ts); this is its DOM: canvases, swatches, pointer.
import {scrollParent} from '../../draw/canvas';
import {lighten, type Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {rowAt} from '../../draw/tokens';
import {el} from '../common';
import {CanvasView} from '../canvas-view';
import type {TopK} from '../../types';
import type {HeadData} from './data';
import {defaultOpacity, HeadPainter, headLayout, type HeadHover, type OpacityRule} from './draw';

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
  /** Opacity rule from the URL (null: the data's default) and where to remember a change. */
  opacity?: OpacityRule | null;
  onOpacity?: (rule: OpacityRule) => void;
  testid?: string;
}

export class HeadView extends CanvasView {
  readonly el: HTMLElement;
  private swatchBar: HTMLElement;
  private legend: HTMLElement;
  private painter: HeadPainter | null = null;
  private theme: Theme;
  private active: Set<number> = new Set();
  private activeSel: number[] | null;
  private topk: number;
  private hover: HeadHover | null = null;
  private linesDrawn = 0;
  private opacityBar: HTMLElement;
  private modeSel: HTMLSelectElement;
  private gainInput: HTMLInputElement;
  private minimap: HTMLCanvasElement;
  /** The minimap and, over it, the hovered query's mark: an element moved on hover, so a hover repaints no canvas. */
  private minimapWrap: HTMLElement;
  private minimapMark: HTMLElement;
  /** What the minimap canvas shows (redrawn only when it changes) and its bars (per strip row, cached). */
  private minimapState = '';
  private minimapBars: {sp: TopK; H: number; dist: Float32Array} | null = null;
  private exactTimer: ReturnType<typeof setTimeout> | null = null;
  private hoverGen = 0;

  constructor(private opts: HeadViewOptions) {
    // layers: 0 the hovered token's lines (repainted on every hover: sized to the screen), 1 resting lines, 2 tokens
    // (1 and 2 drawn whole, shown as bitmaps)
    super(3, 'head-canvas', [0], [1, 2]);
    this.theme = opts.theme;
    this.activeSel = opts.active;
    this.topk = opts.topk;
    this.swatchBar = el('div', {class: 'swatches', 'data-testid': 'head-swatches'});
    this.legend = el('div', {class: 'legend'});
    this.modeSel = el('select', {'data-testid': 'opacity-mode', title: 'Line opacity: absolute (weight / active heads, as BertViz) or per row (relative to each query row’s largest weight: every row shows its strongest line)'});
    this.modeSel.append(el('option', {value: 'abs', text: 'absolute'}), el('option', {value: 'row', text: 'per row'}));
    this.gainInput = el('input', {type: 'number', min: 0.25, max: 64, step: 0.25, value: 1, class: 'gain', 'data-testid': 'opacity-gain', title: 'Opacity gain: alpha = min(1, gain × weight / (active heads × norm))'});
    this.opacityBar = el('div', {class: 'view-toolbar'}, el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'Opacity'}), this.modeSel), el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'gain'}), this.gainInput));
    const change = () => {
      const rule: OpacityRule = {mode: this.modeSel.value as OpacityRule['mode'], gain: Math.min(64, Math.max(0.25, Number(this.gainInput.value) || 1))};
      this.setOpacity(rule);
      this.opts.onOpacity?.(rule);
    };
    this.modeSel.addEventListener('change', change);
    this.gainInput.addEventListener('change', change);
    this.minimap = el('canvas', {class: 'minimap', 'data-testid': 'head-minimap', title: 'The whole sequence: click to scroll there'});
    this.minimap.hidden = true;
    this.minimap.addEventListener('click', (e) => this.onMinimap(e));
    this.minimapMark = el('div', {class: 'minimap-mark', 'data-testid': 'head-minimap-mark'});
    this.minimapMark.hidden = true;
    this.minimapWrap = el('div', {class: 'minimap-wrap'}, this.minimap, this.minimapMark);
    this.minimapWrap.hidden = true;
    this.el = el('div', {class: 'head-view', 'data-testid': opts.testid ?? 'head-view'}, this.swatchBar, this.opacityBar, this.legend, el('div', {class: 'head-body'}, this.stack.root, this.minimapWrap));
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
    this.redraw();
  }

  setData(d: HeadData): void {
    this.hover = null;
    this.hoverGen++;
    const layout = headLayout(d, this.theme);
    const opacity = this.opts.opacity ?? defaultOpacity(d);
    this.painter = new HeadPainter(d, layout, {theme: this.theme, colorOf: this.opts.colorOf, active: [], topk: this.topk, opacity});
    this.modeSel.value = opacity.mode;
    this.modeSel.disabled = !!d.signed;
    this.gainInput.value = String(opacity.gain);
    this.el.dataset.opacity = `${opacity.mode}:${opacity.gain}`;
    this.el.dataset.long = d.sparse ? '1' : '0';
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
    this.redraw();
  }

  opacityRule(): OpacityRule {
    return this.painter?.opacity ?? {mode: 'abs', gain: 1};
  }

  setOpacity(rule: OpacityRule): void {
    this.opts.opacity = rule;
    this.modeSel.value = rule.mode;
    this.gainInput.value = String(rule.gain);
    this.el.dataset.opacity = `${rule.mode}:${rule.gain}`;
    this.painter?.set({opacity: rule});
    this.redraw();
  }

  /** Find-a-token: scroll query token `pos` into view and hover it (its lines drawn). */
  reveal(pos: number): void {
    const p = this.painter;
    if (!p) return;
    const d = p.data;
    // the shown rows may be filtered or merged: the first row at or after the position
    const i = Math.min(d.queryLabels.length - 1, Math.max(0, d.rowIndex ? d.rowIndex(pos) : pos));
    const y = p.layout.L.top + i * p.layout.L.rowH;
    this.el.dataset.found = String(i);
    const r = this.stack.root.getBoundingClientRect();
    const target = this.stack.root.ownerDocument.scrollingElement;
    const sc = scrollParent(this.stack.root);
    const screen = sc === target ? window.innerHeight : sc.clientHeight;
    const top = sc === target ? window.scrollY + r.top + y - screen / 2 : sc.scrollTop + (r.top - sc.getBoundingClientRect().top) + y - screen / 2;
    if (sc === target) window.scrollTo({top});
    else sc.scrollTop = top;
    this.setHover('left', i, true);
  }

  setActive(active: number[] | null): void {
    if (JSON.stringify(active) === JSON.stringify(this.activeSel)) return;
    this.activeSel = active;
    this.resolveActive();
    this.renderSwatches();
    this.redraw();
  }

  setTopk(k: number): void {
    if (k === this.topk) return;
    this.topk = k;
    this.painter?.set({topk: k});
    this.redraw();
  }

  /** Hover from outside (the other pane of a side-by-side comparison). */
  setHover(side: 'left' | 'right' | null, index: number, emit = false): void {
    const next = side && index >= 0 ? {side, index} : null;
    if (next?.side === this.hover?.side && next?.index === this.hover?.index) return;
    this.hover = next;
    this.drawHover();
    if (next && this.painter?.data.exactLine) this.fetchExactSoon(next);
    if (emit) this.opts.onHover?.(side, index);
  }

  /** Long records: the hovered token's exact row / column of every active head, once the pointer rests. */
  private fetchExactSoon(hv: HeadHover): void {
    if (this.exactTimer) clearTimeout(this.exactTimer);
    const gen = ++this.hoverGen;
    this.el.dataset.hoverExact = '0';
    this.exactTimer = setTimeout(() => {
      this.exactTimer = null;
      const p = this.painter;
      if (!p?.data.exactLine || gen !== this.hoverGen) return;
      const heads = [...p.active];
      Promise.all(heads.map((h) => p.data.exactLine!(h, hv.side, hv.index))).then(
        (lines) => {
          if (gen !== this.hoverGen || this.painter !== p) return;
          p.setExact(hv.side, hv.index, new Map(heads.map((h, i) => [h, lines[i]])));
          this.drawHover();
          const first = lines[0];
          if (first) this.el.dataset.hoverTop = topOf(first, 5);
          this.el.dataset.hoverExact = '1';
        },
        () => undefined,
      );
    }, 60);
  }

  private resolveActive(): void {
    const heads = this.data?.heads ?? [];
    const sel = this.activeSel ? heads.filter((h) => this.activeSel!.includes(h)) : heads;
    this.active = new Set(sel.length ? sel : heads);
    this.painter?.set({active: this.activeList()});
    this.prepareSoon();
  }

  /**
   * Readies the first hover while the page is idle: a query's and a key's hover drawn into the hover layer and
   * cleared, so that the first real hover finds its code compiled, its canvas allocated and what it reads
   * built (row norms; long records: each active head's top-k by key). Cold, it took 20-30 ms at 4x throttle.
   */
  private prepareSoon(): void {
    const p = this.painter;
    if (!p) return;
    const run = () => {
      if (this.painter !== p || this.hover) return;
      const ctx = this.stack.ctx(0);
      const [y0, y1] = this.stack.band(0);
      const {L, rows, cols} = p.layout;
      const i = Math.max(0, Math.min(rows - 1, Math.floor((y0 - L.top) / L.rowH)));
      p.paintHover(ctx, {side: 'left', index: i}, y0, y1);
      p.paintHover(ctx, {side: 'right', index: Math.min(i, cols - 1)}, y0, y1);
      this.stack.ctx(0);
    };
    if (typeof requestIdleCallback === 'function') requestIdleCallback(run, {timeout: 1000});
    else setTimeout(run, 0);
  }

  private activeList(): number[] {
    return (this.data?.heads ?? []).filter((h) => this.active.has(h));
  }

  protected redraw(): void {
    const p = this.painter;
    if (!p) return;
    const t0 = performance.now();
    const {y0, y1} = this.stack;
    this.minimapState = '';
    p.paintText(this.stack.ctx(2), y0, y1);
    const drawn = p.paintRest(this.stack.ctx(1), y0, y1, true);
    this.el.dataset.linesRest = String(drawn);
    this.linesDrawn = drawn;
    this.drawHover();
    this.drawMinimap();
    this.el.dataset.renderMs = (performance.now() - t0).toFixed(1);
  }

  protected override redrawView(): void {
    this.drawHover();
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
    const [y0, y1] = this.stack.band(0);
    const drawn = p.paintHover(ctx, hv, y0, y1);
    this.drawMinimap();
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

  /**
   * Beside virtualised columns: the whole sequence in a strip (the band on screen, the hovered and found
   * tokens marked; per row of the strip, how far back its queries' strongest keys lie, for long records).
   */
  private drawMinimap(): void {
    const p = this.painter;
    const m = this.minimap;
    if (!p || !this.stack.virtual) {
      m.hidden = this.minimapWrap.hidden = true;
      return;
    }
    m.hidden = this.minimapWrap.hidden = false;
    const H = Math.min(600, typeof window !== 'undefined' ? window.innerHeight - 40 : 600);
    const W = 44;
    const n = p.layout.rows;
    const t = this.theme;
    const hv = this.hover;
    const mark = this.minimapMark;
    mark.hidden = hv?.side !== 'left';
    if (hv?.side === 'left') {
      mark.style.transform = `translateY(${((hv.index / n) * H).toFixed(1)}px)`;
      if (mark.style.background !== t.attn) mark.style.background = t.attn;
    }
    const [top, bottom] = this.stack.visibleRange();
    const head = p.active[0] ?? p.data.heads[0];
    const found = this.el.dataset.found ?? '';
    const state = [H, top, bottom, head, found].join();
    if (state === this.minimapState && m.width === W && m.height === H) return;
    this.minimapState = state;
    if (m.width !== W || m.height !== H) {
      m.width = W;
      m.height = H;
      m.style.height = `${H}px`;
    }
    const ctx = m.getContext('2d');
    if (!ctx) return;
    ctx.fillStyle = t.highlight;
    ctx.fillRect(0, 0, W, H);
    const sp = p.data.sparse?.(head);
    if (sp) {
      // per strip row: the mean distance back to each query's strongest key, as a bar
      let bars = this.minimapBars;
      if (!bars || bars.sp !== sp || bars.H !== H) {
        const dist = new Float32Array(H);
        for (let y = 0; y < H; y++) {
          const a = Math.floor((y * n) / H);
          const b = Math.max(a + 1, Math.floor(((y + 1) * n) / H));
          let s = 0;
          for (let i = a; i < b; i++) s += Math.abs(i - sp.index[i * sp.k]);
          dist[y] = s / (b - a) / Math.max(1, n);
        }
        bars = this.minimapBars = {sp, H, dist};
      }
      ctx.fillStyle = t.muted;
      for (let y = 0; y < H; y++) ctx.fillRect(0, y, Math.max(0, Math.min(W, Math.sqrt(bars.dist[y]) * W)), 1);
    }
    const {L} = p.layout;
    const ya = ((top - L.top) / L.rowH / n) * H;
    const yb = ((bottom - L.top) / L.rowH / n) * H;
    ctx.strokeStyle = t.attn;
    ctx.lineWidth = 2;
    ctx.strokeRect(1, Math.max(1, ya), W - 2, Math.max(3, yb - ya));
    if (found) {
      ctx.fillStyle = '#ff9800';
      ctx.fillRect(0, (Number(found) / n) * H - 1, W, 3);
    }
  }

  private onMinimap(e: MouseEvent): void {
    const p = this.painter;
    if (!p) return;
    const r = this.minimap.getBoundingClientRect();
    const i = Math.floor(((e.clientY - r.top) / r.height) * p.layout.rows);
    this.reveal(Math.max(0, Math.min(p.layout.rows - 1, i)));
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
    this.redraw();
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

/** "j:w,…" of the n largest weights of a line (a test hook: the hovered token's exact row). */
export function topOf(line: Float32Array, n: number): string {
  // one pass keeping the n largest (ties: the lower index), not a sort of every key: lines are 32k long
  const idx: number[] = [];
  for (let j = 0; j < line.length; j++) {
    const v = line[j];
    if (idx.length === n && v <= line[idx[n - 1]]) continue;
    let at = idx.length;
    while (at > 0 && line[idx[at - 1]] < v) at--;
    idx.splice(at, 0, j);
    if (idx.length > n) idx.pop();
  }
  return idx.map((j) => `${j}:${line[j].toPrecision(4)}`).join(',');
}
