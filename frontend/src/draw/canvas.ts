// Stacked canvases (e.g. tokens / lines / hover overlay) covering a content area of any height. Content up to
// MAX_CANVAS_PX device pixels tall gets full-size canvases (scrolling costs nothing); taller content is
// virtualised: the canvases cover the visible band plus one screen above and below, and are redrawn when
// scrolling leaves that band. Drawing code always works in content coordinates.
import type {Ctx} from './ctx';

// 8192 device px: a 3-layer stack of full-size canvases stays under ~100 MB even on 2x displays.
const MAX_CANVAS_PX = 8192;

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
  private dpr = 1;
  private scroller: HTMLElement | null = null;
  private detach: (() => void) | null = null;

  constructor(
    n: number,
    private onBandChange: () => void,
  ) {
    this.root = document.createElement('div');
    this.root.className = 'canvas-stack';
    this.layers = [];
    for (let i = 0; i < n; i++) {
      const c = document.createElement('canvas');
      c.className = 'canvas-layer';
      c.style.zIndex = String(i);
      this.root.appendChild(c);
      this.layers.push(c);
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
    if (this.virtual) this.ensureScroller();
    this.placeBand(true);
  }

  private ensureScroller(): void {
    if (this.scroller || !this.root.isConnected) return;
    const sc = scrollParent(this.root);
    this.scroller = sc;
    const target: HTMLElement | Window = sc === document.scrollingElement ? window : sc;
    const onScroll = () => {
      if (this.virtual) this.placeBand(false);
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

  private placeBand(force: boolean): void {
    let y0 = 0;
    let y1 = this.height;
    if (this.virtual) {
      this.ensureScroller();
      const [top, bottom] = this.visibleRange();
      if (!force && top >= this.y0 && bottom <= this.y1) return;
      const screen = Math.max(200, bottom - top);
      const maxBand = Math.floor(MAX_CANVAS_PX / this.dpr);
      y0 = Math.max(0, Math.floor(top - screen));
      y1 = Math.min(this.height, Math.ceil(bottom + screen), y0 + maxBand);
    }
    this.y0 = y0;
    this.y1 = y1;
    const h = y1 - y0;
    for (const c of this.layers) {
      c.style.top = `${y0}px`;
      c.style.width = `${this.width}px`;
      c.style.height = `${h}px`;
      c.width = Math.round(this.width * this.dpr);
      c.height = Math.round(h * this.dpr);
    }
    if (!force) this.onBandChange();
  }

  /**
   * A cleared 2D context for layer `i`, transformed so that drawing uses content coordinates (`clear`
   * false: as it is, to repaint a part).
   */
  ctx(i: number, clear = true): CanvasRenderingContext2D {
    const c = this.layers[i];
    const ctx = c.getContext('2d')!;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    if (clear) ctx.clearRect(0, 0, c.width, c.height);
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, -this.y0 * this.dpr);
    return ctx;
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
