// Heads over training: from /metrics and /divergence responses to what the training view draws (a layers ×
// heads grid at one step, per-head trajectories over steps, heads ranked by divergence). Pure: no HTTP, no
// pixels. JSON nulls (metric undefined for that head) become NaN.
import {formatValue} from '../../math';
import type {DivergenceResponse, Kind, MetricName, MetricsResponse} from '../../types';

/** A layers × heads grid of values, row-major (layer-major); NaN where undefined. */
export interface HeadGrid {
  layers: number;
  heads: number;
  values: Float64Array;
}

export interface MetricInfo {
  label: string;
  /** Shown after values ("" for unitless scores). */
  unit: string;
  help: string;
  /** Known range (null: data range), for a colour scale that does not jump between steps. */
  range: [number, number] | null;
}

export const METRIC_INFO: Record<MetricName, MetricInfo> = {
  entropy: {label: 'entropy', unit: '', help: 'normalised entropy of the rows: 0 = one key per query, 1 = uniform', range: [0, 1]},
  distance: {label: 'distance', unit: 'tokens', help: 'mean attention distance |i − j|, weighted by attention', range: null},
  sink: {label: 'sink', unit: '', help: 'mean attention on the first token (BOS / [CLS])', range: [0, 1]},
  prev_token: {label: 'previous token', unit: '', help: 'mean attention of token i on token i − 1', range: [0, 1]},
  induction: {label: 'induction', unit: '', help: 'attention of a repeated token on what followed its earlier occurrence (Olsson et al. 2022)', range: [0, 1]},
  duplicate: {label: 'duplicate token', unit: '', help: 'attention of a repeated token on its own earlier occurrences (Wang et al. 2022)', range: [0, 1]},
  diagonal: {label: 'diagonal', unit: '', help: 'mean attention of token i on itself', range: [0, 1]},
  retrieval: {label: 'retrieval', unit: '', help: 'share of queries whose next token occurred before where the largest weight is on a copy of it (Wu et al. 2024, teacher-forced)', range: [0, 1]},
};

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : NaN);

/** layers × heads of JSON numbers / nulls → HeadGrid (ragged rows padded with NaN). */
export function toGrid(rows: readonly (readonly (number | null)[] | null)[] | null | undefined, layers?: number, heads?: number): HeadGrid {
  const L = layers ?? rows?.length ?? 0;
  const H = heads ?? Math.max(0, ...(rows ?? []).map((r) => r?.length ?? 0));
  const values = new Float64Array(L * H).fill(NaN);
  for (let l = 0; l < L; l++) {
    const r = rows?.[l];
    if (!r) continue;
    for (let h = 0; h < H; h++) values[l * H + h] = num(r[h]);
  }
  return {layers: L, heads: H, values};
}

/** Per-step grids of one metric of one kind (empty when the kind or metric is absent). */
function series(resp: MetricsResponse, kind: Kind, metric: MetricName): ((number | null)[][] | null)[] {
  return resp.kinds[kind]?.[metric] ?? [];
}

/** Layers and heads of a kind in the response (the largest grid over steps). */
export function gridShape(resp: MetricsResponse, kind: Kind, metric: MetricName): {layers: number; heads: number} {
  let layers = 0;
  let heads = 0;
  for (const g of series(resp, kind, metric)) {
    if (!g) continue;
    layers = Math.max(layers, g.length);
    for (const r of g) heads = Math.max(heads, r?.length ?? 0);
  }
  return {layers, heads};
}

/** Index of `step` in `steps`, or of the nearest one (ties: the earlier); -1 when `steps` is empty. null: the last. */
export function stepIndex(steps: readonly number[], step: number | null): number {
  if (!steps.length) return -1;
  if (step === null) return steps.length - 1;
  let best = 0;
  for (let i = 1; i < steps.length; i++) if (Math.abs(steps[i] - step) < Math.abs(steps[best] - step)) best = i;
  return best;
}

/** The layers × heads grid of one metric at the step nearest `step` (null: the last). */
export function metricGrid(resp: MetricsResponse, kind: Kind, metric: MetricName, step: number | null): HeadGrid & {step: number | null} {
  const {layers, heads} = gridShape(resp, kind, metric);
  const i = stepIndex(resp.steps, step);
  const g = toGrid(i >= 0 ? series(resp, kind, metric)[i] : null, layers, heads);
  return {...g, step: i >= 0 ? resp.steps[i] : null};
}

export interface Trajectory {
  steps: number[];
  /** One value per step; NaN where undefined or not logged. */
  values: Float64Array;
}

/** One head's values over all steps. */
export function trajectory(resp: MetricsResponse, kind: Kind, metric: MetricName, layer: number, head: number): Trajectory {
  const s = series(resp, kind, metric);
  const values = new Float64Array(resp.steps.length);
  for (let i = 0; i < resp.steps.length; i++) values[i] = num(s[i]?.[layer]?.[head]);
  return {steps: resp.steps.slice(), values};
}

