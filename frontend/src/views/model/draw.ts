// Drawing of the model view, DOM-free: the layers × heads grid of thumbnails, as BertViz lines in the
// layer's colour or as heatmaps, with axis labels and the selected (detail) thumbnail outlined.
import {DIVERGING, alphaRamp, hexToRgb, layerColor, type Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {drawHeatmap, linearBucketer, paintCells, paintSignedCells, raster, type Raster} from '../../draw/heatmap';
import {collectLines, drawLines} from '../../draw/lines';
import type {ModelData} from './data';

/** Thumbnails as BertViz lines, heatmaps, or `auto` (lines up to a cell budget). */
export type ThumbStyle = 'auto' | 'lines' | 'heat';

export const AXIS_LEFT = 56;
export const AXIS_TOP = 40;
export const GAP = 4;
const PAD = 3;
/** 'auto' draws lines up to this many candidate cells in the whole grid, heatmaps above. */
export const AUTO_LINES_MAX_CELLS = 150_000;

export function resolveStyle(style: ThumbStyle, layers: number, heads: number, rows: number, cols: number): 'lines' | 'heat' {
  if (style !== 'auto') return style;
  return layers * heads * rows * cols <= AUTO_LINES_MAX_CELLS ? 'lines' : 'heat';
}

export interface ModelLayout {
  /** Thumbnail width and height. */
  tw: number;
  th: number;
  width: number;
  height: number;
}

/** Thumbnail size for `avail` px of width (the pane's share, less the detail beside it). */
export function modelLayout(d: ModelData, avail: number): ModelLayout {
  const nh = Math.max(1, d.heads.length);
  const tw = Math.max(24, Math.min(100, Math.floor((avail - AXIS_LEFT) / nh) - GAP));
  const aspect = d.cols > 0 ? d.rows / d.cols : 1;
  const th = Math.max(24, Math.min(160, Math.round(tw * Math.max(0.5, Math.min(2, aspect)))));
  return {tw, th, width: AXIS_LEFT + nh * (tw + GAP), height: AXIS_TOP + d.layers.length * (th + GAP)};
}

export interface ModelPaintOptions {
  theme: Theme;
  style: ThumbStyle;
  detail: [number, number] | null;
}

export class ModelPainter {
  private heatCache = new Map<string, Raster>();
  constructor(
    readonly data: ModelData,
    readonly layout: ModelLayout,
    private o: ModelPaintOptions,
  ) {}

  set(o: Partial<ModelPaintOptions>): void {
    if (o.theme && o.theme !== this.o.theme) this.heatCache.clear();
    this.o = {...this.o, ...o};
  }

  thumbXY(li: number, hi: number): [number, number] {
    return [AXIS_LEFT + hi * (this.layout.tw + GAP), AXIS_TOP + li * (this.layout.th + GAP)];
  }

  /** The (layer, head) of the thumbnail under content point (x, y), or null. */
  hit(x: number, y: number): [number, number] | null {
    const d = this.data;
    const {tw, th} = this.layout;
    const hi = Math.floor((x - AXIS_LEFT) / (tw + GAP));
    const li = Math.floor((y - AXIS_TOP) / (th + GAP));
    if (hi < 0 || li < 0 || hi >= d.heads.length || li >= d.layers.length) return null;
    const [tx, ty] = this.thumbXY(li, hi);
    if (x > tx + tw || y > ty + th) return null;
    return [d.layers[li], d.heads[hi]];
  }

  paint(ctx: Ctx, y0 = -Infinity, y1 = Infinity): {cells: number; lines: number; style: 'lines' | 'heat'} {
    const d = this.data;
    const t = this.o.theme;
    const {tw, th} = this.layout;
    const style = resolveStyle(this.o.style, d.layers.length, d.heads.length, d.rows, d.cols);
    ctx.fillStyle = t.text;
    ctx.font = 'bold 13px Roboto, Arial, sans-serif';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText('Heads', AXIS_LEFT + (d.heads.length * (tw + GAP)) / 2, 10);
    ctx.font = '11px Roboto, Arial, sans-serif';
    d.heads.forEach((h, hi) => ctx.fillText(String(h), AXIS_LEFT + hi * (tw + GAP) + tw / 2, 28));
    ctx.save();
    ctx.textAlign = 'right';
    d.layers.forEach((l, li) => {
      const y = AXIS_TOP + li * (th + GAP) + th / 2;
      if (y < y0 - th || y > y1 + th) return;
      ctx.fillText(String(l), AXIS_LEFT - 8, y);
    });
    ctx.restore();
    ctx.font = 'bold 13px Roboto, Arial, sans-serif';
    ctx.textAlign = 'left';
    ctx.fillText('Layers', 2, AXIS_TOP - 12);
    let cells = 0;
    let lines = 0;
    const scale = d.signed ? 1 / Math.max(d.maxAbs ?? 0, 1e-9) : 1;
    const detail = this.o.detail;
    d.layers.forEach((l, li) => {
      const yTop = AXIS_TOP + li * (th + GAP);
      if (yTop + th < y0 || yTop > y1) return;
      const color = layerColor(l, d.nLayers);
      d.heads.forEach((h, hi) => {
        const [x, y] = this.thumbXY(li, hi);
        const selected = detail && detail[0] === l && detail[1] === h;
        ctx.fillStyle = selected ? t.highlight : t.dark ? '#2a2b2e' : '#fafafa';
        ctx.fillRect(x, y, tw, th);
        if (selected) {
          ctx.strokeStyle = color;
          ctx.lineWidth = 2;
          ctx.strokeRect(x + 1, y + 1, tw - 2, th - 2);
        }
        const m = d.cell(l, h);
        if (style === 'heat') {
          drawHeatmap(ctx, this.heatImage(l, h, m, color), x + PAD, y + PAD, tw - 2 * PAD, th - 2 * PAD);
        } else {
          const g = {
            x1: x + PAD,
            x2: x + tw - PAD,
            rowY: (i: number) => y + PAD + ((i + 0.5) * (th - 2 * PAD)) / d.rows,
            colY: (j: number) => y + PAD + ((j + 0.5) * (th - 2 * PAD)) / d.cols,
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

  private heatImage(l: number, h: number, m: Float32Array, color: string): Raster {
    const key = `${l}.${h}`;
    let c = this.heatCache.get(key);
    if (!c) {
      const d = this.data;
      const px = d.signed
        ? paintSignedCells(m, d.rows, d.cols, alphaRamp(hexToRgb(DIVERGING.pos), 0.5), alphaRamp(hexToRgb(DIVERGING.neg), 0.5), linearBucketer(d.maxAbs ?? 1))
        : paintCells(m, d.rows, d.cols, alphaRamp(hexToRgb(color), 0.5), linearBucketer(1));
      c = raster(px, d.cols, d.rows);
      this.heatCache.set(key, c);
    }
    return c;
  }
}
