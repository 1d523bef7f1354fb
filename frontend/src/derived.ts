// Derived data the notebook page computes from embedded records as the backend does for /divergence and
// /rollout (tensorboard_plugin_attention.metrics, docs/metrics.md): per-head Jensen-Shannon divergence and
// attention rollout. Shipped (sources/embedded.ts) and used by the dev fixtures. Float64 throughout.
import type {AttentionLayer, Fusion} from './types';

/** Per-head JS divergence (nats, in [0, ln 2]), mean over query rows. */
export function jensenShannon(a: AttentionLayer, b: AttentionLayer): number[] {
  const out: number[] = [];
  for (let hi = 0; hi < a.heads; hi++) {
    const h = hi + a.headOffset;
    const x = a.head(h);
    const y = b.head(h);
    let total = 0;
    for (let i = 0; i < a.q; i++) {
      let js = 0;
      for (let j = 0; j < a.k; j++) {
        const p = Math.max(0, x[i * a.k + j]);
        const r = Math.max(0, y[i * a.k + j]);
        const m = (p + r) / 2;
        if (p > 0) js += 0.5 * p * Math.log(p / m);
        if (r > 0) js += 0.5 * r * Math.log(r / m);
      }
      total += js;
    }
    out.push(a.q ? Math.min(Math.LN2, Math.max(0, total / a.q)) : NaN);
  }
  return out;
}

/** R = Â_L ··· Â_1, Â = residual·I + (1 − residual)·fuse(heads), rows renormalised. */
export function rollout(layers: readonly AttentionLayer[], residual: number, fusion: Fusion): Float64Array {
  const n = layers[0].q;
  let R: Float64Array | null = null;
  for (const att of layers) {
    if (att.q !== n || att.k !== n) throw new Error('rollout needs square self-attention of one size');
    const A = new Float64Array(n * n).fill(fusion === 'min' ? Infinity : fusion === 'max' ? -Infinity : 0);
    for (let hi = 0; hi < att.heads; hi++) {
      const m = att.head(hi + att.headOffset);
      for (let i = 0; i < n * n; i++) {
        if (fusion === 'mean') A[i] += m[i] / att.heads;
        else if (fusion === 'max') A[i] = Math.max(A[i], m[i]);
        else A[i] = Math.min(A[i], m[i]);
      }
    }
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) {
        const v = (1 - residual) * A[i * n + j] + (i === j ? residual : 0);
        A[i * n + j] = v;
        s += v;
      }
      if (s > 0) for (let j = 0; j < n; j++) A[i * n + j] /= s;
    }
    if (!R) {
      R = A;
      continue;
    }
    const next = new Float64Array(n * n);
    for (let i = 0; i < n; i++)
      for (let t = 0; t < n; t++) {
        const v = A[i * n + t];
        if (v === 0) continue;
        const rt = t * n;
        const ri = i * n;
        for (let j = 0; j < n; j++) next[ri + j] += v * R[rt + j];
      }
    R = next;
  }
  return R ?? new Float64Array(0);
}
