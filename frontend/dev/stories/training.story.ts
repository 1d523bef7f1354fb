// Heads over training story: the induction run (16 checkpoints; an induction head forms between ~60 and
// ~140), induction score, what changed from the first to the last step.
import {trainingData, type TrainingData} from '../../src/views/training/data';
import {trainingSpec} from '../../src/views/training/spec';
import {fixtureRecord, type Story} from './story';

export const story: Story<TrainingData> = {
  spec: trainingSpec,
  run: 'induction',
  example: '0',
  kind: 'decoder',
  state: {metric: 'induction'},
  async data(source) {
    const x = await fixtureRecord(source, 'induction', '0', 'decoder');
    const ex = {run: x.ref.run, tag: x.ref.tag, example: x.ref.example};
    const steps = x.example.steps;
    const metrics = await source.metrics(ex, 'decoder');
    const divergence = await source.divergence(ex, 'decoder', steps[0], x.ref.step);
    return trainingData({metrics, kind: 'decoder', metric: 'induction', step: x.ref.step, selected: null, divSteps: [steps[0], x.ref.step], divergence});
  },
};
