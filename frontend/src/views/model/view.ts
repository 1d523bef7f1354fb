// Model view (BertViz's model view): a layers × heads grid of thumbnails of the pooled attention from
// /overview, drawn as lines in the layer's colour (as BertViz) or as heatmaps; click a thumbnail to open
// the head detail (a head view of that layer and head) beside the grid, click it again to close it.
// Layers and heads can be included / excluded.
import {CanvasStack} from '../draw/canvas';
import {DIVERGING, alphaRamp, hexToRgb, layerColor, lighten, type Theme} from '../draw/colors';
import type {Ctx} from '../draw/ctx';
import {drawHeatmap, linearBucketer, paintCells, paintSignedCells, pixelsToCanvas} from '../draw/heatmap';
import {collectLines, drawLines} from '../draw/lines';
import type {ThumbStyle} from '../state';
import {el, type ViewBase} from './common';

export interface ModelData {
  nLayers: number;
  nHeads: number;
  /** Included layers and heads, in order. */
  layers: number[];
  heads: number[];
  /** Size of every thumbnail matrix. */
  rows: number;
  cols: number;
  cell(layer: number, head: number): Float32Array;
  signed?: boolean;
  maxAbs?: number;
  /** Shown above the grid (e.g. that token filters apply per pooled bin). */
  note?: string;
}

export interface ModelViewOptions {
  theme: Theme;
  style: ThumbStyle;
  detail: [number, number] | null;
  onDetail?: (d: [number, number] | null) => void;
  onInclude?: (layers: number[] | null, heads: number[] | null) => void;
  onStyle?: (s: ThumbStyle) => void;
}

const AXIS_LEFT = 56;
const AXIS_TOP = 40;
const GAP = 4;
const PAD = 3;
/** 'auto' draws lines up to this many candidate cells in the whole grid, heatmaps above. */
export const AUTO_LINES_MAX_CELLS = 150_000;

export function resolveStyle(style: ThumbStyle, layers: number, heads: number, rows: number, cols: number): 'lines' | 'heat' {
  if (style !== 'auto') return style;
  return layers * heads * rows * cols <= AUTO_LINES_MAX_CELLS ? 'lines' : 'heat';
}

export class ModelView implements ViewBase {
  readonly el: HTMLElement;
  private chips: HTMLElement;
  private noteEl: HTMLElement;
  private detailEl: HTMLElement;
  private stack: CanvasStack;
  private data: ModelData | null = null;
  private theme: Theme;
  private style: ThumbStyle;
  private detail: [number, number] | null;
  private tw = 64;
  private th = 64;
  private heatCache = new Map<string, HTMLCanvasElement>();
  private allLayers = 0;
  private allHeads = 0;
  private inclLayers: number[] | null = null;
  private inclHeads: number[] | null = null;

  constructor(private opts: ModelViewOptions) {
    this.theme = opts.theme;
    this.style = opts.style;
    this.detail = opts.detail;
    this.stack = new CanvasStack(2, () => this.draw());
    this.chips = el('div', {class: 'model-chips', 'data-testid': 'model-include'});
    this.noteEl = el('div', {class: 'note', 'data-testid': 'model-note'});
    this.detailEl = el('div', {class: 'model-detail', 'data-testid': 'model-detail'});
    const grid = el('div', {class: 'model-grid', 'data-testid': 'model-grid'}, this.stack.root);
    this.el = el('div', {class: 'model-view', 'data-testid': 'model-view'}, this.chips, this.noteEl, el('div', {class: 'model-body'}, grid, this.detailEl));
    this.stack.top.addEventListener('click', (e) => this.onClick(e));
    this.stack.top.addEventListener('mousemove', (e) => this.onMove(e));
  }

  setTheme(t: Theme): void {
    this.theme = t;
    this.heatCache.clear();
    this.renderChips();
    this.draw();
  }

