// CanvasStack's bands (draw/canvas.ts) on a fake DOM: the lower layers cover the whole content (or the
// virtualised band), a view layer (the head view's hover overlay) only the visible part plus a margin, and
// scrolling moves it.
import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest';
import {CanvasStack, viewBand} from '../src/draw/canvas';

/** The least DOM CanvasStack uses: elements with a style, canvases recording their transform, a scroller. */
function fakeDom(innerHeight: number) {
  const listeners: Array<() => void> = [];
  const win = {innerHeight, devicePixelRatio: 1, addEventListener: (_: string, f: () => void) => listeners.push(f), removeEventListener: () => undefined};
  let scrollTop = 0;
  const body = {parentElement: null};
  const make = (tag: string) => {
    const e: Record<string, unknown> = {
      tagName: tag,
      style: {} as Record<string, string>,
      children: [] as unknown[],
      parentElement: body,
      isConnected: true,
      width: 300,
      height: 150,
      appendChild(c: {parentElement: unknown}) {
        c.parentElement = e;
        (e.children as unknown[]).push(c);
      },
      // the stack's root at the top of the document, scrolled by scrollTop
      getBoundingClientRect: () => ({top: -scrollTop, bottom: -scrollTop + 1e6, left: 0, right: 600}),
    };
    if (tag === 'canvas') {
      const ctx = {transform: [] as number[], clears: 0, setTransform: (...m: number[]) => void (ctx.transform = m), clearRect: () => void ctx.clears++};
      e.getContext = () => ctx;
    }
    return e;
  };
  const doc = {createElement: make, scrollingElement: null as unknown, documentElement: null as unknown};
  doc.scrollingElement = doc.documentElement = body;
  vi.stubGlobal('window', win);
  vi.stubGlobal('document', doc);
  vi.stubGlobal('getComputedStyle', () => ({overflowY: 'visible'}));
  return {
    /** Scrolls to `y`; `notify` false: before the scroll event comes. */
    scrollTo(y: number, notify = true) {
      scrollTop = y;
      if (notify) for (const f of listeners) f();
    },
  };
}

type FakeCanvas = HTMLCanvasElement & {getContext: () => {transform: number[]; clears: number}};

describe('view band', () => {
  it('covers the visible part plus a quarter screen (at least 64 px), within the content', () => {
    expect(viewBand(1000, 1800, 10000, 8192)).toEqual([800, 2000]);
    expect(viewBand(0, 100, 10000, 8192)).toEqual([0, 164]);
    expect(viewBand(9200, 10000, 10000, 8192)).toEqual([9000, 10000]);
    expect(viewBand(0, 20000, 40000, 8192)).toEqual([0, 8192]);
  });
});

describe('canvas stack', () => {
  let dom: ReturnType<typeof fakeDom>;
  beforeEach(() => {
    dom = fakeDom(800);
  });
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it('sizes a view layer to the screen, the others to the content, and moves it when scrolled', () => {
    const calls: string[] = [];
    const s = new CanvasStack(3, () => calls.push('all'), {viewLayers: [0], onViewBandChange: () => calls.push('view')});
    s.resize(600, 7000);
    const [hover, rest] = s.layers as FakeCanvas[];
    expect(s.virtual).toBe(false);
    expect([rest.width, rest.height, rest.style.top]).toEqual([600, 7000, '0px']);
    expect(s.band(0)).toEqual([0, 1000]);
    expect([hover.height, hover.style.top, hover.style.height]).toEqual([1000, '0px', '1000px']);
    // inside the margin: nothing moves
    dom.scrollTo(150);
    expect(calls).toEqual([]);
    dom.scrollTo(3000);
    expect(calls).toEqual(['view']);
    expect(s.band(0)).toEqual([2800, 4000]);
    expect([hover.height, hover.style.top]).toEqual([1200, '2800px']);
    expect([s.y0, s.y1, rest.height]).toEqual([0, 7000, 7000]);
    // drawing in content coordinates: each layer's context is offset by its own band
    s.ctx(0);
    expect(hover.getContext().transform).toEqual([1, 0, 0, 1, 0, -2800]);
    s.ctx(1);
    expect(rest.getContext().transform).toEqual([1, 0, 0, 1, 0, -0]);
  });

  it('moves the view layer to the screen when asked for its context before the scroll event', () => {
    const s = new CanvasStack(2, () => undefined, {viewLayers: [1]});
    s.resize(600, 5000);
    const hover = s.layers[1] as FakeCanvas;
    dom.scrollTo(2000, false);
    expect(s.band(1)).toEqual([0, 1000]);
    s.ctx(1, false);
    expect(s.band(1)).toEqual([1800, 3000]);
    expect(hover.getContext().transform).toEqual([1, 0, 0, 1, 0, -1800]);
    expect(hover.getContext().clears).toBe(1); // moved: cleared even though asked not to
  });

  it('moves the view layer with a virtualised band, in one full redraw', () => {
    const calls: string[] = [];
    const s = new CanvasStack(3, () => calls.push('all'), {viewLayers: [0], onViewBandChange: () => calls.push('view')});
    s.resize(600, 400_000);
    expect(s.virtual).toBe(true);
    expect([s.y0, s.y1]).toEqual([0, 1600]);
    dom.scrollTo(100_000);
    expect(calls).toEqual(['all']);
    expect([s.y0, s.y1]).toEqual([99_200, 101_600]);
    expect(s.band(0)).toEqual([99_800, 101_000]);
  });

  it('keeps every layer on the content band without view layers (the matrix and other views)', () => {
    const calls: string[] = [];
    const s = new CanvasStack(2, () => calls.push('all'));
    s.resize(600, 7000);
    dom.scrollTo(3000);
    expect(calls).toEqual([]);
    expect(s.band(1)).toEqual([0, 7000]);
    expect((s.layers[1] as FakeCanvas).height).toBe(7000);
  });
});

