// Numerics the views share: recomputing attention from q/k (neuron view) and picking steps.
import type {LayerInfo, ResolvedLayerInfo} from './types';

export interface Recomputed {
  /** q ⊙ k_j for every key j: (k × d) row-major. */
  products: Float32Array;
  /** scaling · q·k_j (−Infinity where masked). */
  scores: Float32Array;
  /** softmax over the unmasked keys. */
  probs: Float32Array;
  /** Keys masked out (causal / sliding window). */
  masked: Uint8Array;
}

/**
 * Attention of query `i` recomputed from its query vector and the keys: softmax(scaling · q·k) with the
 * causal mask (keys after the query) and sliding window (keys `sliding_window` or more before it) when the
 * layer has them. Position bias and softcapping are not applied (the view says so).
 */
export function recompute(
  queries: Float32Array,
  keys: Float32Array,
  d: number,
  i: number,
  info: Pick<ResolvedLayerInfo, 'scaling' | 'causal' | 'sliding_window'>,
  selfAttention = true,
): Recomputed {
  const k = keys.length / d;
  const products = new Float32Array(k * d);
  const scores = new Float32Array(k);
  const masked = new Uint8Array(k);
  const q0 = i * d;
  let mx = -Infinity;
  for (let j = 0; j < k; j++) {
    if (selfAttention && info.causal && j > i) masked[j] = 1;
    if (selfAttention && info.sliding_window != null && info.sliding_window > 0 && i - j >= info.sliding_window) masked[j] = 1;
    let dot = 0;
    for (let t = 0; t < d; t++) {
      const p = queries[q0 + t] * keys[j * d + t];
      products[j * d + t] = p;
      dot += p;
    }
    const s = dot * info.scaling;
    scores[j] = masked[j] ? -Infinity : s;
    if (!masked[j] && s > mx) mx = s;
  }
  const probs = new Float32Array(k);
  if (mx === -Infinity) return {products, scores, probs, masked};
  let sum = 0;
  for (let j = 0; j < k; j++) {
    if (masked[j]) continue;
    const e = Math.exp(scores[j] - mx);
    probs[j] = e;
    sum += e;
  }
  for (let j = 0; j < k; j++) probs[j] /= sum;
  return {products, scores, probs, masked};
}

/** The step of `steps` nearest to `step` (the earlier one on a tie), or null if there is none. */
export function nearestStep(steps: readonly number[], step: number): number | null {
  let best: number | null = null;
  for (const s of steps) {
    if (best === null || Math.abs(s - step) < Math.abs(best - step) || (Math.abs(s - step) === Math.abs(best - step) && s < best)) best = s;
  }
  return best;
}

/** Largest |a_j − b_j| over two rows. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let j = 0; j < Math.min(a.length, b.length); j++) m = Math.max(m, Math.abs(a[j] - b[j]));
  return m;
}

/**
 * Fills in what a record's layer_info leaves out: scaling 1/√d (the usual softmax(q·k/√d)), no causal mask
 * unless the query and key are the decoder's own tokens, no bias, no softcap, no window. `assumed` names the
 * fields filled, so the view can say so.
 */
export function resolveLayerInfo(info: LayerInfo | undefined, headDim: number, decoderSelf: boolean): ResolvedLayerInfo {
  const i = info ?? {};
  const assumed: string[] = [];
  let scaling = i.scaling;
  if (typeof scaling !== 'number' || !Number.isFinite(scaling)) {
    scaling = 1 / Math.sqrt(Math.max(1, headDim));
    assumed.push('scaling');
  }
  let causal = i.causal;
  if (typeof causal !== 'boolean') {
    causal = decoderSelf;
    assumed.push('causal');
  }
  return {
    scaling,
    causal,
    position_bias: i.position_bias === true,
    softcap: typeof i.softcap === 'number' ? i.softcap : null,
    sliding_window: typeof i.sliding_window === 'number' ? i.sliding_window : null,
    assumed,
  };
}
