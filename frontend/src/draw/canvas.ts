// Stacked canvases (e.g. tokens / lines / hover overlay) covering a content area of any height. Content up to
// MAX_CANVAS_PX device pixels tall gets full-size canvases (scrolling costs nothing); taller content is
// virtualised: the canvases cover the visible band plus one screen above and below, and are redrawn when
// scrolling leaves that band. "View layers" (a hover overlay repainted on every pointer move) cover only the
// visible part plus a margin: each repaint then hands the compositor a screenful, not up to 8192 device px.
// "Bitmap layers" (text, resting lines: drawn whole, rarely) are drawn off screen and shown as one ImageBitmap
// ('bitmaprenderer'): the compositor takes a bitmap once, while it takes a fresh copy of every 2D canvas on the
// page at each commit where it paints without a GPU (measured: the head view's full-size token layer cost each
// hover a 1.5 ms copy, 6 ms at 4x CPU throttle). Drawing code always works in content coordinates.
import type {Ctx} from './ctx';

// 8192 device px: a 3-layer stack of full-size canvases stays under ~100 MB even on 2x displays.
const MAX_CANVAS_PX = 8192;

/**
 * The band [y0, y1) of a view layer over the visible part [top, bottom) of content `height` px tall: a
 * quarter screen (at least 64 px) of margin either side, at most `maxH` px tall.
 */
export function viewBand(top: number, bottom: number, height: number, maxH: number): [number, number] {
  const margin = Math.max(64, Math.round((bottom - top) / 4));
  const y0 = Math.max(0, Math.floor(top - margin));
  return [y0, Math.max(y0 + 1, Math.min(height, Math.ceil(bottom + margin), y0 + maxH))];
}

export interface StackOptions {
  /** Layers sized to the visible part of the content (repainted often: a hover overlay). */
  viewLayers?: readonly number[];
  /**
   * Layers always drawn whole (`ctx(i)` clears them), shown as a bitmap once drawn (see above) where the
   * browser has OffscreenCanvas and 'bitmaprenderer'; plain 2D canvases elsewhere, and for view layers (drawn
   * in the handler, a bitmap moved the copy into it: measured slower).
   */
  bitmapLayers?: readonly number[];
  /** Scrolling moved the view layers' band only (the default: `onBandChange`). */
  onViewBandChange?: () => void;
}

/** Whether this browser can show a layer as a bitmap drawn off screen. */
function bitmapLayersSupported(): boolean {
  return (
    typeof OffscreenCanvas !== 'undefined' &&
    typeof OffscreenCanvas.prototype.transferToImageBitmap === 'function' &&
    typeof ImageBitmapRenderingContext !== 'undefined'
  );
}

/** A layer's drawing context: its canvas's own, or (bitmap layers) the off-screen one shown when drawn. */
export type LayerContext = CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D;

export function devicePixelRatioOf(): number {
  return typeof window !== 'undefined' && window.devicePixelRatio > 0 ? Math.min(window.devicePixelRatio, 3) : 1;
}

/** Nearest scrolling ancestor (or the document's scrolling element). */
export function scrollParent(el: HTMLElement): HTMLElement {
  for (let p = el.parentElement; p; p = p.parentElement) {
    const oy = getComputedStyle(p).overflowY;
    if (oy === 'auto' || oy === 'scroll') return p;
  }
  return (document.scrollingElement as HTMLElement) ?? document.documentElement;
}

export class CanvasStack {
  readonly root: HTMLDivElement;
  readonly layers: HTMLCanvasElement[];
  width = 0;
  height = 0;
  /** Band of content currently covered by the canvases: [y0, y1). */
  y0 = 0;
  y1 = 0;
  virtual = false;
  /** Band covered by the view layers (when there are any). */
  viewY0 = 0;
  viewY1 = 0;
  private viewLayers: ReadonlySet<number>;
  /** Bitmap layers' off-screen canvases (only where supported), and those drawn since last shown. */
  private offscreen = new Map<number, OffscreenCanvas>();
  private unshown = new Set<number>();
  private dpr = 1;
  private scroller: HTMLElement | null = null;
  private detach: (() => void) | null = null;

