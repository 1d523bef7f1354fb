// Drawing of the image view, DOM-free: the image, the attention overlay (each patch's weight filled over
// exactly that patch's pixels, whole-pixel rectangles, no smoothing), the colour legend, and the query and
// hovered patches' outlines.
import {DIVERGING, hexToRgb, rampColor, sequentialRamp, VIRIDIS, type Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {drawLegend} from '../../draw/heatmap';
import {displaySize, patchAtPixel, patchRects, patchToken} from '../../image';
import {formatValue} from '../../math';
import {patchLabel} from '../../tokens';
import type {ImageData} from './data';

const PAD = 8;
const LEGEND_GAP = 14;
const LEGEND_H = 10;
export const RAMP = sequentialRamp(VIRIDIS);
/** The largest side the image is drawn at (smaller images are enlarged by a whole factor up to it). */
export const MAX_SIDE = 512;

export interface ImageLayout {
  /** The image's top-left corner and drawn size (content px). */
  x: number;
  y: number;
  width: number;
  height: number;
  /** Each patch's [x0, y0, x1, y1] relative to the image's corner (image.ts `patchRects`). */
  rects: Int32Array;
  legendY: number;
  legendW: number;
  totalW: number;
  totalH: number;
}

export function imageLayout(d: ImageData, maxW = MAX_SIDE): ImageLayout {
  const side = Math.max(64, Math.min(MAX_SIDE, maxW - 2 * PAD));
  const {width, height} = displaySize(d.image, side, side);
  const legendY = PAD + height + LEGEND_GAP;
  const legendW = Math.min(240, Math.max(120, width));
  return {x: PAD, y: PAD, width, height, rects: patchRects(d.image, width, height), legendY, legendW, totalW: Math.max(width, legendW) + 2 * PAD, totalH: legendY + LEGEND_H + 22};
}

/** A patch's fill: the colour of its weight and the opacity rule (`opacity` × √(|w| / max)). */
export function patchStyle(w: number, max: number, signed: boolean, opacity: number): {color: string; alpha: number} {
  const t = Number.isFinite(w) ? Math.min(1, Math.abs(w) / max) : 0;
  if (signed) return {color: w > 0 ? DIVERGING.pos : DIVERGING.neg, alpha: opacity * Math.sqrt(t)};
  return {color: rampColor(RAMP, w > 0 ? 255 * t : 0), alpha: w > 0 ? opacity * Math.sqrt(t) : 0};
}

/** The legend's words: the colour scale and the opacity rule, as stated on screen. */
export function legendText(d: ImageData, opacity: number): string {
  const o = Math.round(opacity * 100) / 100;
  return d.signed
    ? `B − A per patch: blue where B attends more, red where A does; opacity = ${o} × √(|B − A| / ${formatValue(d.max)}), the largest |B − A| on the image. Each patch is painted over exactly its pixels.`
    : `Colour: the query’s attention to each patch, viridis from 0 to ${formatValue(d.max)} (the largest patch weight); opacity = ${o} × √(weight / ${formatValue(d.max)}). Each patch is painted over exactly its pixels.`;
}

/** A 256-step legend ramp for B − A: red (A) through transparent-looking to blue (B), as seen over `bg`. */
function divergingRamp(bg: string, opacity: number): Uint8ClampedArray {
  const out = new Uint8ClampedArray(1024);
  const [pos, neg, base] = [hexToRgb(DIVERGING.pos), hexToRgb(DIVERGING.neg), hexToRgb(bg.startsWith('#') ? bg : '#ffffff')];
  for (let b = 0; b < 256; b++) {
    const t = (b - 127.5) / 127.5;
    const c = t > 0 ? pos : neg;
    const a = opacity * Math.sqrt(Math.abs(t));
    for (let k = 0; k < 3; k++) out[4 * b + k] = Math.round(base[k] * (1 - a) + c[k] * a);
    out[4 * b + 3] = 255;
  }
  return out;
}

export class ImagePainter {
  constructor(
    readonly data: ImageData,
    readonly layout: ImageLayout,
    public theme: Theme,
    public opacity: number,
  ) {}

  /** The image (decoded pixels), enlarged without smoothing; without pixels, a grey placeholder. */
  paintImage(ctx: Ctx, pixels: HTMLCanvasElement | null): void {
    const L = this.layout;
    if (pixels) {
      ctx.imageSmoothingEnabled = L.width < this.data.image.width;
      ctx.drawImage(pixels, L.x, L.y, L.width, L.height);
      ctx.imageSmoothingEnabled = true;
    } else {
      ctx.fillStyle = this.theme.dark ? '#3a3b3e' : '#d9d9d9';
      ctx.fillRect(L.x, L.y, L.width, L.height);
    }
  }

  /** Every patch's weight over its pixels (alone on its layer, so pixels read back as colour and alpha). */
  paintHeat(ctx: Ctx): number {
    const {weights, max, signed} = this.data;
    const L = this.layout;
    let n = 0;
    for (let p = 0; p < weights.length; p++) {
      const {color, alpha} = patchStyle(weights[p], max, signed, this.opacity);
      if (alpha * 255 < 0.5) continue;
      const [x0, y0, x1, y1] = L.rects.subarray(4 * p, 4 * p + 4);
      ctx.globalAlpha = alpha;
      ctx.fillStyle = color;
      ctx.fillRect(L.x + x0, L.y + y0, x1 - x0, y1 - y0);
      n++;
    }
    ctx.globalAlpha = 1;
    return n;
  }

  paintLegend(ctx: Ctx): void {
    const L = this.layout;
    const d = this.data;
    const ramp = d.signed ? divergingRamp(this.theme.bg, this.opacity) : RAMP;
    const labels: [string, string] = d.signed ? [`−${formatValue(d.max)} (A)`, `+${formatValue(d.max)} (B)`] : ['0', formatValue(d.max)];
    drawLegend(ctx, ramp, L.x, L.legendY, L.legendW, LEGEND_H, labels, this.theme.text, d.signed ? 'B − A' : 'weight');
  }

  /** Everything, for export: image, overlay, legend, outlines. */
  paintAll(ctx: Ctx, pixels: HTMLCanvasElement | null, hover: [number, number] | null): number {
    this.paintImage(ctx, pixels);
    const n = this.paintHeat(ctx);
    this.paintLegend(ctx);
    this.paintMarks(ctx, hover);
    return n;
  }

  private outline(ctx: Ctx, [r, c]: [number, number], color: string, width: number): void {
    const L = this.layout;
    const p = (r * this.data.image.grid[1] + c) * 4;
    const [x0, y0, x1, y1] = L.rects.subarray(p, p + 4);
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.strokeRect(L.x + x0 + width / 2, L.y + y0 + width / 2, Math.max(1, x1 - x0 - width), Math.max(1, y1 - y0 - width));
  }

  /** The query's patch (when the query is one) and the hovered patch, outlined. */
  paintMarks(ctx: Ctx, hover: [number, number] | null): void {
    if (this.data.queryPatch) this.outline(ctx, this.data.queryPatch, this.theme.dark ? '#ffb74d' : '#e65100', 2);
    if (hover) this.outline(ctx, hover, this.theme.dark ? '#ffffff' : '#000000', 1);
  }

  /** The patch under content point (x, y), or null. */
  hit(x: number, y: number): [number, number] | null {
    const L = this.layout;
    return patchAtPixel(this.data.image, L.width, L.height, x - L.x, y - L.y);
  }

  /** The readout: the hovered patch's weight, else what is shown. */
  describe(hover: [number, number] | null): string {
    const d = this.data;
    const q = `query ${d.query} “${d.queryLabel}”`;
    if (hover) {
      const [r, c] = hover;
      const w = d.weights[r * d.image.grid[1] + c];
      return `${patchLabel(r, c)} (token ${patchToken(d.image, r, c)}): ${d.signed ? 'B − A' : 'attention'} ${formatValue(w)} from ${q} · ${d.what}`;
    }
    // the strongest patch (B − A: the largest change, either sign)
    const key = (v: number) => (d.signed ? Math.abs(v) : v);
    let top = 0;
    for (let i = 1; i < d.weights.length; i++) if (key(d.weights[i]) > key(d.weights[top])) top = i;
    const cols = d.image.grid[1];
    const rest = d.outside !== null ? `; ${formatValue(d.outside)} of its attention goes to non-patch tokens` : '';
    return `${d.what}, ${q}: ${d.signed ? 'largest change at' : 'strongest patch'} ${patchLabel(Math.floor(top / cols), top % cols)} (${formatValue(d.weights[top])})${rest}.`;
  }
}
