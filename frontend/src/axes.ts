// From decoded data + selection to what a view draws (HeadData, ModelData, NeuronData). No HTTP, no pixels.
import {difference, maxAbs} from './draw/lines';
import type {Selection} from './state';
import {buildAxis, project, sentenceRanges, specialIndices, type Axis} from './tokens';
import type {AttentionLayer, Fusion, Header, Kind, KindInfo, Overview, Rollout} from './types';
import type {HeadData} from './views/head';
import type {ModelData} from './views/model';
import type {RolloutData} from './views/rollout';

export interface Axes {
  rows: Axis;
  cols: Axis;
  queryTokens: string[];
  keyTokens: string[];
  /** True when query and key are the same sequence (self-attention). */
  self: boolean;
}

export function kindInfo(header: Header, kind: Kind): KindInfo {
  const k = header.kinds[kind];
  if (!k) throw new Error(`this record has no ${kind} attention`);
  return k;
}

/** Row / column axes of a kind under the selection's filters (sentence pair, special tokens, merging). */
export function buildAxes(header: Header, kind: Kind, sel: Pick<Selection, 'filter' | 'hideSpecial' | 'merge'>, merge = sel.merge): Axes {
  const info = kindInfo(header, kind);
  const queryTokens = header.sequences[info.query];
  const keyTokens = header.sequences[info.key];
  if (!queryTokens || !keyTokens) throw new Error(`record lacks the ${info.query}/${info.key} token sequences`);
  const only = Object.keys(header.sequences).length === 1;
  const qSpecial = specialIndices(header.special_tokens, info.query, queryTokens, only);
  const kSpecial = specialIndices(header.special_tokens, info.key, keyTokens, only);
  const b = header.sentence_b_start;
  const rowsR = info.query === 'input' ? sentenceRanges(sel.filter, queryTokens.length, b).rows : undefined;
  const colsR = info.key === 'input' ? sentenceRanges(sel.filter, keyTokens.length, b).cols : undefined;
  const rows = buildAxis(queryTokens, {range: rowsR, hide: sel.hideSpecial ? qSpecial : undefined, special: qSpecial, merge});
  const cols = buildAxis(keyTokens, {range: colsR, hide: sel.hideSpecial ? kSpecial : undefined, special: kSpecial, merge});
  return {rows, cols, queryTokens, keyTokens, self: info.query === info.key};
}

function memo<T>(f: (h: number) => T): (h: number) => T {
  const m = new Map<number, T>();
  return (h) => {
    let v = m.get(h);
    if (v === undefined) {
      v = f(h);
      m.set(h, v);
    }
    return v;
  };
}

export function headData(att: AttentionLayer, axes: Axes, nHeads: number): HeadData {
  const heads = Array.from({length: att.heads}, (_, i) => i + att.headOffset);
  return {
    queryLabels: axes.rows.labels,
    keyLabels: axes.cols.labels,
    nHeads,
    heads,
    matrix: memo((h) => project(att.head(h), att.q, att.k, axes.rows, axes.cols)),
  };
}

/** B − A per head; both must have the same shape (same tokens). maxAbs over all heads. */
export function diffHeadData(a: HeadData, b: HeadData): HeadData {
  if (a.queryLabels.length !== b.queryLabels.length || a.keyLabels.length !== b.keyLabels.length) {
    throw new Error('cannot take B − A: the two records have different token sequences');
  }
  const m = memo((h) => difference(a.matrix(h), b.matrix(h)));
  let mx = 0;
  for (const h of a.heads) mx = Math.max(mx, maxAbs(m(h)));
  return {...a, heads: a.heads.filter((h) => b.heads.includes(h)), matrix: m, signed: true, maxAbs: mx};
}

export function sameTokens(a: Header, b: Header): boolean {
  return JSON.stringify(a.sequences) === JSON.stringify(b.sequences);
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

/**
 * Rollout (n × n over the model's tokens) under the selection's filters: rows are query tokens, columns the
 * input tokens they draw on. Merged words: mean over their rows, sum over their columns (as the head view).
 */
export function rolloutData(r: Rollout, axes: Axes, residual: number, fusion: Fusion): RolloutData {
  if (!axes.self) throw new Error('Attention rollout needs self-attention (queries and keys of one sequence); choose the encoder or decoder kind.');
  if (axes.rows.length !== r.n) throw new Error(`the rollout covers ${r.n} tokens, the record ${axes.rows.length}`);
  const matrix = project(r.data, r.n, r.n, axes.rows, axes.cols);
  const notes: string[] = [];
  if (!axes.rows.identity || !axes.cols.identity) notes.push('Filters apply to the finished rollout (computed over all tokens); hidden tokens keep their share, rows are not renormalised.');
  return {rowLabels: axes.rows.labels, colLabels: axes.cols.labels, rows: axes.rows.labels.length, cols: axes.cols.labels.length, matrix, n: r.n, residual, fusion, notes};
}
