// The last crisp render of a matrix plot, kept as a canvas with the viewport it shows, so that a zoom or
// pan frame draws it scaled (one drawImage) instead of re-rendering every pixel; the view renders crisply
// again once the gesture rests (frames.ts: SETTLE_MS). The rectangle arithmetic is pure (unit-tested).
import type {LayerContext} from '../../draw/canvas';
import type {Viewport} from './zoom';

/** Source and destination rectangles of a scaled draw (source in cache pixels, destination in plot pixels). */
export interface ScaledDraw {
  sx: number;
  sy: number;
  sw: number;
  sh: number;
  dx: number;
  dy: number;
  dw: number;
  dh: number;
}

/**
 * How to show viewport `v` in a w × h plot from a cw × ch render of viewport `c`: the part of the cache that
 * `v` covers (clipped to the cache) and where it lands in the plot (the rest of the plot is not covered: the
 * caller fills it). Null when `v` and `c` do not overlap.
 */
export function scaledDraw(c: Viewport, cw: number, ch: number, v: Viewport, w: number, h: number): ScaledDraw | null {
  const kx = cw / (c.x1 - c.x0);
  const ky = ch / (c.y1 - c.y0);
  // v in cache pixels (may reach outside the cache)
  const ax = (v.x0 - c.x0) * kx;
  const ay = (v.y0 - c.y0) * ky;
  const aw = (v.x1 - v.x0) * kx;
  const ah = (v.y1 - v.y0) * ky;
  const sx0 = Math.max(0, ax);
  const sy0 = Math.max(0, ay);
  const sx1 = Math.min(cw, ax + aw);
  const sy1 = Math.min(ch, ay + ah);
  if (!(sx1 > sx0 && sy1 > sy0)) return null;
  const fx = w / aw;
  const fy = h / ah;
  return {sx: sx0, sy: sy0, sw: sx1 - sx0, sh: sy1 - sy0, dx: (sx0 - ax) * fx, dy: (sy0 - ay) * fy, dw: (sx1 - sx0) * fx, dh: (sy1 - sy0) * fy};
}

/** One plot's last crisp render (a canvas of its pixels) and the viewport it shows. */
export class PlotCache {
  private canvas: HTMLCanvasElement | null = null;
  v: Viewport | null = null;

  /** Keeps `pixels` (w × h RGBA) as the render of `v`; returns the canvas (to draw it 1:1 now). */
  store(pixels: Uint8ClampedArray, w: number, h: number, v: Viewport): HTMLCanvasElement | null {
    if (typeof document === 'undefined' || typeof ImageData === 'undefined') return null;
    const c = this.canvas ?? (this.canvas = document.createElement('canvas'));
    if (c.width !== w || c.height !== h) {
      c.width = w;
      c.height = h;
    }
    c.getContext('2d')!.putImageData(new ImageData(pixels as Uint8ClampedArray<ArrayBuffer>, w, h), 0, 0);
    this.v = {...v};
    return c;
  }

  /** Draws the cached render scaled to show `v` in the plot rectangle (x, y, w, h); false when there is none. */
  draw(ctx: LayerContext, v: Viewport, x: number, y: number, w: number, h: number, fill: string): boolean {
    const c = this.canvas;
    if (!c || !this.v) return false;
    ctx.fillStyle = fill;
    ctx.fillRect(x, y, w, h);
    const s = scaledDraw(this.v, c.width, c.height, v, w, h);
    if (!s) return true;
    const prev = ctx.imageSmoothingEnabled;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(c, s.sx, s.sy, s.sw, s.sh, x + s.dx, y + s.dy, s.dw, s.dh);
    ctx.imageSmoothingEnabled = prev;
    return true;
  }

  clear(): void {
    this.v = null;
  }
}
