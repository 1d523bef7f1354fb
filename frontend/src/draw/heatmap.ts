// Heatmaps: a matrix painted one pixel per cell into an offscreen canvas through a 256-entry RGBA lookup,
// then scaled onto the target without smoothing (one drawImage instead of one fillRect per cell).
import {SvgContext, type Ctx} from './ctx';

/** Maps a value to a lookup bucket 0..255, or -1 for a value that has none (NaN: a transparent cell). */
export type Bucketer = (v: number) => number;

export function linearBucketer(max: number): Bucketer {
  const s = max > 0 ? 255 / max : 0;
  return (v) => (Number.isNaN(v) ? -1 : Math.max(0, Math.min(255, Math.round(Math.abs(v) * s))));
}

/** Sequential scale over [lo, hi] (clamped outside); NaN → -1. A flat domain maps everything to 0. */
export function rangeBucketer(lo: number, hi: number): Bucketer {
  const s = hi > lo ? 255 / (hi - lo) : 0;
  return (v) => (Number.isNaN(v) ? -1 : Math.max(0, Math.min(255, Math.round((v - lo) * s))));
}

/** Writes cells into an RGBA pixel buffer (pure: testable without a DOM). */
export function paintCells(
  values: ArrayLike<number>,
  rows: number,
  cols: number,
  lut: Uint8ClampedArray,
  bucket: Bucketer,
  out = new Uint8ClampedArray(rows * cols * 4),
): Uint8ClampedArray {
  for (let i = 0, n = rows * cols; i < n; i++) {
    const k = bucket(values[i]);
    if (!(k >= 0)) {
      out[4 * i] = out[4 * i + 1] = out[4 * i + 2] = out[4 * i + 3] = 0;
      continue;
    }
    const b = k * 4;
    out[4 * i] = lut[b];
    out[4 * i + 1] = lut[b + 1];
    out[4 * i + 2] = lut[b + 2];
    out[4 * i + 3] = lut[b + 3];
  }
  return out;
}

/** Signed values: positive through `posLut`, negative through `negLut`, by |v|. */
export function paintSignedCells(
  values: ArrayLike<number>,
  rows: number,
  cols: number,
  posLut: Uint8ClampedArray,
  negLut: Uint8ClampedArray,
  bucket: Bucketer,
): Uint8ClampedArray {
  const out = new Uint8ClampedArray(rows * cols * 4);
  for (let i = 0, n = rows * cols; i < n; i++) {
    const v = values[i];
    const lut = v < 0 ? negLut : posLut;
    const k = bucket(v);
    if (!(k >= 0)) continue; // NaN: transparent
    const b = k * 4;
    out[4 * i] = lut[b];
    out[4 * i + 1] = lut[b + 1];
    out[4 * i + 2] = lut[b + 2];
    out[4 * i + 3] = lut[b + 3];
  }
  return out;
}

/**
 * A one-pixel-per-cell RGBA image. Its canvas is made on first use; without a DOM (unit tests) there is none
 * and a recording context notes the image's place and size instead.
 */
export class Raster {
  private c: HTMLCanvasElement | null | undefined;
  constructor(
    readonly pixels: Uint8ClampedArray,
    readonly width: number,
    readonly height: number,
  ) {}
  canvas(): HTMLCanvasElement | null {
    if (this.c === undefined) {
      if (typeof document === 'undefined') return (this.c = null);
      const c = document.createElement('canvas');
      c.width = Math.max(1, this.width);
      c.height = Math.max(1, this.height);
      if (this.width > 0 && this.height > 0) {
        const img = new ImageData(this.pixels as Uint8ClampedArray<ArrayBuffer>, this.width, this.height);
        c.getContext('2d')!.putImageData(img, 0, 0);
      }
      this.c = c;
    }
    return this.c;
  }
}

export function raster(pixels: Uint8ClampedArray, cols: number, rows: number): Raster {
  return new Raster(pixels, cols, rows);
}

/** Draws a raster scaled to (w, h), smoothed when `smooth` (cells under a pixel), else crisp. */
export function drawRaster(ctx: Ctx, image: Raster, x: number, y: number, w: number, h: number, smooth = false): void {
  const c = image.canvas();
  const prev = ctx.imageSmoothingEnabled;
  ctx.imageSmoothingEnabled = smooth;
  if (c) ctx.drawImage(c, x, y, w, h);
  else if (ctx instanceof SvgContext) ctx.imagePlaceholder(image.width, image.height, x, y, w, h);
  ctx.imageSmoothingEnabled = prev;
}

export function drawHeatmap(ctx: Ctx, image: Raster, x: number, y: number, w: number, h: number): void {
  drawRaster(ctx, image, x, y, w, h);
}

/** Indices of the NaN cells (drawn grey and hatched over a heatmap). */
export function nanCells(values: ArrayLike<number>): number[] {
  const out: number[] = [];
  for (let i = 0; i < values.length; i++) if (Number.isNaN(values[i])) out.push(i);
  return out;
}

/**
 * Grey fill and diagonal hatching over the cells `idx` (row-major indices in a grid of `cols` columns whose
 * cell (r, c) spans [x + c·cw, +cw) × [y + r·ch, +ch)): how views show "undefined" without a colour.
 */
export function hatchCells(ctx: Ctx, idx: readonly number[], cols: number, x: number, y: number, cw: number, ch: number, fill: string, hatch: string): void {
  if (!idx.length) return;
  ctx.fillStyle = fill;
  for (const i of idx) ctx.fillRect(x + (i % cols) * cw, y + Math.floor(i / cols) * ch, cw, ch);
  if (cw < 4 || ch < 4) return;
  ctx.strokeStyle = hatch;
  ctx.lineWidth = 1;
  ctx.beginPath();
  const gap = 5;
  for (const i of idx) {
    const x0 = x + (i % cols) * cw;
    const y0 = y + Math.floor(i / cols) * ch;
    // lines of slope −1 through the cell, clipped to it by hand (Ctx has no clip)
    for (let d = gap; d < cw + ch; d += gap) {
      const ax = x0 + Math.max(0, d - ch);
      const ay = y0 + Math.min(d, ch);
      const bx = x0 + Math.min(d, cw);
      const by = y0 + Math.max(0, d - cw);
      ctx.moveTo(ax, ay);
      ctx.lineTo(bx, by);
    }
  }
  ctx.stroke();
}

/** A horizontal colour bar for a ramp over [lo, hi] with its end values (and a caption) underneath. */
export function drawLegend(
  ctx: Ctx,
  ramp: Uint8ClampedArray,
  x: number,
  y: number,
  w: number,
  h: number,
  labels: [string, string],
  color: string,
  caption = '',
): void {
  const px = new Uint8ClampedArray(256 * 4);
  px.set(ramp.subarray(0, 1024));
  drawHeatmap(ctx, raster(px, 256, 1), x, y, w, h);
  ctx.strokeStyle = color;
  ctx.globalAlpha = 0.4;
  ctx.lineWidth = 1;
  ctx.strokeRect(x + 0.5, y + 0.5, w - 1, h - 1);
  ctx.globalAlpha = 1;
  ctx.fillStyle = color;
  ctx.font = '11px Roboto, Arial, sans-serif';
  ctx.textBaseline = 'top';
  ctx.textAlign = 'left';
  ctx.fillText(labels[0], x, y + h + 3);
  ctx.textAlign = 'right';
  ctx.fillText(labels[1], x + w, y + h + 3);
  if (caption) {
    ctx.textAlign = 'center';
    ctx.fillText(caption, x + w / 2, y + h + 3);
  }
}
