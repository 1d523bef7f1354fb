// The Heads view's DOM: metric and filter controls, the layers × heads heatmap (click a cell: choose that
// head), the sortable table of heads (click a column: sort; a row: choose it), the chosen head's score over
// steps, and the examples where it scores highest (click: the head view of that example at that head and
// step). Knows nothing about HTTP.
import {CanvasStack} from '../../draw/canvas';
import type {Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {cellAt} from '../../draw/grid';
import {formatValue} from '../../math';
import {clear, el, type ViewBase} from '../common';
import {metricInfo, SORT_KEYS, type HeadsData, type SortKey} from './data';
import {HeadsPainter, headsLayout, TREND_H, TREND_W} from './draw';

export interface HeadsViewOptions {
  theme: Theme;
  onMetric?: (m: string) => void;
  onSort?: (key: SortKey, asc: boolean) => void;
  onFilter?: (text: string) => void;
  onChoose?: (layer: number, head: number) => void;
  /** The head view of `example` at (layer, head) and the shown step. */
  onOpenExample?: (example: string, layer: number, head: number) => void;
}

const MAX_TABLE_ROWS = 200; // rows rendered (1,024 heads of a 32 × 32 model: filter or sort to see others)
const SORT_LABELS: Record<SortKey, string> = {layer: 'Layer', head: 'Head', mean: 'Mean', std: '± std', min: 'Min', max: 'Max', n: 'n'};

export class HeadsView implements ViewBase {
  readonly el: HTMLElement;
  private theme: Theme;
  private data: HeadsData | null = null;
  private painter: HeadsPainter | null = null;
  private heat: CanvasStack;
  private chart: CanvasStack;
  private heatEl: HTMLElement;
  private toolbar: HTMLElement;
  private notesEl: HTMLElement;
  private table: HTMLTableElement;
  private examplesEl: HTMLElement;
  private trendTitle: HTMLElement;
  private readout: HTMLElement;
  private hover: [number, number] | null = null;

  constructor(private opts: HeadsViewOptions) {
    this.theme = opts.theme;
    // the heatmap and the trend (drawn whole) as bitmaps; the hover's marks (heat layer 1) repainted
    this.heat = new CanvasStack(2, () => this.drawHeat(), {bitmapLayers: [0]});
    this.chart = new CanvasStack(1, () => this.drawChart(), {bitmapLayers: [0]});
    this.heat.root.setAttribute('data-testid', 'heads-canvas');
    this.chart.root.setAttribute('data-testid', 'heads-trend');
    this.toolbar = el('div', {class: 'view-toolbar'});
    this.notesEl = el('div', {class: 'notes', 'data-testid': 'heads-notes'});
    this.readout = el('div', {class: 'readout', 'data-testid': 'heads-hover'});
    this.heatEl = el('div', {class: 'training-heat', 'data-testid': 'heads-heatmap'}, this.heat.root, this.readout);
    this.table = el('table', {class: 'heads-table', 'data-testid': 'heads-table'});
    this.examplesEl = el('ol', {class: 'ranking', 'data-testid': 'heads-examples'});
    this.trendTitle = el('div', {class: 'chart-title', 'data-testid': 'heads-trend-title'});
    this.el = el(
      'div',
      {class: 'heads-view', 'data-testid': 'heads-view'},
      this.toolbar,
      this.notesEl,
      el('div', {class: 'training-body'}, this.heatEl, el('div', {class: 'training-traj'}, this.trendTitle, this.chart.root, el('div', {class: 'changes-title', text: 'Where it scores highest'}), this.examplesEl)),
      el('div', {class: 'heads-table-wrap'}, this.table),
    );
    const top = this.heat.top;
    top.addEventListener('mousemove', (e) => {
      const p = this.painter;
      if (!p) return;
      const {x, y} = this.heat.toContent(e);
      const c = cellAt(p.layout.G, x, y);
      this.hover = c ? [c.row, c.col] : null;
      this.drawHeatOverlay();
    });
    top.addEventListener('mouseleave', () => {
      this.hover = null;
      this.drawHeatOverlay();
    });
    top.addEventListener('click', (e) => {
      const p = this.painter;
      if (!p) return;
      const {x, y} = this.heat.toContent(e);
      const c = cellAt(p.layout.G, x, y);
      if (c) this.opts.onChoose?.(c.row, c.col);
    });
  }

  setTheme(t: Theme): void {
    this.theme = t;
    if (this.painter) this.painter.theme = t;
    this.drawHeat();
    this.drawChart();
  }

  setData(d: HeadsData): void {
    this.data = d;
    const L = headsLayout(d);
    this.painter = new HeadsPainter(d, L, this.theme);
    this.heat.resize(L.heat.width, L.heat.height);
    this.chart.resize(TREND_W, TREND_H);
    this.renderToolbar();
    this.renderNotes();
    this.renderTable();
    this.renderExamples();
    this.drawHeat();
    this.drawChart();
    this.el.dataset.metric = d.metric;
    this.el.dataset.step = String(d.step);
    this.el.dataset.examples = String(d.examples);
    this.el.dataset.chosen = d.chosen ? `${d.chosen[0]},${d.chosen[1]}` : '';
    this.el.dataset.sort = `${d.sort}:${d.asc ? 'asc' : 'desc'}`;
    this.el.dataset.rows = String(d.rows.length);
  }

  exportSize(): {width: number; height: number} {
    return this.painter?.exportSize() ?? {width: 1, height: 1};
  }

  paint(ctx: Ctx): void {
    this.painter?.paint(ctx);
  }

  dispose(): void {
    this.heat.dispose();
    this.chart.dispose();
  }

  private renderToolbar(): void {
    const d = this.data!;
    const b = this.toolbar;
    clear(b);
    const ms = el('select', {'data-testid': 'heads-metric', title: 'Per-head metric (docs/metrics.md)'});
    for (const m of d.metrics) ms.appendChild(el('option', {value: m, text: metricInfo(m).label}));
    ms.value = d.metric;
    ms.addEventListener('change', () => this.opts.onMetric?.(ms.value));
    const filter = el('input', {type: 'search', 'data-testid': 'heads-filter', value: d.filter, placeholder: 'L3  H0-7  >0.5', title: 'Keep heads: L3 or L2-5 (layers), H7 or H0-3 (heads), >0.5 / <0.2 (mean); terms combine'});
    filter.addEventListener('change', () => this.opts.onFilter?.(filter.value));
    b.appendChild(el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'Metric'}), ms));
    b.appendChild(el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'Filter'}), filter));
    b.appendChild(el('span', {class: 'hint', 'data-testid': 'heads-summary', text: `${d.examples} examples at step ${d.step} · ${d.rows.length} of ${d.all.length} heads`}));
  }

  private renderNotes(): void {
    const d = this.data!;
    clear(this.notesEl);
    this.notesEl.appendChild(el('div', {class: 'legend', 'data-testid': 'heads-help', text: `${d.label}: ${d.help}. Each head's mean over the tag's examples at this step, ± the standard deviation across examples, min, max and n (examples where it is defined). Compares heads with each other and each head across steps; for another run, open its Heads view.`}));
    if (d.filterError) this.notesEl.appendChild(el('div', {class: 'note', 'data-testid': 'heads-filter-error', text: d.filterError}));
    for (const n of d.notes) this.notesEl.appendChild(el('div', {class: 'note', text: n}));
  }

  private renderTable(): void {
    const d = this.data!;
    const t = this.table;
    clear(t);
    const head = el('tr');
    for (const k of SORT_KEYS.slice(5).concat(SORT_KEYS.slice(0, 5))) {
      const active = d.sort === k;
      const btn = el('button', {type: 'button', class: 'sort' + (active ? ' active' : ''), 'data-testid': `heads-sort-${k}`, title: `Sort by ${SORT_LABELS[k]} (again: reverse)`, text: SORT_LABELS[k] + (active ? (d.asc ? ' ▲' : ' ▼') : '')});
      // a new column sorts scores high first and indices low first; the active one reverses
      btn.addEventListener('click', () => this.opts.onSort?.(k, active ? !d.asc : k === 'layer' || k === 'head'));
      head.appendChild(el('th', {}, btn));
    }
    t.appendChild(el('thead', {}, head));
    const body = el('tbody');
    d.rows.slice(0, MAX_TABLE_ROWS).forEach((r, i) => {
      const chosen = d.chosen && d.chosen[0] === r.layer && d.chosen[1] === r.head;
      const tr = el(
        'tr',
        {'data-testid': `heads-row-${i}`, 'data-head': `${r.layer},${r.head}`, 'data-mean': Number.isFinite(r.mean) ? String(r.mean) : '', class: chosen ? 'chosen' : undefined, title: 'Choose this head'},
        el('td', {text: String(d.layerIds[r.layer])}),
        el('td', {text: String(d.headIds[r.head])}),
        el('td', {text: formatValue(r.mean)}),
        el('td', {text: formatValue(r.std)}),
        el('td', {text: formatValue(r.min)}),
        el('td', {text: formatValue(r.max)}),
        el('td', {text: Number.isFinite(r.n) ? String(r.n) : '–'}),
      );
      tr.addEventListener('click', () => this.opts.onChoose?.(r.layer, r.head));
      body.appendChild(tr);
    });
    t.appendChild(body);
    if (d.rows.length > MAX_TABLE_ROWS) t.appendChild(el('caption', {text: `first ${MAX_TABLE_ROWS} of ${d.rows.length} heads: filter or sort to see others`}));
  }

  private renderExamples(): void {
    const d = this.data!;
    clear(this.examplesEl);
    const c = d.chosen;
    this.trendTitle.textContent = c ? `L${d.layerIds[c[0]]} H${d.headIds[c[1]]}: mean ${d.label} over steps` : 'Choose a head';
    if (!c) return;
    d.top.forEach((x, i) => {
      const btn = el('button', {type: 'button', class: 'rank', 'data-testid': `heads-example-${i}`, 'data-example': x.example, 'data-score': String(x.score), title: `Open example ${x.example} in the head view at layer ${d.layerIds[c[0]]}, head ${d.headIds[c[1]]}, step ${d.step}`, text: `${x.example} · ${formatValue(x.score)}`});
      btn.addEventListener('click', () => this.opts.onOpenExample?.(x.example, c[0], c[1]));
      this.examplesEl.appendChild(el('li', {}, btn));
    });
    this.examplesEl.dataset.n = String(d.topN);
  }

  private drawHeat(): void {
    const p = this.painter;
    if (!p) return;
    const G = p.layout.G;
    const ds = this.heatEl.dataset;
    ds.cells = String(p.paintHeat(this.heat.ctx(0)));
    ds.layers = String(p.data.layers);
    ds.heads = String(p.data.heads);
    ds.left = String(G.x);
    ds.top = String(G.y);
    ds.cellWidth = String(G.cw);
    ds.cellHeight = String(G.ch);
    this.drawHeatOverlay();
  }

  private drawHeatOverlay(): void {
    const p = this.painter;
    const ctx = this.heat.ctx(1);
    if (!p) return;
    if (this.hover) p.paintHover(ctx, this.hover);
    const shown = this.hover ?? p.data.chosen;
    this.readout.textContent = shown ? p.describe(shown) : '';
    this.heatEl.dataset.hover = this.hover ? `${this.hover[0]},${this.hover[1]}` : '';
  }

  private drawChart(): void {
    const p = this.painter;
    if (!p) return;
    this.chart.root.dataset.points = String(p.paintTrend(this.chart.ctx(0)));
  }
}
