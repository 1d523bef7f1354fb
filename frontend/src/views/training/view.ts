// Heads over training: a layers × heads heatmap of one per-head metric at the selected checkpoint (NaN
// cells grey and hatched, value on hover), the trajectory of the hovered (else the selected) head over all
// checkpoints, and "what changed" between two checkpoints: heads ranked by Jensen-Shannon divergence, with
// an optional heatmap of it. Clicking a cell, a trajectory point or a ranked head opens the head view (or the
// neuron view: toggle, or Shift-click) at that layer, head and step. Knows nothing about HTTP.
import {CanvasStack} from '../draw/canvas';
import {chartLayout, drawChartAxes, drawPoints, drawSeries, drawVerticalMarker, nearestPoint, type ChartLayout} from '../draw/chart';
import {nanColors, rampColor, sequentialRamp, VIRIDIS, type RGB, type Theme} from '../draw/colors';
import type {Ctx} from '../draw/ctx';
import {cellAt, drawGridImage, drawIndexLabels, gridHeight, gridImage, gridWidth, outlineCell, type CellGrid} from '../draw/grid';
import {drawLegend, rangeBucketer} from '../draw/heatmap';
import {formatRanked, formatValue, METRIC_INFO, type HeadGrid, type RankedHead} from '../training';
import {METRIC_NAMES, type MetricName} from '../types';
import {clear, el, type ViewBase} from './common';

/** What the training view draws (built by trainingData in training.ts). */
export interface TrainingData {
  metric: MetricName;
  steps: number[];
  /** Index into `steps` of the selected checkpoint (-1: none). */
  stepIndex: number;
  layers: number;
  heads: number;
  /** Every head's values over steps: values[(layer·heads + head)·steps.length + i]; NaN: undefined. */
  values: Float64Array;
  /** Colour scale and y axis. */
  domain: [number, number];
  /** The head whose trajectory shows when none is hovered. */
  focus: [number, number] | null;
  /** "What changed": the two checkpoints, the divergence per head (or why there is none) and its ranking. */
  divSteps: [number, number] | null;
  divergence: HeadGrid | null;
  divMax: number;
  divUnit: string;
  divMessage?: string;
  ranking: RankedHead[];
  notes: string[];
}

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

