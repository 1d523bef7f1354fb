// Heads over training: a layers × heads heatmap of one per-head metric at the selected checkpoint (NaN
// cells grey and hatched, value on hover), the trajectory of the hovered (else the selected) head over all
// checkpoints, and "what changed" between two checkpoints: heads ranked by Jensen-Shannon divergence, with
// an optional heatmap of it. Clicking a cell, a trajectory point or a ranked head opens the head view (or the
// neuron view: toggle, or Shift-click) at that layer, head and step. Knows nothing about HTTP.
import {CanvasStack} from '../../draw/canvas';
import {nearestPoint} from '../../draw/chart';
import {rampColor, type Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {cellAt} from '../../draw/grid';
import {formatValue} from '../../math';
import {METRIC_NAMES, type MetricName} from '../../types';
import {clear, el, type ViewBase} from '../common';
import {formatRanked, METRIC_INFO, type TrainingData} from './data';
import {CHART_H, CHART_W, DIV_RAMP, TrainingPainter, trainingLayout} from './draw';

export interface TrainingViewOptions {
  theme: Theme;
  openIn: 'head' | 'neuron';
  logX: boolean;
  onMetric?: (m: MetricName) => void;
  onOpenIn?: (v: 'head' | 'neuron') => void;
  onLogX?: (on: boolean) => void;
  onDivSteps?: (a: number, b: number) => void;
  /** Open the head (or neuron) view at a layer, head and step. */
  onOpen?: (layer: number, head: number, step: number, view: 'head' | 'neuron') => void;
}

export class TrainingView implements ViewBase {
  readonly el: HTMLElement;
  private theme: Theme;
  private data: TrainingData | null = null;
  private openIn: 'head' | 'neuron';
  private logX: boolean;
  private showDivMap = true;
  private hover: [number, number] | null = null;
  /** The head whose trajectory is shown: the last hovered one (stays when the pointer leaves), else focus. */
  private traj: [number, number] | null = null;
  private trajHovered = false;
  private trajHover = -1;
  private heat: CanvasStack;
  private chart: CanvasStack;
  private divMap: CanvasStack;
  private heatEl: HTMLElement;
  private readout: HTMLElement;
  private chartTitle: HTMLElement;
  private toolbar: HTMLElement;
  private notesEl: HTMLElement;
  private changes: HTMLElement;
  private rankList: HTMLElement;
  private divInfo: HTMLElement;
  private stepA: HTMLSelectElement;
  private stepB: HTMLSelectElement;
  private divToggle: HTMLInputElement;
  private divMapWrap: HTMLElement;
  private painter: TrainingPainter | null = null;

  constructor(private opts: TrainingViewOptions) {
    this.theme = opts.theme;
    this.openIn = opts.openIn;
    this.logX = opts.logX;
    // the heatmaps and the chart (layer 0, drawn whole) as bitmaps; the pointer's marks (layer 1) repainted
    this.heat = new CanvasStack(2, () => this.drawHeat(), {bitmapLayers: [0]});
    this.chart = new CanvasStack(2, () => this.drawChart(), {bitmapLayers: [0]});
    this.divMap = new CanvasStack(2, () => this.drawDivMap(), {bitmapLayers: [0]});
    this.heat.root.setAttribute('data-testid', 'training-canvas');
    this.chart.root.setAttribute('data-testid', 'training-trajectory');
    this.divMap.root.setAttribute('data-testid', 'div-heatmap');
    this.toolbar = el('div', {class: 'view-toolbar'});
    this.notesEl = el('div', {class: 'notes', 'data-testid': 'training-notes'});
    this.readout = el('div', {class: 'readout', 'data-testid': 'training-hover'});
    this.chartTitle = el('div', {class: 'chart-title', 'data-testid': 'training-trajectory-title'});
    this.heatEl = el('div', {class: 'training-heat', 'data-testid': 'training-heatmap'}, this.heat.root, this.readout);
    this.stepA = el('select', {'data-testid': 'div-step-a', title: 'Checkpoint A (before)'});
    this.stepB = el('select', {'data-testid': 'div-step-b', title: 'Checkpoint B (after)'});
    this.divToggle = el('input', {type: 'checkbox', 'data-testid': 'div-heatmap-toggle', checked: true});
    this.rankList = el('ol', {class: 'ranking', 'data-testid': 'div-ranking'});
    this.divInfo = el('div', {class: 'note', 'data-testid': 'div-message'});
    this.divMapWrap = el('div', {class: 'div-map'}, this.divMap.root);
    this.changes = el(
      'div',
      {class: 'training-changes', 'data-testid': 'training-changes'},
      el(
        'div',
        {class: 'changes-head'},
        el('span', {class: 'changes-title', text: 'What changed'}),
        el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'from step'}), this.stepA),
        el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'to step'}), this.stepB),
        el('label', {class: 'ctl check'}, this.divToggle, el('span', {text: 'heatmap'})),
      ),
      el('div', {class: 'hint', text: 'Heads ranked by Jensen-Shannon divergence of their attention between the two checkpoints (mean over query tokens; 0 = same, ln 2 ≈ 0.693 nats = disjoint). Click a head to open it.'}),
      this.divInfo,
      el('div', {class: 'changes-body'}, this.rankList, this.divMapWrap),
    );
    this.el = el(
      'div',
      {class: 'training-view', 'data-testid': 'training-view'},
      this.toolbar,
      this.notesEl,
      el('div', {class: 'training-body'}, this.heatEl, el('div', {class: 'training-traj'}, this.chartTitle, this.chart.root)),
      this.changes,
    );
    const ht = this.heat.top;
    ht.addEventListener('mousemove', (e) => this.onHeatMove(e));
    ht.addEventListener('mouseleave', () => this.setHover(null));
    ht.addEventListener('click', (e) => this.onHeatClick(e));
    const ct = this.chart.top;
    ct.addEventListener('mousemove', (e) => this.onChartMove(e));
    ct.addEventListener('mouseleave', () => {
      this.trajHover = -1;
      this.drawChartOverlay();
    });
    ct.addEventListener('click', (e) => this.onChartClick(e));
    this.divMap.top.addEventListener('mousemove', (e) => this.onDivMove(e));
    this.divMap.top.addEventListener('click', (e) => this.onDivClick(e));
    const onSteps = () => this.opts.onDivSteps?.(Number(this.stepA.value), Number(this.stepB.value));
    this.stepA.addEventListener('change', onSteps);
    this.stepB.addEventListener('change', onSteps);
    this.divToggle.addEventListener('change', () => {
      this.showDivMap = this.divToggle.checked;
      this.renderChanges();
    });
    this.renderToolbar('entropy');
  }

  setTheme(t: Theme): void {
    this.theme = t;
    if (this.painter) this.painter.theme = t;
    this.drawAll();
  }

  setData(d: TrainingData): void {
    this.data = d;
    // the last hovered head stays; until one is hovered, the selection's (or the top) head
    if (!this.trajHovered || !this.traj || !this.inGrid(this.traj)) {
      this.traj = d.focus;
      this.trajHovered = false;
    }
    this.trajHover = -1;
    if (this.hover && !this.inGrid(this.hover)) this.hover = null;
    this.renderToolbar(d.metric);
    this.renderNotes();
    this.layout();
    this.renderChanges();
    this.drawAll();
  }

  setOpenIn(v: 'head' | 'neuron'): void {
    this.openIn = v;
    this.renderToolbar(this.data?.metric ?? 'entropy');
  }

  dispose(): void {
    this.heat.dispose();
    this.chart.dispose();
    this.divMap.dispose();
  }

  private inGrid(h: [number, number]): boolean {
    return !!this.data && h[0] < this.data.layers && h[1] < this.data.heads;
  }

  // -------------------------------------------------------------------------------------------------
  // DOM parts

  private renderToolbar(metric: MetricName): void {
    const b = this.toolbar;
    clear(b);
    const ms = el('select', {'data-testid': 'training-metric', title: 'Per-head metric'});
    for (const m of METRIC_NAMES) ms.appendChild(el('option', {value: m, text: METRIC_INFO[m].label}));
    ms.value = metric;
    ms.addEventListener('change', () => this.opts.onMetric?.(ms.value as MetricName));
    const open = el('select', {'data-testid': 'training-open', title: 'What clicking a head opens (Shift-click: the other one)'});
    open.appendChild(el('option', {value: 'head', text: 'head view'}));
    open.appendChild(el('option', {value: 'neuron', text: 'neuron view'}));
    open.value = this.openIn;
    open.addEventListener('change', () => {
      this.openIn = open.value as 'head' | 'neuron';
      this.opts.onOpenIn?.(this.openIn);
    });
    const logx = el('input', {type: 'checkbox', 'data-testid': 'training-logx', checked: this.logX});
    logx.addEventListener('change', () => {
      this.logX = logx.checked;
      this.opts.onLogX?.(this.logX);
      if (!this.data) return;
      this.layout(); // resizing clears every canvas
      this.drawAll();
    });
    b.appendChild(el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'Metric'}), ms));
    b.appendChild(el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'Click opens'}), open));
    b.appendChild(el('label', {class: 'ctl check'}, logx, el('span', {text: 'log-scale steps'})));
    b.appendChild(el('span', {class: 'hint', text: 'Hover a head for its trajectory; click a cell or a point to open it (Shift-click: the other view).'}));
  }

  private renderNotes(): void {
    const d = this.data!;
    clear(this.notesEl);
    const info = METRIC_INFO[d.metric];
    this.notesEl.appendChild(el('div', {class: 'legend', 'data-testid': 'training-metric-help', text: `${info.label}: ${info.help}${info.unit ? ` (${info.unit})` : ''}. Grey hatched cells: undefined for that head.`}));
    for (const n of d.notes) this.notesEl.appendChild(el('div', {class: 'note', text: n}));
  }

  private renderChanges(): void {
    const d = this.data;
    if (!d) return;
    const opts = (sel: HTMLSelectElement, v: number | undefined) => {
      const sig = d.steps.join(',');
      if (sel.dataset.sig !== sig) {
        clear(sel);
        for (const s of d.steps) sel.appendChild(el('option', {value: String(s), text: String(s)}));
        sel.dataset.sig = sig;
      }
      if (v !== undefined) sel.value = String(v);
      sel.disabled = d.steps.length < 2;
    };
    opts(this.stepA, d.divSteps?.[0]);
    opts(this.stepB, d.divSteps?.[1]);
    this.divToggle.checked = this.showDivMap;
    this.divInfo.textContent = d.divMessage ?? '';
    this.divInfo.hidden = !d.divMessage;
    clear(this.rankList);
    d.ranking.forEach((r, i) => {
      const btn = el('button', {
        type: 'button',
        class: 'rank',
        'data-testid': `div-rank-${i}`,
        'data-head': `${r.layer},${r.head}`,
        title: `Open layer ${r.layer}, head ${r.head} at step ${d.divSteps?.[1] ?? ''} (Shift-click: ${this.openIn === 'head' ? 'neuron' : 'head'} view)`,
        text: formatRanked(r, d.divUnit),
      });
      const bar = el('span', {class: 'rank-bar'});
      bar.style.width = `${Math.round((60 * r.value) / Math.max(d.divMax, 1e-9))}px`;
      bar.style.background = rampColor(DIV_RAMP, (255 * r.value) / Math.max(d.divMax, 1e-9));
      btn.addEventListener('click', (e) => this.open(r.layer, r.head, d.divSteps?.[1] ?? d.steps[d.stepIndex], e));
      btn.addEventListener('mouseenter', () => this.setHover([r.layer, r.head]));
      btn.addEventListener('mouseleave', () => this.setHover(null));
      this.rankList.appendChild(el('li', {}, btn, bar));
    });
    const top = d.ranking[0];
    this.heatEl.dataset.ranking = top ? `${top.layer},${top.head}` : '';
    this.el.dataset.ranking = this.heatEl.dataset.ranking;
    this.divMapWrap.hidden = !(this.showDivMap && d.divergence);
    this.drawDivMap();
  }

  // -------------------------------------------------------------------------------------------------
  // Layout and drawing

  private layout(): void {
    const d = this.data!;
    const total = (this.el.closest('.panes') as HTMLElement | null)?.clientWidth || document.documentElement.clientWidth || 1200;
    const L = trainingLayout(d, total, this.logX);
    this.painter = new TrainingPainter(d, L, this.theme);
    this.heat.resize(L.heat.width, L.heat.height);
    this.chart.resize(CHART_W, CHART_H);
    this.divMap.resize(L.div.width, L.div.height);
  }

  private drawAll(): void {
    if (!this.data) return;
    this.drawHeat();
    this.drawChart();
    this.drawDivMap();
  }

  private drawHeat(): void {
    const p = this.painter;
    if (!p) return;
    const d = p.data;
    const G = p.layout.G;
    const cells = p.paintHeat(this.heat.ctx(0), this.traj);
    const ds = this.heatEl.dataset;
    ds.cells = String(cells);
    ds.layers = String(d.layers);
    ds.heads = String(d.heads);
    ds.step = String(d.steps[d.stepIndex] ?? '');
    ds.metric = d.metric;
    ds.left = String(G.x);
    ds.top = String(G.y);
    ds.cellWidth = String(G.cw);
    ds.cellHeight = String(G.ch);
    ds.nan = String(p.gridValues().filter((v) => Number.isNaN(v)).length);
    this.drawHeatOverlay();
  }

  private drawHeatOverlay(): void {
    const ctx = this.heat.ctx(1);
    const p = this.painter;
    if (!p || !this.hover) {
      this.heatEl.dataset.hover = '';
      this.readout.textContent = this.traj && p ? p.describe(this.traj) : '';
      return;
    }
    const text = p.paintHeatHover(ctx, this.hover);
    this.readout.textContent = text;
    this.heatEl.dataset.hover = `${this.hover[0]},${this.hover[1]}`;
    this.heat.top.title = text;
  }

  private drawChart(): void {
    const p = this.painter;
    if (!p) return;
    const points = p.paintChart(this.chart.ctx(0), this.traj, this.logX);
    this.heatEl.dataset.trajectoryPoints = String(points);
    this.chart.root.dataset.trajectoryPoints = String(points);
    this.chart.root.dataset.head = this.traj ? `${this.traj[0]},${this.traj[1]}` : '';
    this.chart.root.dataset.logX = this.logX ? '1' : '';
    this.chartTitle.textContent = this.traj
      ? `Layer ${this.traj[0]}, head ${this.traj[1]}: ${METRIC_INFO[p.data.metric].label} over training (other heads in grey)`
      : `${METRIC_INFO[p.data.metric].label} over training`;
    this.drawChartOverlay();
  }

  private drawChartOverlay(): void {
    const ctx = this.chart.ctx(1);
    const p = this.painter;
    if (!p || !this.traj || this.trajHover < 0) {
      this.chart.root.dataset.hover = '';
      return;
    }
    const text = p.paintChartHover(ctx, this.traj, this.trajHover);
    this.chart.root.dataset.hover = String(p.data.steps[this.trajHover]);
    this.chart.top.title = `${text} · click to open L${this.traj[0]} H${this.traj[1]} at this step`;
  }

  private drawDivMap(): void {
    const p = this.painter;
    if (!p) return;
    const ctx = this.divMap.ctx(0);
    this.divMap.ctx(1);
    this.divMap.root.dataset.cells = String(this.showDivMap ? p.paintDivMap(ctx) : 0);
  }

  exportSize(): {width: number; height: number} {
    return this.painter?.exportSize(this.showDivMap) ?? {width: 1, height: 1};
  }

  paint(ctx: Ctx): void {
    this.painter?.paint(ctx, this.traj, this.logX, this.showDivMap);
  }

  // -------------------------------------------------------------------------------------------------
  // Pointer

  private setHover(h: [number, number] | null): void {
    if (h?.[0] === this.hover?.[0] && h?.[1] === this.hover?.[1]) return;
    this.hover = h;
    if (h && (h[0] !== this.traj?.[0] || h[1] !== this.traj?.[1])) {
      this.traj = h; // the trajectory follows the pointer and stays on the last hovered head
      this.trajHovered = true;
      this.trajHover = -1;
      this.drawHeat();
      this.drawChart();
      return;
    }
    this.drawHeatOverlay();
  }

  private onHeatMove(e: MouseEvent): void {
    const p = this.heat.toContent(e);
    const c = this.painter ? cellAt(this.painter.layout.G, p.x, p.y) : null;
    this.heat.top.style.cursor = c ? 'pointer' : 'default';
    if (!c) this.heat.top.title = '';
    this.setHover(c ? [c.row, c.col] : null);
  }

  private open(l: number, h: number, step: number | undefined, e: MouseEvent): void {
    if (step === undefined) return;
    const other = this.openIn === 'head' ? 'neuron' : 'head';
    this.opts.onOpen?.(l, h, step, e.shiftKey ? other : this.openIn);
  }

  private onHeatClick(e: MouseEvent): void {
    const p = this.heat.toContent(e);
    const c = this.painter ? cellAt(this.painter.layout.G, p.x, p.y) : null;
    const d = this.data;
    if (!c || !d) return;
    this.open(c.row, c.col, d.steps[d.stepIndex], e);
  }

  private chartHit(e: MouseEvent): number {
    const d = this.data;
    if (!d || !this.traj) return -1;
    const p = this.chart.toContent(e);
    return this.painter ? nearestPoint(this.painter.layout.C, d.steps, this.painter.series(this.traj[0], this.traj[1]), p.x, p.y) : -1;
  }

  private onChartMove(e: MouseEvent): void {
    const i = this.chartHit(e);
    this.chart.top.style.cursor = i >= 0 ? 'pointer' : 'default';
    if (i === this.trajHover) return;
    this.trajHover = i;
    if (i < 0) this.chart.top.title = '';
    this.drawChartOverlay();
  }

  private onChartClick(e: MouseEvent): void {
    const i = this.chartHit(e);
    if (i < 0 || !this.traj || !this.data) return;
    this.open(this.traj[0], this.traj[1], this.data.steps[i], e);
  }

  private onDivMove(e: MouseEvent): void {
    const d = this.data;
    if (!d?.divergence) return;
    const p = this.divMap.toContent(e);
    const c = this.painter ? cellAt(this.painter.layout.D, p.x, p.y) : null;
    this.divMap.top.style.cursor = c ? 'pointer' : 'default';
    this.divMap.top.title = c ? `L${c.row} H${c.col}: ${formatValue(d.divergence.values[c.row * d.divergence.heads + c.col])} ${d.divUnit}` : '';
  }

  private onDivClick(e: MouseEvent): void {
    const d = this.data;
    if (!d?.divergence) return;
    const p = this.divMap.toContent(e);
    const c = this.painter ? cellAt(this.painter.layout.D, p.x, p.y) : null;
    if (c) this.open(c.row, c.col, d.divSteps?.[1], e);
  }
}