  constructor(
    n: number,
    private onBandChange: () => void,
    private opts: StackOptions = {},
  ) {
    this.viewLayers = new Set(opts.viewLayers ?? []);
    const bitmaps = bitmapLayersSupported() ? (opts.bitmapLayers ?? []).filter((i) => !this.viewLayers.has(i)) : [];
    this.root = document.createElement('div');
    this.root.className = 'canvas-stack';
    this.layers = [];
    for (let i = 0; i < n; i++) {
      const c = document.createElement('canvas');
      c.className = 'canvas-layer';
      c.style.zIndex = String(i);
      this.root.appendChild(c);
      this.layers.push(c);
      if (bitmaps.includes(i)) this.offscreen.set(i, new OffscreenCanvas(1, 1));
    }
  }

  /** Top layer: receives pointer events. */
  get top(): HTMLCanvasElement {
    return this.layers[this.layers.length - 1];
  }

  resize(width: number, height: number): void {
    this.width = Math.max(1, Math.ceil(width));
    this.height = Math.max(1, Math.ceil(height));
    this.dpr = devicePixelRatioOf();
    this.root.style.width = `${this.width}px`;
    this.root.style.height = `${this.height}px`;
    this.virtual = this.height * this.dpr > MAX_CANVAS_PX;
    if (this.virtual || this.viewLayers.size) this.ensureScroller();
    this.placeBand(true);
  }

  /** The band [y0, y1) of content that layer `i` covers. */
  band(i: number): [number, number] {
    return this.viewLayers.has(i) ? [this.viewY0, this.viewY1] : [this.y0, this.y1];
  }

  private ensureScroller(): void {
    if (this.scroller || !this.root.isConnected) return;
    const sc = scrollParent(this.root);
    this.scroller = sc;
    const target: HTMLElement | Window = sc === document.scrollingElement ? window : sc;
    const onScroll = () => {
      if (this.virtual && this.placeBand(false)) return;
      if (this.placeView(false)) (this.opts.onViewBandChange ?? this.onBandChange)();
    };
    target.addEventListener('scroll', onScroll, {passive: true});
    window.addEventListener('resize', onScroll);
    this.detach = () => {
      target.removeEventListener('scroll', onScroll);
      window.removeEventListener('resize', onScroll);
    };
  }

  dispose(): void {
    this.detach?.();
    this.detach = null;
    this.scroller = null;
  }

  /** The part of the content that is on screen, in content coordinates. */
  visibleRange(): [number, number] {
    if (!this.root.isConnected) return [0, Math.min(this.height, 2000)];
    const r = this.root.getBoundingClientRect();
    const sc = this.scroller ?? scrollParent(this.root);
    const v =
      sc === document.scrollingElement || sc === document.documentElement
        ? {top: 0, bottom: window.innerHeight}
        : sc.getBoundingClientRect();
    const top = Math.max(0, v.top - r.top);
    const bottom = Math.min(this.height, v.bottom - r.top);
    if (bottom <= top) return [0, Math.min(this.height, Math.max(200, v.bottom - v.top))];
    return [top, bottom];
  }

  /** Places the lower layers (the whole content, or the virtualised band); returns whether it moved. */
  private placeBand(force: boolean): boolean {
    let y0 = 0;
    let y1 = this.height;
    if (this.virtual) {
      this.ensureScroller();
      const [top, bottom] = this.visibleRange();
      if (!force && top >= this.y0 && bottom <= this.y1) return false;
      const screen = Math.max(200, bottom - top);
      const maxBand = Math.floor(MAX_CANVAS_PX / this.dpr);
      y0 = Math.max(0, Math.floor(top - screen));
      y1 = Math.min(this.height, Math.ceil(bottom + screen), y0 + maxBand);
    }
    this.y0 = y0;
    this.y1 = y1;
    this.layers.forEach((c, i) => {
      if (!this.viewLayers.has(i)) this.size(c, y0, y1, false);
    });
    this.placeView(true);
    if (!force) this.onBandChange();
    return true;
  }

