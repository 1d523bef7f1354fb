// Matrix view data: one head as a query × key plane at every zoom. Its coarse level is the stored dense
// matrix (short records) or the stored pyramid (long ones, per-cell means: a pooled bin holds key sums);
// exact tiles and rows come through loaders the spec gives (the view knows nothing about HTTP).
import {resolveLayerInfo} from '../../math';
import type {Grid, Header, Kind, PyramidAgg} from '../../types';
import {binOf, binStart, type Mask, type Tile} from './zoom';

export interface MatrixData {
  layer: number;
  head: number;
  q: number;
  k: number;
  queryLabels: readonly string[];
  keyLabels: readonly string[];
  /** Long layout (pyramid + exact tiles) or dense (the stored matrix is the finest level). */
  long: boolean;
  /** Exact windows can be rebuilt (long layers with q/k and no learned position bias; dense: always). */
  exact: boolean;
  mask: Mask;
  /** The coarse level: rows × cols (dense: q × k cells; pyramid: bq × bk bins, keys summed, queries averaged). */
  base: Grid;
  /**
   * How the pyramid pools a block (long layers; dense: absent): `mean` (keys summed, queries averaged: a
   * pixel shows its cells' mass) or `max` (each bin the largest weight of its block: a pixel shows the
   * largest bin it covers). Exact tiles are drawn as mass either way.
   */
  agg?: PyramidAgg;
  /** B − A: signed values, coloured by sign, opacity relative to `maxAbs`. */
  signed?: boolean;
  maxAbs?: number;
  /** Exact values of a tile (long + exact only); B − A for a difference. */
  loadTile?: (t: Tile) => Promise<Float32Array>;
  /** The exact row of query i over all k keys (dense: a slice of the stored matrix). */
  loadRow: (i: number) => Promise<Float32Array>;
  /** What the coarse level is, for the status line. */
  baseLabel: string;
  notes: string[];
  /**
   * The plane the viewport moves over when it is larger than this record's q × k (side by side with a
   * record of other lengths: one viewport for both); cells past q or k are not this record's (padding) and
   * are drawn grey like masked cells. Absent: q × k.
   */
  extent?: {q: number; k: number};
}

/** The plane a viewport of `d` moves over: its extent, else q × k. */
export function planeOf(d: MatrixData): {q: number; k: number} {
  return d.extent ?? {q: d.q, k: d.k};
}

/** Whether `d` is shown on a plane larger than its own sequences (cells beyond them are padding). */
export function padded(d: MatrixData): boolean {
  return !!d.extent && (d.extent.q > d.q || d.extent.k > d.k);
}

/** Sets one extent (the largest q and k) on every data shown side by side; none when they agree. */
export function shareExtent(ds: MatrixData[]): void {
  const q = Math.max(...ds.map((d) => d.q));
  const k = Math.max(...ds.map((d) => d.k));
  for (const d of ds) d.extent = ds.some((o) => o.q !== q || o.k !== k) ? {q, k} : undefined;
}

/**
 * What the stored level says of cell (i, j): dense: the stored weight; pyramid: its bin's mean per cell
 * (max pyramid: the largest weight of its bin).
 */
export function coarseValue(d: MatrixData, i: number, j: number): {value: number; exact: boolean; masked: boolean; beyond: boolean} {
  if (i >= d.q || j >= d.k) return {value: 0, exact: true, masked: true, beyond: true};
  const m = d.mask;
  if ((m.causal && j > i + m.off) || (m.window !== null && i + m.off - j >= m.window)) return {value: 0, exact: true, masked: true, beyond: false};
  const B = d.base;
  if (!d.long) return {value: B.data[i * d.k + j], exact: true, masked: false, beyond: false};
  if (d.agg === 'max') return {value: B.data[binOf(i, d.q, B.rows) * B.cols + binOf(j, d.k, B.cols)], exact: false, masked: false, beyond: false};
  // a pyramid bin holds its keys' summed mass: per cell, its mean over the bin's keys
  const bj = binOf(j, d.k, B.cols);
  return {value: B.data[binOf(i, d.q, B.rows) * B.cols + bj] / (binStart(bj + 1, d.k, B.cols) - binStart(bj, d.k, B.cols)), exact: false, masked: false, beyond: false};
}

/** The mask of a kind's layer from its layer_info (causal by default for decoder self-attention). */
export function layerMask(header: Header, kind: Kind, layer: number): Mask {
  const info = header.kinds[kind]!;
  const self = info.query === info.key;
  const r = resolveLayerInfo(info.layer_info?.[layer], info.head_dim ?? 64, kind === 'decoder' && self);
  const q = header.sequences[info.query]?.length ?? 0;
  const k = header.sequences[info.key]?.length ?? 0;
  return {causal: self && r.causal, window: self ? r.sliding_window : null, off: k - q};
}

export function diffGrid(a: Grid, b: Grid): Grid {
  if (a.rows !== b.rows || a.cols !== b.cols) throw new Error('cannot take B − A: the two records have different shapes');
  const out = new Float32Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = b.data[i] - a.data[i];
  return {rows: a.rows, cols: a.cols, data: out};
}

/** B − A of two matrix data of the same tokens and layout: base, tiles and rows subtracted. */
export function diffMatrixData(a: MatrixData, b: MatrixData): MatrixData {
  if (a.q !== b.q || a.k !== b.k || a.long !== b.long || (a.agg ?? 'mean') !== (b.agg ?? 'mean')) throw new Error('Cannot show B − A: the two records have different tokens or layouts.');
  const base = diffGrid(a.base, b.base);
  let mx = 0;
  for (const v of base.data) mx = Math.max(mx, Math.abs(v));
  const sub = (x: Float32Array, y: Float32Array) => y.map((v, i) => v - x[i]);
  return {
    ...a,
    exact: a.exact && b.exact,
    base,
    signed: true,
    maxAbs: mx,
    loadTile: a.loadTile && b.loadTile ? async (t) => sub(await a.loadTile!(t), await b.loadTile!(t)) : undefined,
    loadRow: async (i) => sub(await a.loadRow(i), await b.loadRow(i)),
    baseLabel: `B − A of ${a.baseLabel}`,
    notes: [...a.notes],
  };
}
