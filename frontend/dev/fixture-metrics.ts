// What the backend computes for /metrics (tensorboard_plugin_attention.metrics, docs/metrics.md), ported to
// TypeScript for the fixture DataSource only (divergence and rollout, which the notebook page ships, are in
// src/derived.ts). Float64 throughout; NaN where a metric is undefined (the backend's JSON null).
import type {AttentionLayer, MetricName} from '../src/types';

export type HeadMetrics = Record<MetricName, number[]>;

/** Metrics of every head of one layer (attention probabilities, (heads, q, k)). */
export function headMetrics(att: AttentionLayer, tokens: readonly string[] | null, causal: boolean): HeadMetrics {
  const {q, k} = att;
  const out: HeadMetrics = {entropy: [], distance: [], sink: [], prev_token: [], induction: [], duplicate: [], diagonal: [], retrieval: []};
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
  // retrieval: rows whose next token occurred at some j <= i (causal only)
  const copyable: boolean[] = [];
  if (tokens && square && causal) for (let i = 0; i < q; i++) copyable.push(i + 1 < q && tokens.slice(0, i + 1).includes(tokens[i + 1]));
  const nCopyable = copyable.filter(Boolean).length;
  for (let hi = 0; hi < att.heads; hi++) {
    const a = att.head(hi + att.headOffset);
    let ent = 0;
    let entRows = 0;
    let dist = 0;
    let sink = 0;
    let prev = 0;
    let ind = 0;
    let dup = 0;
    let diag = 0;
    let hits = 0;
    for (let i = 0; i < q; i++) {
      const row = i * k;
      let h = 0;
      let best = 0;
      for (let j = 0; j < k; j++) {
        const v = a[row + j];
        if (v > 0) h -= v * Math.log(v);
        if (square) dist += v * Math.abs(i - j);
        if (v > a[row + best]) best = j;
      }
      if (square) diag += a[row + i];
      if (copyable[i] && tokens && tokens[best] === tokens[i + 1]) hits++;
      const visible = causal ? i + 1 + (k - q) : k;
      if (visible > 1) {
        ent += h / Math.log(visible);
        entRows++;
      }
      sink += a[row];
      if (square && i >= 1) prev += a[row + i - 1];
      if (targets.length) for (const m of targets[i]) {
        ind += a[row + m];
        dup += a[row + m - 1];
      }
    }
    out.entropy.push(entRows ? ent / entRows : NaN);
    out.sink.push(q ? sink / q : NaN);
    out.distance.push(square && q ? dist / q : NaN);
    out.prev_token.push(square && q >= 2 ? prev / (q - 1) : NaN);
    out.induction.push(repeated ? ind / repeated : NaN);
    out.duplicate.push(repeated ? dup / repeated : NaN);
    out.diagonal.push(square && q ? diag / q : NaN);
    out.retrieval.push(nCopyable ? hits / nCopyable : NaN);
  }
  return out;
}
