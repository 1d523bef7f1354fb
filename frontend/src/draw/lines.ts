// Attention lines between a query column and a key column.
//
// Which lines: a weight w becomes a line of opacity alpha = min(1, |w| · scale). At rest a line whose
// alpha·255 < 0.5 is skipped: canvas and screen work in 8-bit alpha, so such a line rounds to alpha 0 and
// leaves every pixel unchanged. Optionally only the top-k weights of each query row are kept (long inputs).
//
// How: lines are grouped by their 8-bit alpha ("bucket", 1..255) and each bucket of a head is one canvas
// path, stroked once: a few hundred strokes for tens of thousands of lines instead of one per line.
import type {Ctx} from './ctx';

export const MIN_VISIBLE_ALPHA = 0.5 / 255;

export interface LineSet {
  count: number;
  /** Query (row) and key (column) index of each line, ordered by bucket. */
  from: Int32Array;
  to: Int32Array;
  /** Lines of bucket b are [bucketStarts[b], bucketStarts[b+1]); b in 0..255 (0 stays empty). */
  bucketStarts: Int32Array;
}

export interface LineOptions {
  /** alpha = |w| · scale. */
  scale: number;
  /** Keep only the k largest weights per query row (0: all). */
  topk?: number;
  /** Only this row / only this column (hover). */
  row?: number;
  col?: number;
  /** 1: positive weights only, -1: negative only (using |w|), 0: all (attention is non-negative). */
  sign?: 0 | 1 | -1;
  /** Rows and columns outside these masks are skipped (e.g. switched-off tokens). */
  rowMask?: Uint8Array;
  /** Per-row divisor of |w| before `scale` (the head view's per-row opacity: each row's maximum). */
  rowNorm?: Float32Array;
}

/** Each row's largest |w| of a (rows × cols) matrix (1 for an all-zero row): the per-row opacity divisor. */
export function rowMaxima(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows);
  for (let i = 0; i < rows; i++) {
    let mx = 0;
    for (let j = 0, b = i * cols; j < cols; j++) mx = Math.max(mx, Math.abs(m[b + j]));
    out[i] = mx > 0 ? mx : 1;
  }
  return out;
}

/** Lines from each row's stored top-k (key indices and weights, K per row), as collectLines would keep them. */
export function collectSparseLines(index: Uint32Array, values: Float32Array, rows: number, K: number, opt: {scale: number; topk?: number; rowNorm?: Float32Array}): LineSet {
  const keep = opt.topk && opt.topk > 0 ? Math.min(K, opt.topk) : K;
  const counts = new Int32Array(257);
  const buckets = new Uint8Array(rows * keep);
  for (let i = 0; i < rows; i++) {
    const norm = opt.rowNorm ? opt.rowNorm[i] : 1;
    for (let r = 0; r < keep; r++) {
      const b = alphaBucket(values[i * K + r] / norm, opt.scale);
      buckets[i * keep + r] = b;
      counts[b]++;
    }
  }
  const bucketStarts = new Int32Array(257);
  for (let b = 1; b <= 256; b++) bucketStarts[b] = bucketStarts[b - 1] + (b - 1 === 0 ? 0 : counts[b - 1]);
  const count = bucketStarts[256];
  const from = new Int32Array(count);
  const to = new Int32Array(count);
  const fill = bucketStarts.slice(0, 256);
  for (let i = 0; i < rows; i++)
    for (let r = 0; r < keep; r++) {
      const b = buckets[i * keep + r];
      if (!b) continue;
      const p = fill[b]++;
      from[p] = i;
      to[p] = index[i * K + r];
    }
  return {count, from, to, bucketStarts};
}

/** 8-bit alpha bucket of a weight, 0 when the line is invisible. */
export function alphaBucket(w: number, scale: number): number {
  const a = Math.min(1, Math.abs(w) * scale);
  const b = Math.round(a * 255);
  return b;
}