const LEFT = 58;
const TOP = 44;
const LEGEND_H = 38;
const CHART_W = 460;
const CHART_H = 250;
const DIV_RAMP_STOPS: RGB[] = [
  [255, 247, 236],
  [253, 187, 132],
  [239, 101, 72],
  [179, 0, 0],
  [90, 0, 0],
];
const MAIN_RAMP = sequentialRamp(VIRIDIS);
const DIV_RAMP = sequentialRamp(DIV_RAMP_STOPS);

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
  private G: CellGrid = {x: LEFT, y: TOP, cw: 40, ch: 32, rows: 0, cols: 0};
  private D: CellGrid = {x: LEFT, y: TOP, cw: 20, ch: 16, rows: 0, cols: 0};
  private C!: ChartLayout;
  private image: HTMLCanvasElement | null = null;
  private divImage: HTMLCanvasElement | null = null;

  constructor(private opts: TrainingViewOptions) {
    this.theme = opts.theme;
    this.openIn = opts.openIn;
    this.logX = opts.logX;
    this.heat = new CanvasStack(2, () => this.drawHeat());
    this.chart = new CanvasStack(2, () => this.drawChart());
    this.divMap = new CanvasStack(2, () => this.drawDivMap());
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
    this.image = this.buildImage();
    this.divImage = d.divergence ? gridImage(d.divergence.values, d.divergence.layers, d.divergence.heads, DIV_RAMP, rangeBucketer(0, d.divMax)) : null;
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
    const avail = Math.max(240, Math.min(total - CHART_W - 40, 720) - LEFT - 10);
    const cw = Math.max(14, Math.min(56, Math.floor(avail / Math.max(1, d.heads))));
    const ch = Math.max(12, Math.min(44, Math.round(cw * 0.8)));
    this.G = {x: LEFT, y: TOP, cw, ch, rows: d.layers, cols: d.heads};
    this.heat.resize(Math.max(LEFT + gridWidth(this.G) + 12, LEFT + 200), TOP + gridHeight(this.G) + LEGEND_H);
    const first = d.steps[0] ?? 0;
    const last = d.steps[d.steps.length - 1] ?? 1;
    this.C = chartLayout(CHART_W, CHART_H, [first, last > first ? last : first + 1], d.domain, this.logX);
    this.chart.resize(CHART_W, CHART_H);
    const dc = Math.max(10, Math.min(28, Math.floor(320 / Math.max(1, d.heads))));
    this.D = {x: 36, y: 30, cw: dc, ch: Math.max(9, Math.round(dc * 0.8)), rows: d.divergence?.layers ?? 0, cols: d.divergence?.heads ?? 0};
    this.divMap.resize(Math.max(this.D.x + gridWidth(this.D) + 10, 280), this.D.y + gridHeight(this.D) + LEGEND_H);
  }

  /** The selected step's column of every head's trajectory, as a layers × heads matrix. */
  private gridValues(): Float64Array {
    const d = this.data!;
    const n = d.steps.length;
    const out = new Float64Array(d.layers * d.heads).fill(NaN);
    if (d.stepIndex < 0) return out;
    for (let k = 0; k < out.length; k++) out[k] = d.values[k * n + d.stepIndex];
    return out;
  }

  private buildImage(): HTMLCanvasElement {
    const d = this.data!;
    return gridImage(this.gridValues(), d.layers, d.heads, MAIN_RAMP, rangeBucketer(d.domain[0], d.domain[1]));
  }

  private drawAll(): void {
    if (!this.data) return;
    this.drawHeat();
    this.drawChart();
    this.drawDivMap();
  }

  private drawHeat(): void {
    if (!this.data || !this.image) return;
    const ctx = this.heat.ctx(0);
    const cells = this.paintHeat(ctx);
    this.heatEl.dataset.cells = String(cells);
    this.heatEl.dataset.layers = String(this.data.layers);
    this.heatEl.dataset.heads = String(this.data.heads);
    this.heatEl.dataset.step = String(this.data.steps[this.data.stepIndex] ?? '');
    this.heatEl.dataset.metric = this.data.metric;
    this.heatEl.dataset.left = String(this.G.x);
    this.heatEl.dataset.top = String(this.G.y);
    this.heatEl.dataset.cellWidth = String(this.G.cw);
    this.heatEl.dataset.cellHeight = String(this.G.ch);
    this.heatEl.dataset.nan = String(this.gridValues().filter((v) => Number.isNaN(v)).length);
    this.drawHeatOverlay();
  }

  private paintHeat(ctx: Ctx): number {
    const d = this.data!;
    const t = this.theme;
    const step = d.steps[d.stepIndex];
    const cells = drawGridImage(ctx, this.G, this.image!, this.gridValues(), nanColors(t));
    drawIndexLabels(ctx, this.G, {rowLabel: String, colLabel: String, color: t.text, rowTitle: 'Layer', colTitle: `Heads · ${METRIC_INFO[d.metric].label} at step ${step ?? '–'}`});
    const [lo, hi] = d.domain;
    const unit = METRIC_INFO[d.metric].unit;
    drawLegend(ctx, MAIN_RAMP, this.G.x, this.G.y + gridHeight(this.G) + 10, Math.min(220, Math.max(120, gridWidth(this.G))), 10, [formatValue(lo), formatValue(hi)], t.text, unit);
    if (this.traj) outlineCell(ctx, this.G, this.traj[0], this.traj[1], t.text, 2);
    return cells;
  }

  private drawHeatOverlay(): void {
    const ctx = this.heat.ctx(1);
    const d = this.data;
    if (!d || !this.hover) {
      this.heatEl.dataset.hover = '';
      this.readout.textContent = this.traj && d ? this.describe(this.traj) : '';
      return;
    }
    const [l, h] = this.hover;
    outlineCell(ctx, this.G, l, h, this.theme.dark ? '#ffffff' : '#000000', 2);
    const text = this.describe(this.hover);
    this.readout.textContent = text;
    this.heatEl.dataset.hover = `${l},${h}`;
    this.heat.top.title = text;
    // a small tooltip next to the cell
    ctx.font = '12px Roboto, Arial, sans-serif';
    const w = ctx.measureText(text).width + 12;
    // right of the cell if it fits, else under its row (over the cells below / the legend)
    let x = this.G.x + (h + 1) * this.G.cw + 6;
    let y = Math.max(0, this.G.y + l * this.G.ch + this.G.ch / 2 - 11);
    if (x + w > this.heat.width) {
      x = Math.max(0, Math.min(this.heat.width - w, this.G.x + h * this.G.cw));
      y = this.G.y + (l + 1) * this.G.ch + 3;
    }
    ctx.globalAlpha = 0.92;
    ctx.fillStyle = this.theme.dark ? '#111214' : '#ffffff';
    ctx.fillRect(x, y, w, 22);
    ctx.globalAlpha = 1;
    ctx.strokeStyle = this.theme.border;
    ctx.lineWidth = 1;
    ctx.strokeRect(x + 0.5, y + 0.5, w - 1, 21);
    ctx.fillStyle = this.theme.text;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'middle';
    ctx.fillText(text, x + 6, y + 11);
  }

  private valueAt(l: number, h: number, i: number): number {
    const d = this.data!;
    return i >= 0 ? d.values[(l * d.heads + h) * d.steps.length + i] : NaN;
  }

  private describe([l, h]: [number, number]): string {
    const d = this.data!;
    const v = this.valueAt(l, h, d.stepIndex);
    const info = METRIC_INFO[d.metric];
    const val = Number.isFinite(v) ? `${formatValue(v)}${info.unit ? ' ' + info.unit : ''}` : 'undefined';
    return `L${l} H${h} · ${info.label} ${val} at step ${d.steps[d.stepIndex] ?? '–'}`;
  }

  private series(l: number, h: number): Float64Array {
    const d = this.data!;
    const n = d.steps.length;
    return d.values.subarray((l * d.heads + h) * n, (l * d.heads + h + 1) * n);
  }

  private drawChart(): void {
    if (!this.data) return;
    const points = this.paintChart(this.chart.ctx(0));
    this.heatEl.dataset.trajectoryPoints = String(points);
    this.chart.root.dataset.trajectoryPoints = String(points);
    this.chart.root.dataset.head = this.traj ? `${this.traj[0]},${this.traj[1]}` : '';
    this.chart.root.dataset.logX = this.logX ? '1' : '';
    this.chartTitle.textContent = this.traj
      ? `Layer ${this.traj[0]}, head ${this.traj[1]}: ${METRIC_INFO[this.data.metric].label} over training (other heads in grey)`
      : `${METRIC_INFO[this.data.metric].label} over training`;
    this.drawChartOverlay();
  }

  /** Returns the number of points of the shown head's trajectory. */
  private paintChart(ctx: Ctx): number {
    const d = this.data!;
    const t = this.theme;
    const L = this.C;
    drawChartAxes(ctx, L, {color: t.muted, grid: t.dark ? '#34363a' : '#eeeeee', xLabel: this.logX ? 'step (log scale)' : 'step', integerX: true, yLabel: METRIC_INFO[d.metric].label});
    for (let l = 0; l < d.layers; l++)
      for (let h = 0; h < d.heads; h++) {
        if (this.traj && this.traj[0] === l && this.traj[1] === h) continue;
        drawSeries(ctx, L, d.steps, this.series(l, h), t.muted, 1, 0.22);
      }
    const cur = d.steps[d.stepIndex];
    if (cur !== undefined) drawVerticalMarker(ctx, L, cur, t.text);
    if (!this.traj) return 0;
    const ys = this.series(this.traj[0], this.traj[1]);
    const accent = t.dark ? '#ffb74d' : '#e65100';
    drawSeries(ctx, L, d.steps, ys, accent, 2.2);
    const n = drawPoints(ctx, L, d.steps, ys, accent, 3.5);
    if (cur !== undefined && Number.isFinite(ys[d.stepIndex])) {
      ctx.strokeStyle = t.text;
      ctx.lineWidth = 2;
      ctx.strokeRect(L.sx(cur) - 6, L.sy(ys[d.stepIndex]) - 6, 12, 12);
    }
    return n;
  }

  private drawChartOverlay(): void {
    const ctx = this.chart.ctx(1);
    const d = this.data;
    if (!d || !this.traj || this.trajHover < 0) {
      this.chart.root.dataset.hover = '';
      return;
    }
    const i = this.trajHover;
    const ys = this.series(this.traj[0], this.traj[1]);
    const x = this.C.sx(d.steps[i]);
    const y = this.C.sy(ys[i]);
    ctx.strokeStyle = this.theme.text;
    ctx.lineWidth = 1.5;
    ctx.strokeRect(x - 5, y - 5, 10, 10);
    const text = `step ${d.steps[i]}: ${formatValue(ys[i])}`;
    ctx.font = '12px Roboto, Arial, sans-serif';
    ctx.fillStyle = this.theme.text;
    ctx.textBaseline = 'bottom';
    ctx.textAlign = x > this.C.x + this.C.w / 2 ? 'right' : 'left';
    ctx.fillText(text, x + (ctx.textAlign === 'right' ? -8 : 8), y - 6);
    this.chart.root.dataset.hover = String(d.steps[i]);
    this.chart.top.title = `${text} · click to open L${this.traj[0]} H${this.traj[1]} at this step`;
  }

  private drawDivMap(): void {
    const d = this.data;
    if (!d) return;
    const ctx = this.divMap.ctx(0);
    this.divMap.ctx(1);
    if (!d.divergence || !this.divImage || !this.showDivMap) {
      this.divMap.root.dataset.cells = '0';
      return;
    }
    this.divMap.root.dataset.cells = String(this.paintDivMap(ctx));
  }

  private paintDivMap(ctx: Ctx): number {
    const d = this.data!;
    const t = this.theme;
    const dv = d.divergence!;
    const cells = drawGridImage(ctx, this.D, this.divImage!, dv.values, nanColors(t));
    drawIndexLabels(ctx, this.D, {rowLabel: String, colLabel: String, color: t.text, font: '10px Roboto, Arial, sans-serif', colTitle: `JS divergence, step ${d.divSteps?.[0]} → ${d.divSteps?.[1]}`});
    drawLegend(ctx, DIV_RAMP, this.D.x, this.D.y + gridHeight(this.D) + 10, Math.min(200, Math.max(100, gridWidth(this.D))), 10, ['0', formatValue(d.divMax)], t.text, d.divUnit);
    const top = d.ranking[0];
    if (top) outlineCell(ctx, this.D, top.layer, top.head, t.text, 1.5);
    return cells;
  }

  exportSize(): {width: number; height: number} {
    const divW = this.showDivMap && this.data?.divergence ? this.divMap.width + 24 : 0;
    return {width: this.heat.width + 24 + CHART_W + divW, height: Math.max(this.heat.height, CHART_H, this.divMap.height)};
  }

  paint(ctx: Ctx): void {
    if (!this.data) return;
    this.paintHeat(ctx);
    ctx.save();
    ctx.translate(this.heat.width + 24, 0);
    this.paintChart(ctx);
    ctx.restore();
    if (this.showDivMap && this.data.divergence) {
      ctx.save();
      ctx.translate(this.heat.width + 24 + CHART_W + 24, 0);
      this.paintDivMap(ctx);
      ctx.restore();
    }
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
    const c = cellAt(this.G, p.x, p.y);
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
    const c = cellAt(this.G, p.x, p.y);
    const d = this.data;
    if (!c || !d) return;
    this.open(c.row, c.col, d.steps[d.stepIndex], e);
  }

  private chartHit(e: MouseEvent): number {
    const d = this.data;
    if (!d || !this.traj) return -1;
    const p = this.chart.toContent(e);
    return nearestPoint(this.C, d.steps, this.series(this.traj[0], this.traj[1]), p.x, p.y);
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
    const c = cellAt(this.D, p.x, p.y);
    this.divMap.top.style.cursor = c ? 'pointer' : 'default';
    this.divMap.top.title = c ? `L${c.row} H${c.col}: ${formatValue(d.divergence.values[c.row * d.divergence.heads + c.col])} ${d.divUnit}` : '';
  }

  private onDivClick(e: MouseEvent): void {
    const d = this.data;
    if (!d?.divergence) return;
    const p = this.divMap.toContent(e);
    const c = cellAt(this.D, p.x, p.y);
    if (c) this.open(c.row, c.col, d.divSteps?.[1], e);
  }
}
