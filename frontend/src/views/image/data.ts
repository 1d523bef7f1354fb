// Image view data: one query token's attention over the image's patches (one head, the mean of heads, or
// the rollout), or the difference of two records', laid on the patch grid. Pure: no DOM, no HTTP.
import {imageOf, imageProblem, patchCount, patchOf} from '../../image';
import {tokenLabels} from '../../tokens';
import type {Header, ImageInfo, Kind} from '../../types';

/** What the overlay shows: one head (the toolbar's Head), the mean of the selected heads, or the rollout. */
export type ImageAgg = 'head' | 'mean' | 'rollout';
export const IMAGE_AGGS: readonly ImageAgg[] = ['head', 'mean', 'rollout'];
export const IMAGE_AGG_LABELS: Record<ImageAgg, string> = {head: 'One head', mean: 'Mean of selected heads', rollout: 'Rollout'};

export interface ImageData {
  image: ImageInfo;
  /** Per patch, row-major (rows × cols): the query's attention to it, or B − A. */
  weights: Float32Array;
  /** True for B − A (a diverging scale). */
  signed: boolean;
  /** Largest |weight| (the top of the colour scale; 1 when all are 0). */
  max: number;
  /** The query token (position in the query sequence), its label, and its patch when it is one. */
  query: number;
  queryLabel: string;
  queryPatch: [number, number] | null;
  /** Query tokens that are not patches (CLS, registers, text): the query selector's options. */
  queries: {pos: number; label: string}[];
  /** True when the query sequence is the image's (self-attention): clicking a patch makes it the query. */
  clickable: boolean;
  /** The query's attention on non-patch tokens (CLS, registers, text), summed; null for B − A. */
  outside: number | null;
  /** What the weights are, e.g. "L3 H5", "L3, mean of 12 heads", "rollout (residual 0.5, mean fusion)". */
  what: string;
  notes: string[];
}

/** Why `kind` of a record with this header cannot be shown over its image, or null. */
export function imageUnavailable(header: Header, kind: Kind): string | null {
  if (!header.image) return 'This record has no image.';
  const problem = imageProblem(header);
  if (problem) return `This record’s image cannot be drawn: ${problem}`;
  const info = header.kinds[kind];
  if (info && info.key !== header.image.sequence) return `The ${kind} attention’s keys are the “${info.key}” tokens, not the image’s patches (“${header.image.sequence}”): choose the kind whose keys are the image.`;
  return null;
}

/** The default query: the first non-patch token of the query sequence (CLS, or the first text token), else 0. */
export function defaultQuery(header: Header, querySeq: string): number {
  const im = imageOf(header);
  const n = header.sequences[querySeq]?.length ?? 0;
  if (!im) return 0;
  for (let i = 0; i < n; i++) if (!patchOf(im, querySeq, i)) return i;
  return 0;
}

/** The query row's values on the patches (keys patch_start .. + rows·cols), row-major on the grid. */
export function patchWeights(row: ArrayLike<number>, im: ImageInfo): Float32Array {
  const n = patchCount(im);
  if (row.length < im.patch_start + n) throw new Error(`the query row has ${row.length} keys; the image’s patches need ${im.patch_start + n}`);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = row[im.patch_start + i];
  return out;
}

/** The row's sum outside the patches (what the query gives to CLS, registers or text). */
export function outsideMass(row: ArrayLike<number>, im: ImageInfo): number {
  let s = 0;
  const end = im.patch_start + patchCount(im);
  for (let j = 0; j < row.length; j++) if (j < im.patch_start || j >= end) s += row[j];
  return s;
}

/** The element-wise mean of equal-length rows. */
export function meanRows(rows: readonly ArrayLike<number>[]): Float32Array {
  if (!rows.length) throw new Error('no heads selected');
  const out = new Float32Array(rows[0].length);
  for (const r of rows) for (let j = 0; j < out.length; j++) out[j] += r[j] / rows.length;
  return out;
}

/** B − A per patch (both on the same grid). */
export function diffWeights(a: Float32Array, b: Float32Array): Float32Array {
  if (a.length !== b.length) throw new Error(`cannot subtract: ${a.length} and ${b.length} patches`);
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = b[i] - a[i];
  return out;
}

/** Largest |v| (1 when none is above 0, so the scale stays defined). */
export function maxAbs(v: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < v.length; i++) if (Math.abs(v[i]) > m) m = Math.abs(v[i]);
  return m > 0 ? m : 1;
}

/** Why two records' images cannot be subtracted patch by patch, or null. */
export function diffProblem(a: Header, b: Header): string | null {
  const x = imageOf(a);
  const y = imageOf(b);
  if (!x || !y) return 'Cannot show B − A: both records need an image.';
  if (x.grid[0] !== y.grid[0] || x.grid[1] !== y.grid[1] || x.patch_start !== y.patch_start || x.sequence !== y.sequence)
    return `Cannot show B − A: the two records’ patch grids differ (${x.grid.join(' × ')} from token ${x.patch_start}, ${y.grid.join(' × ')} from token ${y.patch_start}).`;
  return null;
}

/** The image view's data for query `query` of `header`'s query sequence, from the query's row over the keys. */
export function imageData(opts: {header: Header; querySeq: string; query: number; row: ArrayLike<number>; what: string; notes?: string[]}): ImageData {
  const {header, querySeq, query, row} = opts;
  const im = imageOf(header);
  if (!im) throw new Error(imageUnavailable(header, 'encoder') ?? 'This record has no image.');
  const labels = tokenLabels(header, querySeq);
  const weights = patchWeights(row, im);
  const queries: {pos: number; label: string}[] = [];
  labels.forEach((l, i) => {
    if (!patchOf(im, querySeq, i)) queries.push({pos: i, label: l});
  });
  return {
    image: im,
    weights,
    signed: false,
    max: maxAbs(weights),
    query,
    queryLabel: labels[query] ?? '',
    queryPatch: patchOf(im, querySeq, query),
    queries,
    clickable: querySeq === im.sequence,
    outside: outsideMass(row, im),
    what: opts.what,
    notes: opts.notes ?? [],
  };
}

/** B − A of two records' image data (A's image and query): blue more in B, red more in A. */
export function diffImageData(a: ImageData, b: ImageData): ImageData {
  const weights = diffWeights(a.weights, b.weights);
  return {...a, weights, signed: true, max: maxAbs(weights), outside: null, what: `B − A of ${a.what}`, notes: [...a.notes]};
}