/** The visible lines of a (rows × cols) row-major matrix, see the top of this file. */
export function collectLines(m: Float32Array, rows: number, cols: number, opt: LineOptions): LineSet {
  const sign = opt.sign ?? 0;
  const topk = opt.row !== undefined || opt.col !== undefined ? 0 : Math.max(0, opt.topk ?? 0);
  const counts = new Int32Array(257);
  const fromTmp: number[] = [];
  const toTmp: number[] = [];
  const bucketTmp: number[] = [];
  const r0 = opt.row ?? 0;
  const r1 = opt.row !== undefined ? opt.row + 1 : rows;
  const c0 = opt.col ?? 0;
  const c1 = opt.col !== undefined ? opt.col + 1 : cols;
  const keepIdx = new Int32Array(Math.max(1, topk));
  const keepVal = new Float64Array(Math.max(1, topk));
  const push = (i: number, j: number, b: number) => {
    fromTmp.push(i);
    toTmp.push(j);
    bucketTmp.push(b);
    counts[b]++;
  };
  for (let i = r0; i < r1; i++) {
    if (opt.rowMask && !opt.rowMask[i]) continue;
    const base = i * cols;
    if (topk === 0) {
      const norm = opt.rowNorm ? opt.rowNorm[i] : 1;
      for (let j = c0; j < c1; j++) {
        const w = m[base + j];
        if ((sign > 0 && w <= 0) || (sign < 0 && w >= 0)) continue;
        const b = alphaBucket(w / norm, opt.scale);
        if (b > 0) push(i, j, b);
      }
      continue;
    }
    // top-k by |w| among visible lines: insertion into a small sorted buffer
    let n = 0;
    const norm = opt.rowNorm ? opt.rowNorm[i] : 1;
    for (let j = c0; j < c1; j++) {
      const w = m[base + j];
      if ((sign > 0 && w <= 0) || (sign < 0 && w >= 0)) continue;
      const a = Math.abs(w) / norm;
      if (alphaBucket(a, opt.scale) === 0) continue;
      if (n === topk && a <= keepVal[n - 1]) continue;
      let p = n < topk ? n++ : n - 1;
      while (p > 0 && keepVal[p - 1] < a) {
        keepVal[p] = keepVal[p - 1];
        keepIdx[p] = keepIdx[p - 1];
        p--;
      }
      keepVal[p] = a;
      keepIdx[p] = j;
    }
    for (let t = 0; t < n; t++) push(i, keepIdx[t], alphaBucket(keepVal[t], opt.scale));
  }
  // counting sort by bucket
  const bucketStarts = new Int32Array(257);
  for (let b = 1; b <= 256; b++) bucketStarts[b] = bucketStarts[b - 1] + counts[b - 1];
  const count = fromTmp.length;
  const from = new Int32Array(count);
  const to = new Int32Array(count);
  const fill = bucketStarts.slice(0, 256);
  for (let t = 0; t < count; t++) {
    const p = fill[bucketTmp[t]]++;
    from[p] = fromTmp[t];
    to[p] = toTmp[t];
  }
  return {count, from, to, bucketStarts};
}

export interface LineGeometry {
  x1: number;
  x2: number;
  /** y of row i (left end) and column j (right end). */
  rowY: (i: number) => number;
  colY: (j: number) => number;
}

/**
 * Strokes a line set in one colour, one path per alpha bucket. Lines entirely above y0 or below y1 are
 * skipped (virtualised canvases). Returns the number of lines drawn.
 */
export function drawLines(
  ctx: Ctx,
  set: LineSet,
  color: string,
  g: LineGeometry,
  y0 = -Infinity,
  y1 = Infinity,
  alphaMul = 1,
  pair = false,
): number {
  let drawn = 0;
  ctx.strokeStyle = color;
  for (let b = 1; b < 256; b++) {
    const s = set.bucketStarts[b];
    const e = set.bucketStarts[b + 1];
    if (e <= s) continue;
    ctx.globalAlpha = (b / 255) * alphaMul;
    ctx.beginPath();
    let any = false;
    for (let t = s; t < e; t++) {
      const ya = g.rowY(set.from[t]);
      const yb = g.colY(set.to[t]);
      if ((ya < y0 && yb < y0) || (ya > y1 && yb > y1)) continue;
      if (pair) {
        // two 1 px lines half a pixel either side (along the normal): a 2 px line at a fraction of the
        // software raster cost of stroking one (Skia's hairline path)
        const dx = g.x2 - g.x1;
        const dy = yb - ya;
        const f = 0.5 / Math.hypot(dx, dy);
        const nx = -dy * f;
        const ny = dx * f;
        ctx.moveTo(g.x1 + nx, ya + ny);
        ctx.lineTo(g.x2 + nx, yb + ny);
        ctx.moveTo(g.x1 - nx, ya - ny);
        ctx.lineTo(g.x2 - nx, yb - ny);
      } else {
        ctx.moveTo(g.x1, ya);
        ctx.lineTo(g.x2, yb);
      }
      drawn++;
      any = true;
    }
    if (any) ctx.stroke();
  }
  ctx.globalAlpha = 1;
  return drawn;
}
