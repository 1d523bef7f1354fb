// The matrix view's overview pooling (URL `magg=max`): a long layer's pyramid as stored (the attention mass of
// each block, queries averaged: one strong link in a block of 64 × 64 cells fades to a faint pixel) or its max pyramid (format
// v5, `/pyramid?agg=max`: the largest weight of each block, so sparse peaks survive the overview). When a
// record can use it, and what becomes of a compared record that cannot. Pure.
import type {CompareMode} from '../../state';
import type {KindInfo, PyramidAgg} from '../../types';

export const AGGS: readonly PyramidAgg[] = ['mean', 'max'];

export const AGG_HELP = 'What a pixel of a long layer’s overview (the pyramid) shows: the attention mass of its block (keys summed, queries averaged), or its largest weight (sparse peaks kept). Exact tiles, once zoomed in, are the same either way.';
export const AGG_MEAN_ONLY = 'this record stores only the mean pyramid (logged before format v5)';
export const AGG_DENSE = 'dense layers are drawn exactly';

/** What the overview pixels are, said in the matrix notes and the status line. */
export const AGG_LABELS: Readonly<Record<PyramidAgg, string>> = {
  mean: 'overview: attention mass per block (keys summed, queries averaged)',
  max: 'overview: largest weight per block (peaks kept)',
};

/** `magg` ↔ agg: anything but `max` is the default, mean. */
export function parseAgg(s: string | undefined): PyramidAgg {
  return s === 'max' ? 'max' : 'mean';
}

/** Why a kind like `info` has no choice of overview pooling (the control's disabled reason), or null. */
export function aggProblem(info: Pick<KindInfo, 'layout' | 'pyramid_max'>): string | null {
  if (info.layout !== 'long') return AGG_DENSE;
  return info.pyramid_max === true ? null : AGG_MEAN_ONLY;
}

/** The pooling a kind like `info` is fetched with when `asked`: max only where its max pyramid is stored. */
export function effectiveAgg(asked: PyramidAgg, info: Pick<KindInfo, 'layout' | 'pyramid_max'>): PyramidAgg {
  return asked === 'max' && !aggProblem(info) ? 'max' : 'mean';
}

/**
 * What becomes of compared record B when A's overview is max-pooled (`agg`): null (drawn with the same
 * pooling, or dense: exact), or, B a long layer without a max pyramid, a message in B's place (side by side)
 * or instead of the view (B − A, `error`). A comparison never puts a max overview beside a mean one.
 */
export function compareAggOutcome(agg: PyramidAgg, b: {info: Pick<KindInfo, 'layout' | 'pyramid_max'>; ref: {run: string; step: number}}, mode: CompareMode): {text: string; error: boolean} | null {
  if (agg !== 'max' || b.info.layout !== 'long' || b.info.pyramid_max === true) return null;
  const why = `B (${b.ref.run} @ ${b.ref.step}) stores only the mean pyramid (logged before format v5), so its overview is not drawn beside A’s largest-weight overview; switch Overview to “mean” to compare them.`;
  return mode === 'diff' ? {text: `B − A is not drawn: ${why}`, error: true} : {text: why, error: false};
}