/** Every head's trajectory at once: values[(layer·heads + head)·steps + stepIndex]. */
export function allTrajectories(resp: MetricsResponse, kind: Kind, metric: MetricName): {layers: number; heads: number; steps: number[]; values: Float64Array} {
  const {layers, heads} = gridShape(resp, kind, metric);
  const s = series(resp, kind, metric);
  const n = resp.steps.length;
  const values = new Float64Array(layers * heads * n).fill(NaN);
  for (let i = 0; i < n; i++) {
    const g = s[i];
    if (!g) continue;
    for (let l = 0; l < layers; l++) for (let h = 0; h < heads; h++) values[(l * heads + h) * n + i] = num(g[l]?.[h]);
  }
  return {layers, heads, steps: resp.steps.slice(), values};
}

/** [min, max] of the finite values (null when there is none). */
export function finiteRange(values: ArrayLike<number>): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : null;
}

/** Colour-scale domain of a metric: its known range, else the data's range over all steps (0 included). */
export function metricDomain(metric: MetricName, values: ArrayLike<number>): [number, number] {
  const known = METRIC_INFO[metric].range;
  if (known) return known;
  const r = finiteRange(values);
  if (!r) return [0, 1];
  const lo = Math.min(0, r[0]);
  return [lo, r[1] > lo ? r[1] : lo + 1];
}

export interface RankedHead {
  layer: number;
  head: number;
  value: number;
}

/** Heads by decreasing value (undefined ones left out); ties by layer, then head. */
export function rankHeads(grid: HeadGrid, top = 10): RankedHead[] {
  const out: RankedHead[] = [];
  for (let l = 0; l < grid.layers; l++) {
    for (let h = 0; h < grid.heads; h++) {
      const v = grid.values[l * grid.heads + h];
      if (Number.isFinite(v)) out.push({layer: l, head: h, value: v});
    }
  }
  out.sort((a, b) => b.value - a.value || a.layer - b.layer || a.head - b.head);
  return out.slice(0, Math.max(0, top));
}

/** The heads that changed most between two checkpoints (JS divergence, largest first). */
export function rankByDivergence(resp: DivergenceResponse, top = 10): RankedHead[] {
  return rankHeads(toGrid(resp.js), top);
}

/** "L3 H7 0.41 nats" */
export function formatRanked(r: RankedHead, unit = 'nats'): string {
  return `L${r.layer} H${r.head} ${formatValue(r.value)}${unit ? ' ' + unit : ''}`;
}

/** What the training view draws (built by trainingData below). */
export interface TrainingData {
  metric: MetricName;
  steps: number[];
  /** Index into `steps` of the selected checkpoint (-1: none). */
  stepIndex: number;
  layers: number;
  heads: number;
  /** Every head's values over steps: values[(layer·heads + head)·steps.length + i]; NaN: undefined. */
  values: Float64Array;
  /** Colour scale and y axis. */
  domain: [number, number];
  /** The head whose trajectory shows when none is hovered. */
  focus: [number, number] | null;
  /** "What changed": the two checkpoints, the divergence per head (or why there is none) and its ranking. */
  divSteps: [number, number] | null;
  divergence: HeadGrid | null;
  divMax: number;
  divUnit: string;
  divMessage?: string;
  ranking: RankedHead[];
  notes: string[];
}

export interface TrainingInput {
  metrics: MetricsResponse;
  kind: Kind;
  metric: MetricName;
  /** The selected step (null: the latest). */
  step: number | null;
  /** The selection's head (layer, heads = [head]) if it names one. */
  selected: [number, number] | null;
  divSteps: [number, number] | null;
  divergence: DivergenceResponse | null;
  divMessage?: string;
  top?: number;
}

/** Everything the training view draws, from the responses and the selection. */
export function trainingData(x: TrainingInput): TrainingData {
  const all = allTrajectories(x.metrics, x.kind, x.metric);
  const si = stepIndex(all.steps, x.step);
  const notes: string[] = [];
  const n = all.steps.length;
  const at = new Float64Array(all.layers * all.heads).fill(NaN);
  if (si >= 0) for (let k = 0; k < at.length; k++) at[k] = all.values[k * n + si];
  if (!all.layers || finiteRange(all.values) === null) {
    notes.push(`No ${METRIC_INFO[x.metric].label} values for the ${x.kind} attention of this example (undefined for these heads, or not logged).`);
  }
  if (x.step !== null && si >= 0 && all.steps[si] !== x.step) notes.push(`No metrics at step ${x.step}: showing step ${all.steps[si]}.`);
  let focus: [number, number] | null = null;
  if (x.selected && x.selected[0] < all.layers && x.selected[1] < all.heads) focus = x.selected;
  else {
    const best = rankHeads({layers: all.layers, heads: all.heads, values: at}, 1)[0];
    focus = best ? [best.layer, best.head] : all.layers && all.heads ? [0, 0] : null;
  }
  const divergence = x.divergence ? toGrid(x.divergence.js, all.layers || undefined, all.heads || undefined) : null;
  return {
    metric: x.metric,
    steps: all.steps,
    stepIndex: si,
    layers: all.layers,
    heads: all.heads,
    values: all.values,
    domain: metricDomain(x.metric, all.values),
    focus,
    divSteps: x.divSteps,
    divergence,
    divMax: x.divergence && Number.isFinite(x.divergence.max) && x.divergence.max > 0 ? x.divergence.max : Math.LN2,
    divUnit: x.divergence?.unit ?? 'nats',
    divMessage: x.divMessage,
    ranking: divergence ? rankHeads(divergence, x.top ?? 10) : [],
    notes,
  };
}
