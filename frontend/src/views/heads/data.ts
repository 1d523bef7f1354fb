// Heads over a probe set: from /headscores, /headtrend and /headexamples responses to what the Heads view
// draws (a sortable, filterable table of heads, a layers × heads heatmap of one metric's mean at a step, the
// chosen head's mean ± std over steps, and the examples where it scores highest). Pure: no HTTP, no pixels.
import type {HeadExamplesResponse, HeadScoresResponse, HeadTrendResponse, JsonGrid} from '../../types';
import {METRIC_INFO} from '../training/data';

export const SORT_KEYS = ['mean', 'std', 'min', 'max', 'n', 'layer', 'head'] as const;
export type SortKey = (typeof SORT_KEYS)[number];

/** One head's statistics of the chosen metric over the tag's examples at one step. */
export interface HeadRow {
  layer: number;
  head: number;
  mean: number;
  std: number;
  min: number;
  max: number;
  n: number;
}

/** What the filter box keeps: layers and heads (model indices as shown), and a range of the mean. */
export interface HeadFilter {
  layers: number[] | null;
  heads: number[] | null;
  above: number | null;
  below: number | null;
}

export interface HeadsData {
  metric: string;
  metrics: string[];
  label: string;
  help: string;
  step: number;
  steps: number[];
  examples: number;
  skipped: string[];
  layers: number;
  heads: number;
  /** The model's layer / head index of each row / column (identity unless only some were logged). */
  layerIds: number[];
  headIds: number[];
  /** Every head (grid order), and the ones the filter keeps, sorted. */
  all: HeadRow[];
  rows: HeadRow[];
  /** The mean per cell (layers × heads, row-major; NaN where undefined) and its colour domain. */
  grid: Float64Array;
  domain: [number, number];
  sort: SortKey;
  asc: boolean;
  filter: string;
  filterError: string | null;
  /** The chosen head (grid indices): the URL's, else the table's first row. */
  chosen: [number, number] | null;
  /** The chosen head's mean and std at every step (NaN where unavailable). */
  trend: {steps: number[]; mean: Float64Array; std: Float64Array} | null;
  /** The examples where the chosen head scores highest, and how many are defined. */
  top: {example: string; score: number}[];
  topN: number;
  notes: string[];
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : NaN);
const cell = (g: JsonGrid | null | undefined, l: number, h: number): number => num(g?.[l]?.[h]);

/** Label and help of a metric (docs/metrics.md); names the frontend does not know are shown as they are. */
export function metricInfo(name: string): {label: string; help: string; unit: string; range: [number, number] | null} {
  const known = (METRIC_INFO as Record<string, (typeof METRIC_INFO)[keyof typeof METRIC_INFO]>)[name];
  return known ?? {label: name, help: 'a per-head metric stored in the records', unit: '', range: null};
}

/**
 * The filter box: whitespace-separated terms `L3` / `L2-5` (layers), `H7` / `H0-3` (heads), `>0.5` / `<0.2`
 * (the mean). Indices are the model's as shown. Null for an empty box; an Error for a term it cannot read.
 */
export function parseFilter(text: string): HeadFilter | Error | null {
  const terms = text.trim().split(/\s+/).filter(Boolean);
  if (!terms.length) return null;
  const f: HeadFilter = {layers: null, heads: null, above: null, below: null};
  for (const t of terms) {
    let m = /^([LH])(\d{1,4})(?:-(\d{1,4}))?$/i.exec(t);
    if (m) {
      const a = Number(m[2]);
      const b = m[3] === undefined ? a : Number(m[3]);
      const range = Array.from({length: Math.max(0, b - a + 1)}, (_, i) => a + i);
      const key = m[1].toUpperCase() === 'L' ? 'layers' : 'heads';
      f[key] = [...(f[key] ?? []), ...range];
      continue;
    }
    m = /^([<>])=?(-?\d*\.?\d+(?:e-?\d+)?)$/i.exec(t);
    if (m) {
      if (m[1] === '>') f.above = Number(m[2]);
      else f.below = Number(m[2]);
      continue;
    }
    return new Error(`cannot read ${JSON.stringify(t)}: use L3, L2-5, H7, >0.5, <0.2`);
  }
  return f;
}

