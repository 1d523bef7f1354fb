// Head scores over a probe set as the backend computes them (derived.TagScores: /headscores, /headtrend,
// /headexamples), from the records' headers (each holds its example's per-head `metrics`): for the notebook
// page and the dev fixtures, which have no backend. Pure.
import {KINDS, METRIC_NAMES, type Header, type HeadExamplesResponse, type HeadScoresResponse, type HeadTrendResponse, type JsonGrid, type Kind, type TagRef} from './types';

interface Stack {
  names: string[];
  examples: string[];
  skipped: string[];
  layers: number;
  heads: number;
  layer_ids: number[] | null;
  head_ids: number[] | null;
  /** [example][metric] → layers × heads row-major, NaN where undefined. */
  values: Float64Array[][];
}

/** Example names in natural order: numbers by value first, then the others by text (the backend's order). */
export function naturalCompare(a: string, b: string): number {
  const na = /^\d{1,18}$/.test(a);
  const nb = /^\d{1,18}$/.test(b);
  if (na && nb) return Number(a) - Number(b) || (a < b ? -1 : a > b ? 1 : 0);
  if (na !== nb) return na ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function stats(values: Float64Array[], cells: number): {mean: Float64Array; std: Float64Array; min: Float64Array; max: Float64Array; n: Int32Array} {
  const mean = new Float64Array(cells);
  const std = new Float64Array(cells);
  const min = new Float64Array(cells).fill(Infinity);
  const max = new Float64Array(cells).fill(-Infinity);
  const n = new Int32Array(cells);
  for (const v of values)
    for (let c = 0; c < cells; c++)
      if (Number.isFinite(v[c])) {
        n[c]++;
        mean[c] += v[c];
        if (v[c] < min[c]) min[c] = v[c];
        if (v[c] > max[c]) max[c] = v[c];
      }
  for (let c = 0; c < cells; c++) mean[c] = n[c] ? mean[c] / n[c] : NaN;
  for (const v of values) for (let c = 0; c < cells; c++) if (Number.isFinite(v[c])) std[c] += (v[c] - mean[c]) ** 2;
  for (let c = 0; c < cells; c++) {
    std[c] = n[c] ? Math.sqrt(std[c] / n[c]) : NaN;
    if (!n[c]) min[c] = max[c] = NaN;
  }
  return {mean, std, min, max, n};
}

function toJson(a: ArrayLike<number>, layers: number, heads: number): JsonGrid {
  return Array.from({length: layers}, (_, l) => Array.from({length: heads}, (_, h) => (Number.isFinite(a[l * heads + h]) ? a[l * heads + h] : null)));
}

/** The head scores of one tag from its records' headers (any order); throws when the tag or kind has none. */
export class TagScores {
  readonly kind: Kind;
  readonly kinds: Kind[];
  readonly steps: number[];
  private byStep = new Map<number, Header[]>();
  private stacks = new Map<number, Stack>();

  constructor(
    readonly ref: TagRef,
    headers: readonly Header[],
    kind?: Kind,
  ) {
    for (const h of headers) {
      const list = this.byStep.get(h.step) ?? [];
      list.push(h);
      this.byStep.set(h.step, list);
    }
    if (!this.byStep.size) throw new Error(`404: no examples of tag ${JSON.stringify(ref.tag)}`);
    const logged = new Set(headers.flatMap((h) => Object.keys(h.kinds) as Kind[]));
    this.kinds = KINDS.filter((k) => logged.has(k));
    this.kind = kind ?? this.kinds[0] ?? 'encoder';
    if (!logged.has(this.kind)) throw new Error(`404: no '${this.kind}' attention in tag ${JSON.stringify(ref.tag)}`);
    this.steps = [...this.byStep.keys()].sort((a, b) => a - b);
    for (const list of this.byStep.values()) list.sort((a, b) => naturalCompare(a.example, b.example));
  }

  private stack(step: number): Stack {
    const cached = this.stacks.get(step);
    if (cached) return cached;
    const all = this.byStep.get(step);
    if (!all) throw new Error(`404: tag ${JSON.stringify(this.ref.tag)} has no step ${step}`);
    const groups = new Map<string, Header[]>();
    for (const h of all) {
      const k = h.kinds[this.kind];
      if (!k) continue;
      const key = JSON.stringify([k.layers, k.heads, k.layer_ids ?? [], k.head_ids ?? []]);
      groups.set(key, [...(groups.get(key) ?? []), h]);
    }
    let best: [string, Header[]] = ['[0,0,[],[]]', []];
    for (const g of groups) if (g[1].length > best[1].length) best = g;
    const [layers, heads, lids, hids] = JSON.parse(best[0]) as [number, number, number[], number[]];
    const kept = best[1];
    const found = new Set(kept.flatMap((h) => Object.keys(h.metrics?.[this.kind] ?? {})));
    const names = [...METRIC_NAMES.filter((n) => found.has(n)), ...[...found].filter((n) => !(METRIC_NAMES as readonly string[]).includes(n)).sort()];
    const values = kept.map((h) =>
      names.map((n) => {
        const grid = h.metrics?.[this.kind]?.[n];
        const out = new Float64Array(layers * heads).fill(NaN);
        if (Array.isArray(grid) && grid.length === layers && grid.every((r) => Array.isArray(r) && r.length === heads))
          grid.forEach((r, l) => r.forEach((v, hh) => (out[l * heads + hh] = typeof v === 'number' ? v : NaN)));
        return out;
      }),
    );
    const keptSet = new Set(kept);
    const st: Stack = {names, examples: kept.map((h) => h.example), skipped: all.filter((h) => !keptSet.has(h)).map((h) => h.example), layers, heads, layer_ids: lids.length ? lids : null, head_ids: hids.length ? hids : null, values};
    this.stacks.set(step, st);
    return st;
  }

  at(step: number): HeadScoresResponse {
    const st = this.stack(step);
    const cells = st.layers * st.heads;
    const metrics: HeadScoresResponse['metrics'] = {};
    st.names.forEach((name, i) => {
      const s = stats(
        st.values.map((v) => v[i]),
        cells,
      );
      const g = (a: ArrayLike<number>) => toJson(a, st.layers, st.heads);
      metrics[name] = {mean: g(s.mean), std: g(s.std), min: g(s.min), max: g(s.max), n: Array.from({length: st.layers}, (_, l) => Array.from(s.n.subarray(l * st.heads, (l + 1) * st.heads)))};
    });
    return {...this.ref, kind: this.kind, kinds: this.kinds, step, steps: this.steps, examples: st.examples.length, skipped: st.skipped, layers: st.layers, heads: st.heads, layer_ids: st.layer_ids, head_ids: st.head_ids, metrics};
  }

  trend(): HeadTrendResponse {
    const last = this.stack(this.steps[this.steps.length - 1]);
    const same = (s: Stack) => s.layers === last.layers && s.heads === last.heads && JSON.stringify([s.layer_ids, s.head_ids]) === JSON.stringify([last.layer_ids, last.head_ids]);
    const metrics: HeadTrendResponse['metrics'] = Object.fromEntries(last.names.map((n) => [n, {mean: [], std: []}]));
    const examples: number[] = [];
    for (const step of this.steps) {
      const st = this.stack(step);
      examples.push(st.examples.length);
      for (const n of last.names) {
        const i = st.names.indexOf(n);
        if (!same(st) || i < 0) {
          metrics[n].mean.push(null);
          metrics[n].std.push(null);
          continue;
        }
        const s = stats(
          st.values.map((v) => v[i]),
          st.layers * st.heads,
        );
        metrics[n].mean.push(toJson(s.mean, st.layers, st.heads));
        metrics[n].std.push(toJson(s.std, st.layers, st.heads));
      }
    }
    return {...this.ref, kind: this.kind, kinds: this.kinds, steps: this.steps, examples, layers: last.layers, heads: last.heads, layer_ids: last.layer_ids, head_ids: last.head_ids, metrics};
  }

  top(step: number, metric: string, layer: number, head: number, limit: number): HeadExamplesResponse {
    const st = this.stack(step);
    const i = st.names.indexOf(metric);
    if (i < 0) throw new Error(`400: no metric ${JSON.stringify(metric)} at step ${step}`);
    if (!(layer >= 0 && layer < st.layers && head >= 0 && head < st.heads)) throw new Error(`400: head (${layer}, ${head}) is outside the ${st.layers} x ${st.heads} layers x heads`);
    const scored = st.values.map((v, k) => ({example: st.examples[k], score: v[i][layer * st.heads + head], k})).filter((r) => Number.isFinite(r.score));
    scored.sort((a, b) => b.score - a.score || a.k - b.k);
    return {...this.ref, kind: this.kind, metric, layer, head, step, n: scored.length, examples: scored.slice(0, limit).map(({example, score}) => ({example, score}))};
  }
}
