// Heads over training: per-head metrics of every checkpoint of one example, and what changed between two;
// no comparison with another run.
import {stepKey} from '../../math';
import type {Selection} from '../../state';
import type {DivergenceResponse} from '../../types';
import type {ViewSpec} from '../spec';
import {trainingData} from './data';
import {TrainingView} from './view';

export const trainingSpec: ViewSpec = {
  name: 'training',
  label: 'Heads over training',
  controls: [],
  compare: [],
  exportName: (s) => `_${s.metric}`,
  async show(host, a) {
    const s = host.sel;
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
        onMetric: (m) => host.update({metric: m}),
        onOpenIn: (v) => host.remember({openIn: v}),
        onLogX: (on) => host.remember({logX: on}),
        onDivSteps: (x, y) => {
          const shown = host.record();
          host.update({divA: x === shown?.example.steps[0] ? null : x, divB: y === shown?.ref.step ? null : y});
        },
        // the head (or neuron) view of one head at a step; both keep the head (README: heads=[h], nhead=h)
        onOpen: (layer, head, step, view) => {
          const all = host.record()?.example.steps ?? [];
          const st = all.includes(step) ? stepKey(all, step) : host.sel.step;
          const patch: Partial<Selection> = {view, layer, heads: [head], neuronHead: head, step: st, query: null, detail: null};
          host.update(patch);
        },
      }),
    ]);
    view.setData(data);
  },
};
