// Heatmaps: a matrix painted one pixel per cell into an offscreen canvas through a 256-entry RGBA lookup,
// then scaled onto the target without smoothing (one drawImage instead of one fillRect per cell).
import type {Ctx} from './ctx';

/** Maps a value to a lookup bucket 0..255. */
export type Bucketer = (v: number) => number;

export function linearBucketer(max: number): Bucketer {
  const s = max > 0 ? 255 / max : 0;
  return (v) => Math.max(0, Math.min(255, Math.round(Math.abs(v) * s)));
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
    const b = bucket(values[i]) * 4;
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
    const b = bucket(v) * 4;
    out[4 * i] = lut[b];
    out[4 * i + 1] = lut[b + 1];
    out[4 * i + 2] = lut[b + 2];
    out[4 * i + 3] = lut[b + 3];
  }
  return out;
}

export function pixelsToCanvas(pixels: Uint8ClampedArray, cols: number, rows: number): HTMLCanvasElement {
  const c = document.createElement('canvas');
  c.width = Math.max(1, cols);
  c.height = Math.max(1, rows);
  if (rows > 0 && cols > 0) {
    const img = new ImageData(pixels as Uint8ClampedArray<ArrayBuffer>, cols, rows);
    c.getContext('2d')!.putImageData(img, 0, 0);
  }
  return c;
}

export function drawHeatmap(ctx: Ctx, image: HTMLCanvasElement, x: number, y: number, w: number, h: number): void {
  const prev = ctx.imageSmoothingEnabled;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(image, x, y, w, h);
  ctx.imageSmoothingEnabled = prev;
}
