// Heads over training: per-head metrics of every checkpoint of one example, and what changed between two;
// no comparison with another run.
import {stepKey} from '../../math';
import {parseIntStrict, type UrlState} from '../../state';
import {METRIC_NAMES, type DivergenceResponse, type MetricName} from '../../types';
import {defineView} from '../spec';
import {trainingData} from './data';
import {TrainingView} from './view';

/** The training view's own state: the metric, the two checkpoints compared (null: first / selected step). */
export interface TrainingState {
  metric: MetricName;
  divA: number | null;
  divB: number | null;
  logX: boolean;
  /** What clicking a head opens. */
  openIn: 'head' | 'neuron';
}

export const trainingUrl: UrlState<TrainingState> = {
  keys: ['metric', 'sa', 'sb', 'logx', 'open'],
  parse(get) {
    const metric = get('metric');
    return {
      metric: metric && (METRIC_NAMES as readonly string[]).includes(metric) ? (metric as MetricName) : 'entropy',
      divA: parseIntStrict(get('sa'), -(2 ** 53)) ?? null,
      divB: parseIntStrict(get('sb'), -(2 ** 53)) ?? null,
      logX: get('logx') === '1',
      openIn: get('open') === 'neuron' ? 'neuron' : 'head',
    };
  },
  write(s) {
    const out: [string, string][] = [];
    if (s.metric !== 'entropy') out.push(['metric', s.metric]);
    if (s.divA !== null) out.push(['sa', String(s.divA)]);
    if (s.divB !== null) out.push(['sb', String(s.divB)]);
    if (s.logX) out.push(['logx', '1']);
    if (s.openIn !== 'head') out.push(['open', s.openIn]);
    return out;
  },
};

export const trainingSpec = defineView<TrainingState>({
  name: 'training',
  label: 'Heads over training',
  controls: [],
  compare: [],
  url: trainingUrl,
  exportName: (_, s) => `_${s.metric}`,
  async show(host, a) {
    const s = {...host.sel, ...host.state};
    const ex = {run: a.ref.run, tag: a.ref.tag, example: a.ref.example};
    const metrics = await host.source.metrics(ex, a.kind);
    const steps = a.example.steps;
    const stepA = s.divA !== null && steps.includes(s.divA) ? s.divA : steps[0];
    const stepB = s.divB !== null && steps.includes(s.divB) ? s.divB : a.ref.step;
    let divergence: DivergenceResponse | null = null;
    let divMessage: string | undefined;
    if (steps.length < 2) divMessage = 'Only one checkpoint: nothing to compare yet.';
    else if (stepA === stepB) divMessage = `Both checkpoints are step ${stepA}: choose two different steps.`;
    else {
      try {
        divergence = await host.source.divergence(ex, a.kind, stepA, stepB);
        if (divergence.same_tokens === false) divMessage = `The tokens differ between steps ${stepA} and ${stepB}: position i is not the same token in both.`;
      } catch (e) {
        divMessage = `Divergence unavailable: ${e instanceof Error ? e.message : String(e)}`;
      }
    }
    if (!host.current()) return;
    const selected: [number, number] | null = s.heads && s.heads.length === 1 ? [s.layer, s.heads[0]] : null;
    const data = trainingData({metrics, kind: a.kind, metric: s.metric, step: a.ref.step, selected, divSteps: steps.length ? [stepA, stepB] : null, divergence, divMessage});
    const [view] = host.panes('training', () => [
      new TrainingView({
        theme: host.theme,
        openIn: s.openIn,
        logX: s.logX,
        onMetric: (m) => host.update({}, {metric: m}),
        onOpenIn: (v) => host.remember({}, {openIn: v}),
        onLogX: (on) => host.remember({}, {logX: on}),
        onDivSteps: (x, y) => {
          const shown = host.record();
          host.update({}, {divA: x === shown?.example.steps[0] ? null : x, divB: y === shown?.ref.step ? null : y});
        },
        // the head (or neuron) view of one head at a step; both keep the head (README: heads=[h], nhead=h),
        // with no query pinned (neuron view's `q`) and no head detail open (model view's `detail`)
        onOpen: (layer, head, step, view) => {
          const all = host.record()?.example.steps ?? [];
          const st = all.includes(step) ? stepKey(all, step) : host.sel.step;
          host.open(view, {layer, heads: [head], neuronHead: head, step: st}, {q: null, detail: null});
        },
      }),
    ]);
    view.setData(data);
  },
});
