// The matrix view's arithmetic, pure (unit-tested in test/matrix.test.ts): the viewport over the query ×
// key plane, zoom and pan, which source draws it (stored dense, pyramid, exact tiles), which exact tiles a
// viewport needs, pyramid binning, and which cells a causal or sliding-window mask hides.

/** Visible part of the matrix in token coordinates: keys x0..x1 (columns), queries y0..y1 (rows). */
export interface Viewport {
  x0: number;
  x1: number;
  y0: number;
  y1: number;
}

/** Fewest tokens a viewport spans per side (a 4 × 4 block of cells fills the plot at most zoom). */
export const MIN_SPAN = 4;
/** Exact tiles are square blocks of TILE × TILE tokens (64 kB of codes each), aligned to multiples of TILE. */
export const TILE = 256;
/** Exact windows replace the pyramid once the viewport holds at most this many cells (≤ 25 tiles, ~1.6 MB). */
export const EXACT_CELLS = 1 << 20;

export function fullViewport(q: number, k: number): Viewport {
  return {x0: 0, x1: k, y0: 0, y1: q};
}

/** One axis clamped into [0, n] with a span of at least min(MIN_SPAN, n), keeping its centre when it can. */
function clampAxis(a: number, b: number, n: number): [number, number] {
  let span = Math.min(n, Math.max(Math.min(MIN_SPAN, n), b - a));
  if (!(span > 0)) span = n;
  let lo = (a + b) / 2 - span / 2;
  lo = Math.max(0, Math.min(n - span, lo));
  return [lo, lo + span];
}

export function clampViewport(v: Viewport, q: number, k: number): Viewport {
  const [x0, x1] = clampAxis(v.x0, v.x1, k);
  const [y0, y1] = clampAxis(v.y0, v.y1, q);
  return {x0, x1, y0, y1};
}

/**
 * Zooms by `factor` (< 1: in, > 1: out) around the point at fractions (fx, fy) of the viewport, which stays
 * where it is on screen (unless the clamp to the matrix moves it). Both axes scale alike.
 */
export function zoomAt(v: Viewport, factor: number, fx: number, fy: number, q: number, k: number): Viewport {
  const ax = v.x0 + fx * (v.x1 - v.x0);
  const ay = v.y0 + fy * (v.y1 - v.y0);
  // the smallest span decides how far in one may go: keep the aspect when one axis hits MIN_SPAN
  const minF = Math.max(Math.min(MIN_SPAN, k) / (v.x1 - v.x0), Math.min(MIN_SPAN, q) / (v.y1 - v.y0));
  const f = Math.max(factor, Math.min(1, minF));
  return clampViewport({x0: ax - fx * (v.x1 - v.x0) * f, x1: ax + (1 - fx) * (v.x1 - v.x0) * f, y0: ay - fy * (v.y1 - v.y0) * f, y1: ay + (1 - fy) * (v.y1 - v.y0) * f}, q, k);
}

/** Moves the viewport by (dx, dy) tokens, stopping at the edges. */
export function panBy(v: Viewport, dx: number, dy: number, q: number, k: number): Viewport {
  const sx = v.x1 - v.x0;
  const sy = v.y1 - v.y0;
  const x0 = Math.max(0, Math.min(k - sx, v.x0 + dx));
  const y0 = Math.max(0, Math.min(q - sy, v.y0 + dy));
  return {x0, x1: x0 + sx, y0, y1: y0 + sy};
}

/** The viewport of a box dragged between two points (token coordinates), at least MIN_SPAN per side. */
export function boxViewport(ax: number, ay: number, bx: number, by: number, q: number, k: number): Viewport {
  return clampViewport({x0: Math.min(ax, bx), x1: Math.max(ax, bx), y0: Math.min(ay, by), y1: Math.max(ay, by)}, q, k);
}

/** A square window of `span` tokens centred on query `i` and key `j` (find-a-token, links). */
export function around(i: number, j: number, span: number, q: number, k: number): Viewport {
  return clampViewport({x0: j + 0.5 - span / 2, x1: j + 0.5 + span / 2, y0: i + 0.5 - span / 2, y1: i + 0.5 + span / 2}, q, k);
}

/** The cell (query i, key j) under plot pixel (px, py) of a w × h plot, or null outside the matrix. */
export function cellAtPixel(v: Viewport, w: number, h: number, px: number, py: number, q: number, k: number): {i: number; j: number} | null {
  if (px < 0 || py < 0 || px >= w || py >= h) return null;
  const j = Math.floor(v.x0 + (px / w) * (v.x1 - v.x0));
  const i = Math.floor(v.y0 + (py / h) * (v.y1 - v.y0));
  return i >= 0 && j >= 0 && i < q && j < k ? {i, j} : null;
}