  setStyle(s: ThumbStyle): void {
    if (s === this.style) return;
    this.style = s;
    this.renderChips();
    this.draw();
  }

  /** The include lists as selected (null: all) and the sizes they choose from. */
  setInclude(nLayers: number, nHeads: number, layers: number[] | null, heads: number[] | null): void {
    this.allLayers = nLayers;
    this.allHeads = nHeads;
    this.inclLayers = layers;
    this.inclHeads = heads;
    this.renderChips();
  }

  setData(d: ModelData): void {
    this.data = d;
    this.heatCache.clear();
    this.noteEl.textContent = d.note ?? '';
    this.noteEl.hidden = !d.note;
    this.layout();
    this.draw();
  }

  setDetail(detail: [number, number] | null, content: HTMLElement | null): void {
    this.detail = detail;
    while (this.detailEl.firstChild) this.detailEl.removeChild(this.detailEl.firstChild);
    if (content && detail) {
      const [l, h] = detail;
      const close = el('button', {class: 'close', type: 'button', title: 'Close the head detail', 'data-testid': 'model-detail-close', text: '×'});
      close.addEventListener('click', () => this.opts.onDetail?.(null));
      this.detailEl.appendChild(el('div', {class: 'detail-title'}, `Layer ${l}, Head ${h}`, close));
      this.detailEl.appendChild(content);
    }
    this.detailEl.hidden = !(content && detail);
    this.el.dataset.detail = detail ? `${detail[0]}.${detail[1]}` : '';
    this.draw();
  }

  dispose(): void {
    this.stack.dispose();
  }

  private layout(): void {
    const d = this.data!;
    const nh = Math.max(1, d.heads.length);
    // width of this pane's share of the main area (panes shrink to their content, so not el.clientWidth)
    const panes = this.el.closest('.panes');
    const n = panes ? Math.max(1, panes.children.length) : 1;
    const total = (panes as HTMLElement | null)?.clientWidth || document.documentElement.clientWidth || 960;
    const avail = Math.max(400, total / n - (n > 1 ? 24 : 0) - (this.detail ? 460 : 0));
    this.tw = Math.max(24, Math.min(100, Math.floor((avail - AXIS_LEFT) / nh) - GAP));
    const aspect = d.cols > 0 ? d.rows / d.cols : 1;
    this.th = Math.max(24, Math.min(160, Math.round(this.tw * Math.max(0.5, Math.min(2, aspect)))));
    this.stack.resize(AXIS_LEFT + nh * (this.tw + GAP), AXIS_TOP + d.layers.length * (this.th + GAP));
    this.el.dataset.thumbWidth = String(this.tw);
    this.el.dataset.thumbHeight = String(this.th);
    this.el.dataset.gridLeft = String(AXIS_LEFT);
    this.el.dataset.gridTop = String(AXIS_TOP);
    this.el.dataset.gap = String(GAP);
  }

  exportSize(): {width: number; height: number} {
    return {width: this.stack.width, height: this.stack.height};
  }

  private thumbXY(li: number, hi: number): [number, number] {
    return [AXIS_LEFT + hi * (this.tw + GAP), AXIS_TOP + li * (this.th + GAP)];
  }

  private draw(): void {
    if (!this.data) return;
    const ctx = this.stack.ctx(0);
    const res = this.paintGrid(ctx, this.stack.y0, this.stack.y1);
    this.stack.ctx(1);
    this.el.dataset.cells = String(res.cells);
    this.stack.root.parentElement?.setAttribute('data-cells', String(res.cells));
    this.el.dataset.linesDrawn = String(res.lines);
    this.el.dataset.style = res.style;
  }

  paint(ctx: Ctx): void {
    this.paintGrid(ctx, -Infinity, Infinity);
  }

