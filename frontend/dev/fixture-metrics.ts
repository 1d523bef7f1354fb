// What the backend computes for /metrics, /divergence and /rollout (tensorboard_plugin_attention.metrics,
// docs/metrics.md), ported to TypeScript for the fixture DataSource only: the plugin bundle never computes
// these. Float64 throughout; NaN where a metric is undefined (the backend's JSON null).
import type {AttentionLayer, Fusion, MetricName} from '../src/types';

export type HeadMetrics = Record<MetricName, number[]>;

/** Metrics of every head of one layer (attention probabilities, (heads, q, k)). */
export function headMetrics(att: AttentionLayer, tokens: readonly string[] | null, causal: boolean): HeadMetrics {
  const {q, k} = att;
  const out: HeadMetrics = {entropy: [], distance: [], sink: [], prev_token: [], induction: []};
  const square = q === k;
  // induction targets per query: j + 1 for earlier j with the same token
  const targets: number[][] = [];
  let repeated = 0;
  if (tokens && square) {
    for (let i = 0; i < q; i++) {
      const t: number[] = [];
      for (let j = 0; j < i; j++) if (tokens[j] === tokens[i]) t.push(j + 1);
      targets.push(t);
      if (t.length) repeated++;
    }
  }
  for (let hi = 0; hi < att.heads; hi++) {
    const a = att.head(hi + att.headOffset);
    let ent = 0;
    let entRows = 0;
    let dist = 0;
    let sink = 0;
    let prev = 0;
    let ind = 0;
    for (let i = 0; i < q; i++) {
      const row = i * k;
      let h = 0;
      for (let j = 0; j < k; j++) {
        const v = a[row + j];
        if (v > 0) h -= v * Math.log(v);
        if (square) dist += v * Math.abs(i - j);
      }
      const visible = causal ? i + 1 + (k - q) : k;
      if (visible > 1) {
        ent += h / Math.log(visible);
        entRows++;
      }
      sink += a[row];
      if (square && i >= 1) prev += a[row + i - 1];
      if (targets.length) for (const m of targets[i]) ind += a[row + m];
    }
    out.entropy.push(entRows ? ent / entRows : NaN);
    out.sink.push(q ? sink / q : NaN);
    out.distance.push(square && q ? dist / q : NaN);
    out.prev_token.push(square && q >= 2 ? prev / (q - 1) : NaN);
    out.induction.push(repeated ? ind / repeated : NaN);
  }
  return out;
}

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
