// Model view data: every layer and head of the pooled overview, projected onto the token (or bin) axes.
import {memo, type Axes} from '../../axes';
import {difference, maxAbs} from '../../math';
import {project, type Axis} from '../../tokens';
import type {Overview} from '../../types';

export interface ModelData {
  nLayers: number;
  nHeads: number;
  /** Included layers and heads, in order. */
  layers: number[];
  heads: number[];
  /** Size of every thumbnail matrix. */
  rows: number;
  cols: number;
  cell(layer: number, head: number): Float32Array;
  signed?: boolean;
  maxAbs?: number;
  /** Shown above the grid (e.g. that token filters apply per pooled bin). */
  note?: string;
}

/**
 * Axis over pooled bins: bin t holds tokens floor(t·n/p).. (those with floor(i·p/n) = t); a bin is kept when
 * any of its tokens is kept by `tokenAxis`. Identity when nothing is dropped.
 */
export function binAxis(tokenAxis: Axis, p: number): Axis {
  const n = tokenAxis.length;
  const keep = new Uint8Array(p);
  for (let i = 0; i < n; i++) if (tokenAxis.groupOf[i] >= 0) keep[Math.floor((i * p) / n)] = 1;
  const kept: number[] = [];
  for (let t = 0; t < p; t++) if (keep[t]) kept.push(t);
  const starts = new Int32Array(kept.length + 1);
  kept.forEach((_, g) => (starts[g + 1] = g + 1));
  const groupOf = new Int32Array(p).fill(-1);
  kept.forEach((t, g) => (groupOf[t] = g));
  return {
    length: p,
    labels: kept.map(String),
    starts,
    idx: Int32Array.from(kept),
    groupOf,
    identity: kept.length === p,
    merged: false,
  };
}

export function modelData(
  ov: Overview,
  axes: Axes,
  layers: number[] | null,
  heads: number[] | null,
): ModelData {
  const exact = ov.pq === axes.rows.length && ov.pk === axes.cols.length;
  const rows = exact ? axes.rows : binAxis(axes.rows, ov.pq);
  const cols = exact ? axes.cols : binAxis(axes.cols, ov.pk);
  const filtered = !axes.rows.identity || !axes.cols.identity;
  const cell = memo((key) => {
    const l = Math.floor(key / ov.heads);
    const h = key % ov.heads;
    const n = ov.pq * ov.pk;
    const m = ov.data.subarray((l * ov.heads + h) * n, (l * ov.heads + h + 1) * n);
    return project(m, ov.pq, ov.pk, rows, cols);
  });
  let note: string | undefined;
  if (!exact) {
    note = `Pooled to ${ov.pq}×${ov.pk} bins (of ${axes.rows.length}×${axes.cols.length} tokens).`;
    if (filtered) note += ' Filters keep or drop whole bins; word merging applies in the head detail only.';
  }
  const pick = (sel: number[] | null, n: number) => {
    const all = Array.from({length: n}, (_, i) => i);
    const s = sel ? all.filter((i) => sel.includes(i)) : all;
    return s.length ? s : all;
  };
  return {
    nLayers: ov.layers,
    nHeads: ov.heads,
    layers: pick(layers, ov.layers),
    heads: pick(heads, ov.heads),
    rows: rows.labels.length,
    cols: cols.labels.length,
    cell: (l, h) => cell(l * ov.heads + h),
    note,
  };
}

export function diffModelData(a: ModelData, b: ModelData): ModelData {
  if (a.rows !== b.rows || a.cols !== b.cols || a.nLayers !== b.nLayers || a.nHeads !== b.nHeads) {
    throw new Error('cannot take B − A: the two overviews differ in shape (different tokens or model)');
  }
  const cell = memo((key) => difference(a.cell(Math.floor(key / a.nHeads), key % a.nHeads), b.cell(Math.floor(key / a.nHeads), key % a.nHeads)));
  let mx = 0;
  for (const l of a.layers) for (const h of a.heads) mx = Math.max(mx, maxAbs(cell(l * a.nHeads + h)));
  return {...a, cell: (l, h) => cell(l * a.nHeads + h), signed: true, maxAbs: mx};
}

