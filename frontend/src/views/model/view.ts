// Model view (BertViz's model view): a layers × heads grid of thumbnails of the pooled attention from
// /overview, drawn as lines in the layer's colour (as BertViz) or as heatmaps; click a thumbnail to open
// the head detail (a head view of that layer and head) beside the grid, click it again to close it.
// Layers and heads can be included / excluded.
import {layerColor, lighten, type Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import type {ThumbStyle} from './draw';
import {el} from '../common';
import {CanvasView} from '../canvas-view';
import type {ModelData} from './data';
import {AXIS_LEFT, AXIS_TOP, GAP, ModelPainter, modelLayout} from './draw';

export interface ModelViewOptions {
  theme: Theme;
  style: ThumbStyle;
  detail: [number, number] | null;
  onDetail?: (d: [number, number] | null) => void;
  onInclude?: (layers: number[] | null, heads: number[] | null) => void;
  onStyle?: (s: ThumbStyle) => void;
}

export class ModelView extends CanvasView {
  readonly el: HTMLElement;
  private chips: HTMLElement;
  private noteEl: HTMLElement;
  private detailEl: HTMLElement;
  private painter: ModelPainter | null = null;
  private theme: Theme;
  private style: ThumbStyle;
  private detail: [number, number] | null;
  private allLayers = 0;
  private allHeads = 0;
  private inclLayers: number[] | null = null;
  private inclHeads: number[] | null = null;

  constructor(private opts: ModelViewOptions) {
    super(2);
    this.theme = opts.theme;
    this.style = opts.style;
    this.detail = opts.detail;
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
    this.painter?.set({theme: t});
    this.renderChips();
    this.redraw();
  }

  setStyle(s: ThumbStyle): void {
    if (s === this.style) return;
    this.style = s;
    this.painter?.set({style: s});
    this.renderChips();
    this.redraw();
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
    this.noteEl.textContent = d.note ?? '';
    this.noteEl.hidden = !d.note;
    // width of this pane's share of the main area (panes shrink to their content, so not el.clientWidth)
    const panes = this.el.closest('.panes');
    const n = panes ? Math.max(1, panes.children.length) : 1;
    const total = (panes as HTMLElement | null)?.clientWidth || document.documentElement.clientWidth || 960;
    const avail = Math.max(400, total / n - (n > 1 ? 24 : 0) - (this.detail ? 460 : 0));
    const layout = modelLayout(d, avail);
    this.painter = new ModelPainter(d, layout, {theme: this.theme, style: this.style, detail: this.detail});
    this.stack.resize(layout.width, layout.height);
    this.el.dataset.thumbWidth = String(layout.tw);
    this.el.dataset.thumbHeight = String(layout.th);
    this.el.dataset.gridLeft = String(AXIS_LEFT);
    this.el.dataset.gridTop = String(AXIS_TOP);
    this.el.dataset.gap = String(GAP);
    this.redraw();
  }

  setDetail(detail: [number, number] | null, content: HTMLElement | null): void {
    this.detail = detail;
    this.painter?.set({detail});
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
    this.redraw();
  }

  protected redraw(): void {
    const p = this.painter;
    if (!p) return;
    const res = p.paint(this.stack.ctx(0), this.stack.y0, this.stack.y1);
    this.stack.ctx(1);
    this.el.dataset.cells = String(res.cells);
    this.stack.root.parentElement?.setAttribute('data-cells', String(res.cells));
    this.el.dataset.linesDrawn = String(res.lines);
    this.el.dataset.style = res.style;
  }

  paint(ctx: Ctx): void {
    this.painter?.paint(ctx);
  }

  private hit(e: MouseEvent): [number, number] | null {
    if (!this.painter) return null;
    const {x, y} = this.stack.toContent(e);
    return this.painter.hit(x, y);
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
        const c = kind === 'layer' ? layerColor(i, n) : this.theme.muted;
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
