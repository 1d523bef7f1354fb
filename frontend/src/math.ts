// Numerics the views share: array math (B − A), recomputing attention from q/k (neuron view), picking
// steps (and "the latest step", which the selection and URL write as null) and short number labels.
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

/** Element-wise B − A of two equally shaped matrices. */
export function difference(a: Float32Array, b: Float32Array): Float32Array {
  if (a.length !== b.length) throw new Error(`cannot subtract: sizes ${a.length} and ${b.length} differ`);
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = b[i] - a[i];
  return out;
}

/** A top-k table turned around: for each key `j`, the query rows that keep it, `rows[start[j] .. start[j + 1])`. */
export interface TopKColumns {
  start: Uint32Array;
  rows: Uint32Array;
  values: Float32Array;
}

/**
 * Every query row's stored top-k (`index` / `values`, `q × k` row-major over `keys` keys) grouped by key, so a
 * key's column is read in the time of its own entries instead of a scan of all `q × k` (a counting sort).
 */
export function topkColumns(index: Uint32Array, values: Float32Array, q: number, k: number, keys: number): TopKColumns {
  const start = new Uint32Array(keys + 1);
  const n = q * k;
  for (let e = 0; e < n; e++) if (index[e] < keys) start[index[e] + 1]++;
  for (let j = 0; j < keys; j++) start[j + 1] += start[j];
  const fill = start.slice(0, keys);
  const rows = new Uint32Array(start[keys]);
  const vals = new Float32Array(start[keys]);
  for (let i = 0; i < q; i++) {
    for (let r = 0; r < k; r++) {
      const j = index[i * k + r];
      if (j >= keys) continue;
      const at = fill[j]++;
      rows[at] = i;
      vals[at] = values[i * k + r];
    }
  }
  return {start, rows, values: vals};
}

/** Largest |v| (0 for an empty array). */
export function maxAbs(m: Float32Array): number {
  let mx = 0;
  for (let i = 0; i < m.length; i++) {
    const a = Math.abs(m[i]);
    if (a > mx) mx = a;
  }
  return mx;
}

/** The last logged step (undefined when there is none). */
export function latestStep(steps: readonly number[]): number | undefined {
  return steps[steps.length - 1];
}

/** A step as the selection holds it: null when it is the latest, so the URL follows new checkpoints. */
export function stepKey(steps: readonly number[], step: number): number | null {
  return step === latestStep(steps) ? null : step;
}

/** The step a selection value names: itself, or the latest for null. */
export function resolveStep(steps: readonly number[], step: number | null): number | undefined {
  return step ?? latestStep(steps);
}

/** Short numbers for labels: 3 significant digits, "–" for NaN. */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return '–';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1000 || a < 0.001) return v.toExponential(1);
  return String(Number(v.toPrecision(a >= 1 ? 3 : 2)));
}