describe('bitmap layers', () => {
  /** OffscreenCanvas and 'bitmaprenderer' stand-ins: what was drawn off screen, and what each canvas shows. */
  function fakeBitmaps() {
    let n = 0;
    class FakeOffscreen {
      width: number;
      height: number;
      drawn = 0;
      ctx = {transform: [] as number[], clears: 0, setTransform: (...m: number[]) => void (this.ctx.transform = m), clearRect: () => void this.ctx.clears++, fillRect: () => void this.drawn++};
      constructor(w: number, h: number) {
        this.width = w;
        this.height = h;
      }
      getContext() {
        return this.ctx;
      }
      transferToImageBitmap() {
        const b = {id: ++n, width: this.width, height: this.height, drawn: this.drawn};
        this.drawn = 0; // the off-screen canvas is blank once its bitmap is taken
        return b;
      }
    }
    vi.stubGlobal('OffscreenCanvas', FakeOffscreen);
    vi.stubGlobal('ImageBitmapRenderingContext', class {});
  }

  beforeEach(() => {
    fakeDom(800);
  });
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it('draws a bitmap layer off screen and shows it once, after the drawing task', async () => {
    fakeBitmaps();
    const s = new CanvasStack(3, () => undefined, {viewLayers: [0], bitmapLayers: [0, 1]});
    s.resize(600, 7000);
    const shown: unknown[] = [];
    const rest = s.layers[1] as unknown as {getContext: (k: string) => unknown; width: number; height: number};
    rest.getContext = (kind: string) => (kind === 'bitmaprenderer' ? {transferFromImageBitmap: (b: unknown) => shown.push(b)} : null);
    const ctx = s.ctx(1) as unknown as {transform: number[]; clears: number; fillRect: () => void};
    ctx.fillRect();
    expect(ctx.transform).toEqual([1, 0, 0, 1, 0, -0]);
    expect(ctx.clears).toBe(1);
    expect(shown).toEqual([]); // not yet: the drawing may go on in this task
    await Promise.resolve();
    expect(shown).toEqual([{id: 1, width: 600, height: 7000, drawn: 1}]);
    // drawn whole only: asking to repaint a part is an error, not a silently blank layer
    expect(() => s.ctx(1, false)).toThrow(/drawn whole/);
    // a view layer (the hover overlay) stays a 2D canvas, as do layers not named
    expect((s.layers[0] as FakeCanvas).getContext()).toBe(s.ctx(0));
    expect((s.layers[2] as FakeCanvas).getContext()).toBe(s.ctx(2));
  });

  it('keeps plain 2D canvases where the browser has no OffscreenCanvas', () => {
    const s = new CanvasStack(2, () => undefined, {bitmapLayers: [1]});
    s.resize(600, 7000);
    expect((s.layers[1] as FakeCanvas).getContext()).toBe(s.ctx(1));
    expect(() => s.ctx(1, false)).not.toThrow();
  });
});
