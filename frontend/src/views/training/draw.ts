// Drawing of the heads-over-training view, DOM-free: the layers × heads heatmap of a metric at one step
// (NaN cells grey and hatched), the trajectory chart of one head over all steps (other heads faint), the
// divergence heatmap between two checkpoints, and the hover marks of each.
import {chartLayout, drawChartAxes, drawPoints, drawSeries, drawVerticalMarker, type ChartLayout} from '../../draw/chart';
import {nanColors, sequentialRamp, VIRIDIS, type RGB, type Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {drawGridImage, drawIndexLabels, gridHeight, gridImage, gridWidth, outlineCell, type CellGrid} from '../../draw/grid';
import {drawLegend, rangeBucketer, type Raster} from '../../draw/heatmap';
import {formatValue, latestStep} from '../../math';
import {METRIC_INFO, type TrainingData} from './data';

const LEFT = 58;
const TOP = 44;
const LEGEND_H = 38;
export const CHART_W = 460;
export const CHART_H = 250;
const DIV_RAMP_STOPS: RGB[] = [
  [255, 247, 236],
  [253, 187, 132],
  [239, 101, 72],
  [179, 0, 0],
  [90, 0, 0],
];
export const MAIN_RAMP = sequentialRamp(VIRIDIS);
export const DIV_RAMP = sequentialRamp(DIV_RAMP_STOPS);

export interface TrainingLayout {
  /** Metric heatmap, divergence heatmap, trajectory chart. */
  G: CellGrid;
  D: CellGrid;
  C: ChartLayout;
  heat: {width: number; height: number};
  div: {width: number; height: number};
}

/** Cell sizes for `total` px of width (the heatmap shares it with the chart). */
export function trainingLayout(d: TrainingData, total: number, logX: boolean): TrainingLayout {
  const avail = Math.max(240, Math.min(total - CHART_W - 40, 720) - LEFT - 10);
  const cw = Math.max(14, Math.min(56, Math.floor(avail / Math.max(1, d.heads))));
  const ch = Math.max(12, Math.min(44, Math.round(cw * 0.8)));
  const G = {x: LEFT, y: TOP, cw, ch, rows: d.layers, cols: d.heads};
  const first = d.steps[0] ?? 0;
  const last = latestStep(d.steps) ?? 1;
  const C = chartLayout(CHART_W, CHART_H, [first, last > first ? last : first + 1], d.domain, logX);
  const dc = Math.max(10, Math.min(28, Math.floor(320 / Math.max(1, d.heads))));
  const D = {x: 36, y: 30, cw: dc, ch: Math.max(9, Math.round(dc * 0.8)), rows: d.divergence?.layers ?? 0, cols: d.divergence?.heads ?? 0};
  return {
    G,
    D,
    C,
    heat: {width: Math.max(LEFT + gridWidth(G) + 12, LEFT + 200), height: TOP + gridHeight(G) + LEGEND_H},
    div: {width: Math.max(D.x + gridWidth(D) + 10, 280), height: D.y + gridHeight(D) + LEGEND_H},
  };
}

export class TrainingPainter {
  private image: Raster;
  private divImage: Raster | null;
  constructor(
    readonly data: TrainingData,
    readonly layout: TrainingLayout,
    public theme: Theme,
  ) {
    this.image = gridImage(this.gridValues(), data.layers, data.heads, MAIN_RAMP, rangeBucketer(data.domain[0], data.domain[1]));
    this.divImage = data.divergence ? gridImage(data.divergence.values, data.divergence.layers, data.divergence.heads, DIV_RAMP, rangeBucketer(0, data.divMax)) : null;
  }

  /** The selected step's column of every head's trajectory, as a layers × heads matrix. */
  gridValues(): Float64Array {
    const d = this.data;
    const n = d.steps.length;
    const out = new Float64Array(d.layers * d.heads).fill(NaN);
    if (d.stepIndex < 0) return out;
    for (let k = 0; k < out.length; k++) out[k] = d.values[k * n + d.stepIndex];
    return out;
  }

  valueAt(l: number, h: number, i: number): number {
    const d = this.data;
    return i >= 0 ? d.values[(l * d.heads + h) * d.steps.length + i] : NaN;
  }

  series(l: number, h: number): Float64Array {
    const d = this.data;
    const n = d.steps.length;
    return d.values.subarray((l * d.heads + h) * n, (l * d.heads + h + 1) * n);
  }

  /** "L3 H7 · entropy 0.41 at step 200" */
  describe([l, h]: [number, number]): string {
    const d = this.data;
    const v = this.valueAt(l, h, d.stepIndex);
    const info = METRIC_INFO[d.metric];
    const val = Number.isFinite(v) ? `${formatValue(v)}${info.unit ? ' ' + info.unit : ''}` : 'undefined';
    return `L${l} H${h} · ${info.label} ${val} at step ${d.steps[d.stepIndex] ?? '–'}`;
  }

  /** The metric heatmap, labels, legend, and the shown trajectory's head outlined. Returns cells drawn. */
  paintHeat(ctx: Ctx, traj: [number, number] | null): number {
    const d = this.data;
    const t = this.theme;
    const G = this.layout.G;
    const step = d.steps[d.stepIndex];
    const cells = drawGridImage(ctx, G, this.image, this.gridValues(), nanColors(t));
    drawIndexLabels(ctx, G, {rowLabel: String, colLabel: String, color: t.text, rowTitle: 'Layer', colTitle: `Heads · ${METRIC_INFO[d.metric].label} at step ${step ?? '–'}`});
    const [lo, hi] = d.domain;
    const unit = METRIC_INFO[d.metric].unit;
    drawLegend(ctx, MAIN_RAMP, G.x, G.y + gridHeight(G) + 10, Math.min(220, Math.max(120, gridWidth(G))), 10, [formatValue(lo), formatValue(hi)], t.text, unit);
    if (traj) outlineCell(ctx, G, traj[0], traj[1], t.text, 2);
    return cells;
  }

  /** The hovered cell outlined, with its description in a small tooltip beside it. */
  paintHeatHover(ctx: Ctx, [l, h]: [number, number]): string {
    const G = this.layout.G;
    const width = this.layout.heat.width;
    outlineCell(ctx, G, l, h, this.theme.dark ? '#ffffff' : '#000000', 2);
    const text = this.describe([l, h]);
    ctx.font = '12px Roboto, Arial, sans-serif';
    const w = ctx.measureText(text).width + 12;
    // right of the cell if it fits, else under its row (over the cells below / the legend)
    let x = G.x + (h + 1) * G.cw + 6;
    let y = Math.max(0, G.y + l * G.ch + G.ch / 2 - 11);
    if (x + w > width) {
      x = Math.max(0, Math.min(width - w, G.x + h * G.cw));
      y = G.y + (l + 1) * G.ch + 3;
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
    return text;
  }

  /** Every head's trajectory faint, `traj`'s in the accent colour; returns the number of its points. */
  paintChart(ctx: Ctx, traj: [number, number] | null, logX: boolean): number {
    const d = this.data;
    const t = this.theme;
    const L = this.layout.C;
    drawChartAxes(ctx, L, {color: t.muted, grid: t.dark ? '#34363a' : '#eeeeee', xLabel: logX ? 'step (log scale)' : 'step', integerX: true, yLabel: METRIC_INFO[d.metric].label});
    for (let l = 0; l < d.layers; l++)
      for (let h = 0; h < d.heads; h++) {
        if (traj && traj[0] === l && traj[1] === h) continue;
        drawSeries(ctx, L, d.steps, this.series(l, h), t.muted, 1, 0.22);
      }
    const cur = d.steps[d.stepIndex];
    if (cur !== undefined) drawVerticalMarker(ctx, L, cur, t.text);
    if (!traj) return 0;
    const ys = this.series(traj[0], traj[1]);
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

  /** Point `i` of `traj`'s trajectory marked, with its value; returns the label. */
  paintChartHover(ctx: Ctx, traj: [number, number], i: number): string {
    const d = this.data;
    const C = this.layout.C;
    const ys = this.series(traj[0], traj[1]);
    const x = C.sx(d.steps[i]);
    const y = C.sy(ys[i]);
    ctx.strokeStyle = this.theme.text;
    ctx.lineWidth = 1.5;
    ctx.strokeRect(x - 5, y - 5, 10, 10);
    const text = `step ${d.steps[i]}: ${formatValue(ys[i])}`;
    ctx.font = '12px Roboto, Arial, sans-serif';
    ctx.fillStyle = this.theme.text;
    ctx.textBaseline = 'bottom';
    ctx.textAlign = x > C.x + C.w / 2 ? 'right' : 'left';
    ctx.fillText(text, x + (ctx.textAlign === 'right' ? -8 : 8), y - 6);
    return text;
  }

  /** The divergence heatmap with the top-ranked head outlined; 0 when there is none. */
  paintDivMap(ctx: Ctx): number {
    const d = this.data;
    const dv = d.divergence;
    if (!dv || !this.divImage) return 0;
    const t = this.theme;
    const D = this.layout.D;
    const cells = drawGridImage(ctx, D, this.divImage, dv.values, nanColors(t));
    drawIndexLabels(ctx, D, {rowLabel: String, colLabel: String, color: t.text, font: '10px Roboto, Arial, sans-serif', colTitle: `JS divergence, step ${d.divSteps?.[0]} → ${d.divSteps?.[1]}`});
    drawLegend(ctx, DIV_RAMP, D.x, D.y + gridHeight(D) + 10, Math.min(200, Math.max(100, gridWidth(D))), 10, ['0', formatValue(d.divMax)], t.text, d.divUnit);
    const top = d.ranking[0];
    if (top) outlineCell(ctx, D, top.layer, top.head, t.text, 1.5);
    return cells;
  }

  exportSize(showDiv: boolean): {width: number; height: number} {
    const divW = showDiv && this.data.divergence ? this.layout.div.width + 24 : 0;
    return {width: this.layout.heat.width + 24 + CHART_W + divW, height: Math.max(this.layout.heat.height, CHART_H, this.layout.div.height)};
  }

  /** Heatmap, chart and (when shown) the divergence map side by side: the export. */
  paint(ctx: Ctx, traj: [number, number] | null, logX: boolean, showDiv: boolean): void {
    this.paintHeat(ctx, traj);
    ctx.save();
    ctx.translate(this.layout.heat.width + 24, 0);
    this.paintChart(ctx, traj, logX);
    ctx.restore();
    if (showDiv && this.data.divergence) {
      ctx.save();
      ctx.translate(this.layout.heat.width + 24 + CHART_W + 24, 0);
      this.paintDivMap(ctx);
      ctx.restore();
    }
  }
}
