// Rollout view data: the rollout matrix under the selection's token filters.
import type {Axes} from '../../axes';
import {project} from '../../tokens';
import type {Fusion, Rollout} from '../../types';

export interface RolloutData {
  rowLabels: string[];
  colLabels: string[];
  rows: number;
  cols: number;
  /** rows × cols, row-major. */
  matrix: Float32Array;
  /** Tokens the rollout was computed over. */
  n: number;
  residual: number;
  fusion: Fusion;
  notes: string[];
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