  private paintGrid(ctx: Ctx, y0: number, y1: number): {cells: number; lines: number; style: string} {
    const d = this.data!;
    const t = this.theme;
    const style = resolveStyle(this.style, d.layers.length, d.heads.length, d.rows, d.cols);
    ctx.fillStyle = t.text;
    ctx.font = 'bold 13px Roboto, Arial, sans-serif';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText('Heads', AXIS_LEFT + (d.heads.length * (this.tw + GAP)) / 2, 10);
    ctx.font = '11px Roboto, Arial, sans-serif';
    d.heads.forEach((h, hi) => ctx.fillText(String(h), AXIS_LEFT + hi * (this.tw + GAP) + this.tw / 2, 28));
    ctx.save();
    ctx.textAlign = 'right';
    d.layers.forEach((l, li) => {
      const y = AXIS_TOP + li * (this.th + GAP) + this.th / 2;
      if (y < y0 - this.th || y > y1 + this.th) return;
      ctx.fillText(String(l), AXIS_LEFT - 8, y);
    });
    ctx.restore();
    ctx.font = 'bold 13px Roboto, Arial, sans-serif';
    ctx.textAlign = 'left';
    ctx.fillText('Layers', 2, AXIS_TOP - 12);
    let cells = 0;
    let lines = 0;
    const scale = d.signed ? 1 / Math.max(d.maxAbs ?? 0, 1e-9) : 1;
    d.layers.forEach((l, li) => {
      const yTop = AXIS_TOP + li * (this.th + GAP);
      if (yTop + this.th < y0 || yTop > y1) return;
      const color = layerColor(l);
      d.heads.forEach((h, hi) => {
        const [x, y] = this.thumbXY(li, hi);
        const selected = this.detail && this.detail[0] === l && this.detail[1] === h;
        ctx.fillStyle = selected ? t.highlight : t.dark ? '#2a2b2e' : '#fafafa';
        ctx.fillRect(x, y, this.tw, this.th);
        if (selected) {
          ctx.strokeStyle = color;
          ctx.lineWidth = 2;
          ctx.strokeRect(x + 1, y + 1, this.tw - 2, this.th - 2);
        }
        const m = d.cell(l, h);
        if (style === 'heat') {
          drawHeatmap(ctx, this.heatImage(l, h, m, color), x + PAD, y + PAD, this.tw - 2 * PAD, this.th - 2 * PAD);
        } else {
          const g = {
            x1: x + PAD,
            x2: x + this.tw - PAD,
            rowY: (i: number) => y + PAD + ((i + 0.5) * (this.th - 2 * PAD)) / d.rows,
            colY: (j: number) => y + PAD + ((j + 0.5) * (this.th - 2 * PAD)) / d.cols,
          };
          ctx.lineWidth = 1;
          if (d.signed) {
            lines += drawLines(ctx, collectLines(m, d.rows, d.cols, {scale, sign: 1}), DIVERGING.pos, g);
            lines += drawLines(ctx, collectLines(m, d.rows, d.cols, {scale, sign: -1}), DIVERGING.neg, g);
          } else {
            lines += drawLines(ctx, collectLines(m, d.rows, d.cols, {scale}), color, g);
          }
        }
        cells++;
      });
    });
    return {cells, lines, style};
  }

  private heatImage(l: number, h: number, m: Float32Array, color: string): HTMLCanvasElement {
    const key = `${l}.${h}`;
    let c = this.heatCache.get(key);
    if (!c) {
      const d = this.data!;
      const px = d.signed
        ? paintSignedCells(m, d.rows, d.cols, alphaRamp(hexToRgb(DIVERGING.pos), 0.5), alphaRamp(hexToRgb(DIVERGING.neg), 0.5), linearBucketer(d.maxAbs ?? 1))
        : paintCells(m, d.rows, d.cols, alphaRamp(hexToRgb(color), 0.5), linearBucketer(1));
      c = pixelsToCanvas(px, d.cols, d.rows);
      this.heatCache.set(key, c);
    }
    return c;
  }