/** Plot pixel of token coordinate (x, y). */
export function pixelOf(v: Viewport, w: number, h: number, x: number, y: number): {px: number; py: number} {
  return {px: ((x - v.x0) / (v.x1 - v.x0)) * w, py: ((y - v.y0) / (v.y1 - v.y0)) * h};
}

/** Cells a viewport shows (its integer cover). */
export function visibleCells(v: Viewport): number {
  return (Math.ceil(v.x1) - Math.floor(v.x0)) * (Math.ceil(v.y1) - Math.floor(v.y0));
}

export type MatrixSourceKind = 'dense' | 'pyramid' | 'exact';

/**
 * What draws a viewport: a dense record its stored matrix at every zoom; a long one its stored pyramid until
 * the viewport holds at most EXACT_CELLS cells, then exact tiles (when the layer can be rebuilt exactly).
 */
export function chooseSource(v: Viewport, long: boolean, exact: boolean): MatrixSourceKind {
  if (!long) return 'dense';
  return exact && visibleCells(v) <= EXACT_CELLS ? 'exact' : 'pyramid';
}

/** A tile of the exact level: rows [r0, r1) × cols [c0, c1) (clipped to the matrix). */
export interface Tile {
  ti: number;
  tj: number;
  r0: number;
  r1: number;
  c0: number;
  c1: number;
}

/** Which cells of a layer its mask hides: key j is visible from query i iff j ≤ i + off (causal) and i + off − j < window. */
export interface Mask {
  causal: boolean;
  window: number | null;
  /** k_len − q_len: where the diagonal is (0 for self-attention). */
  off: number;
}

export const NO_MASK: Mask = {causal: false, window: null, off: 0};

export function masked(m: Mask, i: number, j: number): boolean {
  return (m.causal && j > i + m.off) || (m.window !== null && i + m.off - j >= m.window);
}

/** True when every cell of rows [r0, r1) × cols [c0, c1) is hidden by the mask (nothing to fetch or draw). */
export function blockMasked(m: Mask, r0: number, r1: number, c0: number, c1: number): boolean {
  if (m.causal && c0 > r1 - 1 + m.off) return true; // left-most key is past the last row's diagonal
  if (m.window !== null && r0 + m.off - (c1 - 1) >= m.window) return true; // right-most key is too far back
  return false;
}

/** The exact tiles covering a viewport, nearest the centre first, without the ones the mask hides whole. */
export function tilesFor(v: Viewport, q: number, k: number, mask: Mask = NO_MASK, size = TILE): Tile[] {
  const out: Tile[] = [];
  const ti0 = Math.max(0, Math.floor(v.y0 / size));
  const ti1 = Math.min(Math.ceil(q / size) - 1, Math.floor((Math.ceil(v.y1) - 1) / size));
  const tj0 = Math.max(0, Math.floor(v.x0 / size));
  const tj1 = Math.min(Math.ceil(k / size) - 1, Math.floor((Math.ceil(v.x1) - 1) / size));
  for (let ti = ti0; ti <= ti1; ti++) {
    for (let tj = tj0; tj <= tj1; tj++) {
      const t = {ti, tj, r0: ti * size, r1: Math.min(q, (ti + 1) * size), c0: tj * size, c1: Math.min(k, (tj + 1) * size)};
      if (!blockMasked(mask, t.r0, t.r1, t.c0, t.c1)) out.push(t);
    }
  }
  const cx = (v.x0 + v.x1) / 2;
  const cy = (v.y0 + v.y1) / 2;
  const d = (t: Tile) => Math.hypot((t.c0 + t.c1) / 2 - cx, (t.r0 + t.r1) / 2 - cy);
  return out.sort((a, b) => d(a) - d(b));
}

/** Pyramid binning (as the backend's): token i of n is in bin floor(i · bins / n). */
export function binOf(i: number, n: number, bins: number): number {
  return Math.floor((i * bins) / n);
}

/** First token of bin b (bins partition 0..n−1 in order). */
export function binStart(b: number, n: number, bins: number): number {
  return Math.ceil((b * n) / bins);
}

/** Tokens in each of `bins` bins of n tokens. */
export function binCounts(n: number, bins: number): Int32Array {
  const c = new Int32Array(bins);
  for (let b = 0; b < bins; b++) c[b] = binStart(b + 1, n, bins) - binStart(b, n, bins);
  return c;
}
