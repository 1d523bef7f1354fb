// Head view data: one layer's attention per head, projected onto the selection's token axes (and B − A).
import {memo, type Axes} from '../../axes';
import {difference, maxAbs} from '../../math';
import {project} from '../../tokens';
import type {AttentionLayer, TopK} from '../../types';

/** What the head view draws: already filtered / merged, per head. Knows nothing about HTTP. */
export interface HeadData {
  queryLabels: string[];
  keyLabels: string[];
  /** Heads in the layer (sets the palette). */
  nHeads: number;
  /** Heads this data holds (all, or the one of a detail view). */
  heads: number[];
  /** (queries × keys) row-major, for a head in `heads` (dense records only: long ones have `sparse`). */
  matrix(h: number): Float32Array;
  /** Long records: each query row's stored top-k of head h (lines at rest come from it). */
  sparse?: (h: number) => TopK;
  /** Long records: the exact row (left: query i) or column (right: key j) of head h, fetched on hover. */
  exactLine?: (h: number, side: 'left' | 'right', index: number) => Promise<Float32Array>;
  /** The shown row of original query token `pos` (hidden: the next shown one), for find-a-token. */
  rowIndex?: (pos: number) => number;
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
    rowIndex: (pos) => {
      const g = axes.rows.groupOf;
      for (let i = Math.max(0, pos); i < g.length; i++) if (g[i] >= 0) return g[i];
      return axes.rows.labels.length - 1;
    },
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


/** A long record's head data: tokens unfiltered, lines from each head's stored top-k, exact lines on demand. */
export function longHeadData(
  queryLabels: string[],
  keyLabels: string[],
  nHeads: number,
  topk: Map<number, TopK>,
  exactLine?: (h: number, side: 'left' | 'right', index: number) => Promise<Float32Array>,
): HeadData {
  const heads = [...topk.keys()].sort((a, b) => a - b);
  return {
    queryLabels,
    keyLabels,
    nHeads,
    heads,
    matrix: () => {
      throw new Error('a long record has no dense matrix: use its top-k');
    },
    sparse: (h) => topk.get(h)!,
    exactLine,
  };
}