  private hit(e: MouseEvent): [number, number] | null {
    const d = this.data;
    if (!d) return null;
    const {x, y} = this.stack.toContent(e);
    const hi = Math.floor((x - AXIS_LEFT) / (this.tw + GAP));
    const li = Math.floor((y - AXIS_TOP) / (this.th + GAP));
    if (hi < 0 || li < 0 || hi >= d.heads.length || li >= d.layers.length) return null;
    const [tx, ty] = this.thumbXY(li, hi);
    if (x > tx + this.tw || y > ty + this.th) return null;
    return [d.layers[li], d.heads[hi]];
  }

  private onMove(e: MouseEvent): void {
    const h = this.hit(e);
    this.stack.top.style.cursor = h ? 'pointer' : 'default';
    this.stack.top.title = h ? `Layer ${h[0]}, Head ${h[1]}: click for the head detail` : '';
  }

  private onClick(e: MouseEvent): void {
    const h = this.hit(e);
    if (!h) return;
    const same = this.detail && this.detail[0] === h[0] && this.detail[1] === h[1];
    this.opts.onDetail?.(same ? null : h);
  }

  private renderChips(): void {
    const bar = this.chips;
    while (bar.firstChild) bar.removeChild(bar.firstChild);
    const mk = (label: string, n: number, incl: number[] | null, kind: 'layer' | 'head') => {
      const group = el('div', {class: 'chip-group'}, el('span', {class: 'chip-label', text: label}));
      const on = new Set(incl ?? Array.from({length: n}, (_, i) => i));
      for (let i = 0; i < n; i++) {
        const c = kind === 'layer' ? layerColor(i) : this.theme.muted;
        const b = el('button', {
          type: 'button',
          class: 'chip' + (on.has(i) ? ' on' : ''),
          'aria-pressed': on.has(i) ? 'true' : 'false',
          'data-testid': `include-${kind}-${i}`,
          title: `${kind === 'layer' ? 'Layer' : 'Head'} ${i}: click to include/exclude, double-click to show only it`,
          text: String(i),
        });
        b.style.borderColor = c;
        if (on.has(i) && kind === 'layer') {
          b.style.backgroundColor = lighten(c, 0.55);
          b.style.color = '#202020';
        }
        b.addEventListener('click', () => {
          const next = new Set(on);
          if (next.has(i)) {
            if (next.size === 1) return;
            next.delete(i);
          } else next.add(i);
          const list = [...next].sort((a, b2) => a - b2);
          this.emitInclude(kind, list.length === n ? null : list);
        });
        b.addEventListener('dblclick', () => {
          const only = on.size === 1 && on.has(i);
          this.emitInclude(kind, only ? null : [i]);
        });
        group.appendChild(b);
      }
      return group;
    };
    bar.appendChild(mk('Layers', this.allLayers, this.inclLayers, 'layer'));
    bar.appendChild(mk('Heads', this.allHeads, this.inclHeads, 'head'));
    const styleSel = el('select', {'data-testid': 'thumb-style', title: 'How thumbnails are drawn'});
    for (const [v, label] of [
      ['auto', 'auto'],
      ['lines', 'lines'],
      ['heat', 'heatmap'],
    ] as const) {
      const o = el('option', {value: v, text: label});
      if (v === this.style) o.selected = true;
      styleSel.appendChild(o);
    }
    styleSel.addEventListener('change', () => this.opts.onStyle?.(styleSel.value as ThumbStyle));
    bar.appendChild(el('label', {class: 'chip-group'}, el('span', {class: 'chip-label', text: 'Thumbnails'}), styleSel));
  }

  private emitInclude(kind: 'layer' | 'head', list: number[] | null): void {
    if (kind === 'layer') this.inclLayers = list;
    else this.inclHeads = list;
    this.renderChips();
    this.opts.onInclude?.(this.inclLayers, this.inclHeads);
  }
}