/** Rows ordered by `key` (NaN always last; ties by layer, then head). */
export function sortRows(rows: readonly HeadRow[], key: SortKey, asc: boolean): HeadRow[] {
  const sign = asc ? 1 : -1;
  return [...rows].sort((a, b) => {
    const x = a[key];
    const y = b[key];
    const nx = Number.isNaN(x);
    const ny = Number.isNaN(y);
    if (nx !== ny) return nx ? 1 : -1;
    if (!nx && x !== y) return sign * (x - y);
    return a.layer - b.layer || a.head - b.head;
  });
}

export interface HeadsInput {
  scores: HeadScoresResponse;
  trend: HeadTrendResponse | null;
  examples: HeadExamplesResponse | null;
  metric: string | null;
  sort: SortKey;
  asc: boolean;
  filter: string;
  chosen: [number, number] | null;
}

/** The metric shown: the asked one if the records hold it, else induction, else the first. */
export function shownMetric(names: readonly string[], asked: string | null): string {
  if (asked && names.includes(asked)) return asked;
  return names.includes('induction') ? 'induction' : (names[0] ?? '');
}

export function headsData(i: HeadsInput): HeadsData {
  const s = i.scores;
  const metrics = Object.keys(s.metrics);
  const metric = shownMetric(metrics, i.metric);
  const st = s.metrics[metric];
  const L = s.layers;
  const H = s.heads;
  const layerIds = s.layer_ids && s.layer_ids.length === L ? s.layer_ids : Array.from({length: L}, (_, l) => l);
  const headIds = s.head_ids && s.head_ids.length === H ? s.head_ids : Array.from({length: H}, (_, h) => h);
  const grid = new Float64Array(L * H).fill(NaN);
  const all: HeadRow[] = [];
  for (let l = 0; l < L; l++)
    for (let h = 0; h < H; h++) {
      const row = {layer: l, head: h, mean: cell(st?.mean, l, h), std: cell(st?.std, l, h), min: cell(st?.min, l, h), max: cell(st?.max, l, h), n: num(st?.n?.[l]?.[h])};
      grid[l * H + h] = row.mean;
      all.push(row);
    }
  const parsed = parseFilter(i.filter);
  const filterError = parsed instanceof Error ? parsed.message : null;
  const f = parsed instanceof Error ? null : parsed;
  const kept = all.filter(
    (r) =>
      !f ||
      ((!f.layers || f.layers.includes(layerIds[r.layer])) &&
        (!f.heads || f.heads.includes(headIds[r.head])) &&
        (f.above === null || r.mean > f.above) &&
        (f.below === null || r.mean < f.below)),
  );
  const rows = sortRows(kept, i.sort, i.asc);
  const info = metricInfo(metric);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of grid)
    if (Number.isFinite(v)) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  const domain: [number, number] = info.range ?? (lo <= hi ? [Math.min(0, lo), hi > lo ? hi : lo + 1] : [0, 1]);
  const chosen = i.chosen && i.chosen[0] < L && i.chosen[1] < H ? i.chosen : rows[0] ? ([rows[0].layer, rows[0].head] as [number, number]) : null;
  let trend: HeadsData['trend'] = null;
  if (chosen && i.trend && i.trend.layers === L && i.trend.heads === H && i.trend.metrics[metric]) {
    const t = i.trend.metrics[metric];
    trend = {
      steps: i.trend.steps.slice(),
      mean: Float64Array.from(i.trend.steps, (_, k) => cell(t.mean[k], chosen[0], chosen[1])),
      std: Float64Array.from(i.trend.steps, (_, k) => cell(t.std[k], chosen[0], chosen[1])),
    };
  }
  const ex = i.examples && chosen && i.examples.layer === chosen[0] && i.examples.head === chosen[1] && i.examples.metric === metric ? i.examples : null;
  const notes: string[] = [];
  if (s.skipped.length) notes.push(`${s.skipped.length} example(s) left out: another layers × heads grid than the others (${s.skipped.slice(0, 5).join(', ')}${s.skipped.length > 5 ? ', …' : ''}).`);
  if (s.examples < 2) notes.push('One example at this step: the spread is 0. Log more probes for a spread.');
  return {
    metric,
    metrics,
    label: info.label,
    help: info.help,
    step: s.step,
    steps: s.steps,
    examples: s.examples,
    skipped: s.skipped,
    layers: L,
    heads: H,
    layerIds,
    headIds,
    all,
    rows,
    grid,
    domain,
    sort: i.sort,
    asc: i.asc,
    filter: i.filter,
    filterError,
    chosen,
    trend,
    top: ex?.examples ?? [],
    topN: ex?.n ?? 0,
    notes,
  };
}
