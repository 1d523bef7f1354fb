// Head view data: one layer's attention per head, projected onto the selection's token axes (and B − A).
import {memo, type Axes} from '../../axes';
import {difference, maxAbs} from '../../math';
import {project} from '../../tokens';
import type {AttentionLayer} from '../../types';

/** What the head view draws: already filtered / merged, per head. Knows nothing about HTTP. */
export interface HeadData {
  queryLabels: string[];
  keyLabels: string[];
  /** Heads in the layer (sets the palette). */
  nHeads: number;
  /** Heads this data holds (all, or the one of a detail view). */
  heads: number[];
  /** (queries × keys) row-major, for a head in `heads`. */
  matrix(h: number): Float32Array;
  /** Difference data (B − A): lines coloured by sign, opacity relative to `maxAbs`. */
  signed?: boolean;
  maxAbs?: number;
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

