// A small line chart on canvas (values over training steps): scales (linear, or symmetric-log for steps
// that start at 0), nice ticks, axes, series broken at NaN, point markers, a vertical marker, hit-testing.
import type {Ctx} from './ctx';

export interface Scale {
  (v: number): number;
  domain: [number, number];
  range: [number, number];
  log: boolean;
  invert(px: number): number;
}

/** log10(1 + v − d0): a log axis that accepts the first value (step 0). */
function symlog(v: number, d0: number): number {
  return Math.log10(1 + Math.max(0, v - d0));
}

/** Maps [d0, d1] onto [r0, r1], linearly or on a log(1 + v − d0) axis. A flat domain maps to the middle. */
export function makeScale(domain: [number, number], range: [number, number], log = false): Scale {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const t = log ? (v: number) => symlog(v, d0) : (v: number) => v - d0;
  const span = t(d1);
  const f = ((v: number) => (span > 0 ? r0 + ((r1 - r0) * t(v)) / span : (r0 + r1) / 2)) as Scale;
  f.domain = [d0, d1];
  f.range = [r0, r1];
  f.log = log;
  f.invert = (px: number) => {
    if (!(span > 0)) return d0;
    const u = ((px - r0) / (r1 - r0)) * span;
    return log ? d0 + Math.pow(10, u) - 1 : d0 + u;
  };
  return f;
}

/** About `count` round ticks (1, 2, 5 × 10^k steps) inside [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const m = raw / p;
  const step = (m >= 7.07 ? 10 : m >= 3.16 ? 5 : m >= 1.41 ? 2 : 1) * p; // as d3: the step nearest raw
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Ticks of a log(1 + v − lo) axis: lo, then 1, 2, 5 × 10^k offsets that fit, thinned to about `count`. */
export function logTicks(lo: number, hi: number, count = 6): number[] {
  const out = [lo];
  for (let p = 1; lo + p <= hi; p *= 10) for (const m of [1, 2, 5]) if (lo + m * p <= hi) out.push(lo + m * p);
  if (out.length <= count) return out;
  return out.filter((v, i) => i === 0 || Math.log10(v - lo) % 1 === 0);
}

export interface ChartLayout {
  /** Plot area. */
  x: number;
  y: number;
  w: number;
  h: number;
  sx: Scale;
  sy: Scale;
}

/** Plot area inside a box of `width` × `height` (room for tick labels) with its scales. */
export function chartLayout(width: number, height: number, xDomain: [number, number], yDomain: [number, number], logX = false): ChartLayout {
  const x = 52;
  const y = 12;
  const w = Math.max(40, width - x - 14);
  const h = Math.max(40, height - y - 40);
  return {x, y, w, h, sx: makeScale(xDomain, [x, x + w], logX), sy: makeScale(yDomain, [y + h, y])};
}

export function formatTick(v: number): string {
  const a = Math.abs(v);
  if (a >= 10000) return v.toExponential(0).replace('+', '');
  return String(Number(v.toPrecision(3)));
}

export function drawChartAxes(ctx: Ctx, L: ChartLayout, o: {color: string; grid: string; xLabel: string; yLabel: string; integerX?: boolean}): void {
  const xt = (L.sx.log ? logTicks(L.sx.domain[0], L.sx.domain[1]) : niceTicks(L.sx.domain[0], L.sx.domain[1], 6)).filter((v) => !o.integerX || Number.isInteger(v));
  const yt = niceTicks(L.sy.domain[0], L.sy.domain[1], 4);
  ctx.lineWidth = 1;
  ctx.strokeStyle = o.grid;
  ctx.beginPath();
  for (const v of yt) {
    const py = Math.round(L.sy(v)) + 0.5;
    ctx.moveTo(L.x, py);
    ctx.lineTo(L.x + L.w, py);
  }
  ctx.stroke();
  ctx.strokeStyle = o.color;
  ctx.beginPath();
  ctx.moveTo(L.x + 0.5, L.y);
  ctx.lineTo(L.x + 0.5, L.y + L.h + 0.5);
  ctx.lineTo(L.x + L.w, L.y + L.h + 0.5);
  for (const v of xt) {
    const px = Math.round(L.sx(v)) + 0.5;
    ctx.moveTo(px, L.y + L.h);
    ctx.lineTo(px, L.y + L.h + 4);
  }
  ctx.stroke();
  ctx.fillStyle = o.color;
  ctx.font = '11px Roboto, Arial, sans-serif';
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (const v of xt) ctx.fillText(formatTick(v), L.sx(v), L.y + L.h + 6);
  ctx.fillText(o.xLabel, L.x + L.w / 2, L.y + L.h + 22);
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const v of yt) ctx.fillText(formatTick(v), L.x - 5, L.sy(v));
  ctx.textAlign = 'left';
  ctx.textBaseline = 'top';
  ctx.fillText(o.yLabel, L.x + 4, L.y - 10);
}

/** A polyline through (xs[i], ys[i]), broken where ys is NaN. Returns the number of finite points. */
export function drawSeries(ctx: Ctx, L: ChartLayout, xs: readonly number[], ys: ArrayLike<number>, color: string, width = 1.5, alpha = 1): number {
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.globalAlpha = alpha;
  ctx.beginPath();
  let pen = false;
  let n = 0;
  for (let i = 0; i < xs.length; i++) {
    const v = ys[i];
    if (!Number.isFinite(v)) {
      pen = false;
      continue;
    }
    n++;
    if (pen) ctx.lineTo(L.sx(xs[i]), L.sy(v));
    else ctx.moveTo(L.sx(xs[i]), L.sy(v));
    pen = true;
  }
  ctx.stroke();
  ctx.globalAlpha = 1;
  return n;
}

/** Diamond markers at the finite points (the clickable checkpoints). Returns how many. */
export function drawPoints(ctx: Ctx, L: ChartLayout, xs: readonly number[], ys: ArrayLike<number>, color: string, r = 3.5): number {
  ctx.fillStyle = color;
  ctx.beginPath();
  let n = 0;
  for (let i = 0; i < xs.length; i++) {
    if (!Number.isFinite(ys[i])) continue;
    const px = L.sx(xs[i]);
    const py = L.sy(ys[i]);
    ctx.moveTo(px, py - r);
    ctx.lineTo(px + r, py);
    ctx.lineTo(px, py + r);
    ctx.lineTo(px - r, py);
    ctx.lineTo(px, py - r);
    n++;
  }
  ctx.fill();
  return n;
}

/** A dashed vertical line at x = v across the plot (the current step). */
export function drawVerticalMarker(ctx: Ctx, L: ChartLayout, v: number, color: string): void {
  const px = Math.round(L.sx(v)) + 0.5;
  ctx.strokeStyle = color;
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let y = L.y; y < L.y + L.h; y += 6) {
    ctx.moveTo(px, y);
    ctx.lineTo(px, Math.min(L.y + L.h, y + 3));
  }
  ctx.stroke();
}

/** Index of the finite point nearest (px, py) within `maxDist` px (x distance counts most), or -1. */
export function nearestPoint(L: ChartLayout, xs: readonly number[], ys: ArrayLike<number>, px: number, py: number, maxDist = 12): number {
  let best = -1;
  let bd = Infinity;
  for (let i = 0; i < xs.length; i++) {
    if (!Number.isFinite(ys[i])) continue;
    const dx = L.sx(xs[i]) - px;
    const dy = L.sy(ys[i]) - py;
    const d = Math.hypot(dx, dy / 3);
    if (d < bd) {
      bd = d;
      best = i;
    }
  }
  return bd <= maxDist ? best : -1;
}
