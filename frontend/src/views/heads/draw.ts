// Drawing of the Heads view, DOM-free: the layers × heads heatmap of one metric's mean at a step (NaN cells
// grey and hatched, the chosen head outlined) and the chosen head's mean ± std over steps.
import {chartLayout, drawChartAxes, drawPoints, drawSeries, drawVerticalMarker, type ChartLayout} from '../../draw/chart';
import {nanColors, sequentialRamp, VIRIDIS, type Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {drawGridImage, drawIndexLabels, gridHeight, gridImage, gridWidth, outlineCell, type CellGrid} from '../../draw/grid';
import {drawLegend, rangeBucketer, type Raster} from '../../draw/heatmap';
import {formatValue} from '../../math';
import type {HeadsData} from './data';

const LEFT = 58;
const TOP = 44;
const LEGEND_H = 38;
export const TREND_W = 420;
export const TREND_H = 220;
export const HEADS_RAMP = sequentialRamp(VIRIDIS);

export interface HeadsLayout {
  G: CellGrid;
  C: ChartLayout | null;
  heat: {width: number; height: number};
}

/** Cell sizes for a grid of `layers × heads` in at most ~`width` px (cells of 6 to 40 px). */
export function headsLayout(d: HeadsData, width = 560): HeadsLayout {
  const cw = Math.max(6, Math.min(40, Math.floor((width - LEFT - 10) / Math.max(1, d.heads))));
  const ch = Math.max(6, Math.min(32, Math.round(cw * 0.8)));
  const G = {x: LEFT, y: TOP, cw, ch, rows: d.layers, cols: d.heads};
  let C: ChartLayout | null = null;
  if (d.trend && d.trend.steps.length) {
    const lo = d.trend.steps[0];
    const hi = d.trend.steps[d.trend.steps.length - 1];
    let ylo = Infinity;
    let yhi = -Infinity;
    d.trend.mean.forEach((m, k) => {
      const s = Number.isFinite(d.trend!.std[k]) ? d.trend!.std[k] : 0;
      if (Number.isFinite(m)) {
        ylo = Math.min(ylo, m - s);
        yhi = Math.max(yhi, m + s);
      }
    });
    const y: [number, number] = ylo <= yhi ? [Math.min(0, ylo), yhi > ylo ? yhi : ylo + 1] : [0, 1];
    C = chartLayout(TREND_W, TREND_H, [lo, hi > lo ? hi : lo + 1], y);
  }
  return {G, C, heat: {width: Math.max(LEFT + gridWidth(G) + 12, LEFT + 200), height: TOP + gridHeight(G) + LEGEND_H}};
}

export class HeadsPainter {
  private image: Raster;
  constructor(
    readonly data: HeadsData,
    readonly layout: HeadsLayout,
    public theme: Theme,
  ) {
    this.image = gridImage(data.grid, data.layers, data.heads, HEADS_RAMP, rangeBucketer(data.domain[0], data.domain[1]));
  }

  /** "L3 H7 · induction 0.81 ± 0.05 (n = 200) at step 900" (model indices). */
  describe([l, h]: [number, number]): string {
    const d = this.data;
    const r = d.all[l * d.heads + h];
    const v = Number.isFinite(r.mean) ? `${formatValue(r.mean)} ± ${formatValue(r.std)} (n = ${r.n})` : 'undefined';
    return `L${d.layerIds[l]} H${d.headIds[h]} · ${d.label} ${v} at step ${d.step}`;
  }

  /** The heatmap, its labels and legend, the chosen head outlined; returns the cells drawn. */
  paintHeat(ctx: Ctx): number {
    const d = this.data;
    const t = this.theme;
    const G = this.layout.G;
    const cells = drawGridImage(ctx, G, this.image, d.grid, nanColors(t));
    drawIndexLabels(ctx, G, {rowLabel: (i) => String(d.layerIds[i]), colLabel: (j) => String(d.headIds[j]), color: t.text, rowTitle: 'Layer', colTitle: `Heads · mean ${d.label} over ${d.examples} examples at step ${d.step}`});
    drawLegend(ctx, HEADS_RAMP, G.x, G.y + gridHeight(G) + 10, Math.min(220, Math.max(120, gridWidth(G))), 10, [formatValue(d.domain[0]), formatValue(d.domain[1])], t.text);
    if (d.chosen) outlineCell(ctx, G, d.chosen[0], d.chosen[1], t.text, 2);
    return cells;
  }

  /** The hovered cell outlined. */
  paintHover(ctx: Ctx, [l, h]: [number, number]): void {
    outlineCell(ctx, this.layout.G, l, h, this.theme.dark ? '#ffffff' : '#000000', 2);
  }

  /** The chosen head's mean over steps, its ± std band as two faint lines, the step marked; returns points drawn. */
  paintTrend(ctx: Ctx): number {
    const d = this.data;
    const C = this.layout.C;
    const tr = d.trend;
    if (!C || !tr) return 0;
    const t = this.theme;
    drawChartAxes(ctx, C, {color: t.muted, grid: t.dark ? '#34363a' : '#eeeeee', xLabel: 'step', integerX: true, yLabel: `mean ${d.label} ± std`});
    const accent = t.dark ? '#ffb74d' : '#e65100';
    drawSeries(ctx, C, tr.steps, tr.mean.map((m, k) => m + tr.std[k]), accent, 1, 0.35);
    drawSeries(ctx, C, tr.steps, tr.mean.map((m, k) => m - tr.std[k]), accent, 1, 0.35);
    drawVerticalMarker(ctx, C, d.step, t.text);
    drawSeries(ctx, C, tr.steps, tr.mean, accent, 2.2);
    return drawPoints(ctx, C, tr.steps, tr.mean, accent, 3.5);
  }

  exportSize(): {width: number; height: number} {
    return {width: this.layout.heat.width + 24 + TREND_W, height: Math.max(this.layout.heat.height, TREND_H)};
  }

  /** Heatmap and trend side by side: the export. */
  paint(ctx: Ctx): void {
    this.paintHeat(ctx);
    ctx.save();
    ctx.translate(this.layout.heat.width + 24, 0);
    this.paintTrend(ctx);
    ctx.restore();
  }
}