  /** Places the view layers over the visible part (unless it is already covered); returns whether they moved. */
  private placeView(force: boolean): boolean {
    if (!this.viewLayers.size) return false;
    this.ensureScroller();
    const [top, bottom] = this.visibleRange();
    if (!force && top >= this.viewY0 && bottom <= this.viewY1) return false;
    [this.viewY0, this.viewY1] = viewBand(top, bottom, this.height, Math.floor(MAX_CANVAS_PX / this.dpr));
    for (const i of this.viewLayers) this.size(this.layers[i], this.viewY0, this.viewY1, true);
    return true;
  }

  /** Sizes and places canvas `c` over [y0, y1); `keep`: an unchanged size keeps its pixels (ctx() clears them). */
  private size(c: HTMLCanvasElement, y0: number, y1: number, keep: boolean): void {
    c.style.top = `${y0}px`;
    c.style.width = `${this.width}px`;
    c.style.height = `${y1 - y0}px`;
    const w = Math.round(this.width * this.dpr);
    const h = Math.round((y1 - y0) * this.dpr);
    // assigning a size clears the canvas and reallocates its backing store, even when it is the same
    if (!keep || c.width !== w) c.width = w;
    if (!keep || c.height !== h) c.height = h;
  }

  /**
   * A cleared 2D context for layer `i`, transformed so that drawing uses content coordinates (`clear`
   * false: as it is, to repaint a part). A view layer is first moved over the visible part if it has left
   * its band; `band(i)` then says what it covers.
   */
  ctx(i: number, clear = true): LayerContext {
    const c = this.layers[i];
    if (this.viewLayers.has(i) && this.placeView(false)) clear = true;
    const off = this.offscreen.get(i);
    let ctx: LayerContext;
    if (off) {
      // drawn whole: the off-screen canvas is blank once shown, so `clear` cannot be false here
      if (!clear) throw new Error(`layer ${i} is a bitmap layer: it is drawn whole`);
      if (off.width !== c.width) off.width = c.width;
      if (off.height !== c.height) off.height = c.height;
      ctx = off.getContext('2d')!;
      if (!this.unshown.size) queueMicrotask(() => this.show());
      this.unshown.add(i);
    } else {
      ctx = c.getContext('2d')!;
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    if (clear) ctx.clearRect(0, 0, c.width, c.height);
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, -this.band(i)[0] * this.dpr);
    return ctx;
  }

  /**
   * Shows what was drawn into the bitmap layers since they were last shown (after the drawing task, by a
   * microtask; call it to show them at once). A bitmap layer left undrawn keeps what it showed.
   */
  show(): void {
    for (const i of this.unshown) {
      const off = this.offscreen.get(i)!;
      const r = this.layers[i].getContext('bitmaprenderer') as ImageBitmapRenderingContext;
      r.transferFromImageBitmap(off.transferToImageBitmap());
    }
    this.unshown.clear();
  }

  /** Pointer position in content coordinates. */
  toContent(ev: MouseEvent): {x: number; y: number} {
    const r = this.root.getBoundingClientRect();
    return {x: ev.clientX - r.left, y: ev.clientY - r.top};
  }
}

/** Paints `draw` at full content size onto a fresh canvas (PNG export); null if it would be too large. */
export function renderToCanvas(
  width: number,
  height: number,
  background: string,
  draw: (ctx: Ctx) => void,
  scale = 2,
): HTMLCanvasElement | null {
  let s = scale;
  while (s > 0.25 && (height * s > 32000 || width * height * s * s > 200e6)) s /= 2;
  if (height * s > 32000) return null;
  const c = document.createElement('canvas');
  c.width = Math.ceil(width * s);
  c.height = Math.ceil(height * s);
  const ctx = c.getContext('2d')!;
  ctx.scale(s, s);
  ctx.fillStyle = background;
  ctx.fillRect(0, 0, width, height);
  draw(ctx);
  return c;
}
