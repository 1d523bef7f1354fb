// Rollout story: BERT sentence pair, residual 0.5, mean over heads.
import {buildAxes} from '../../src/axes';
import {defaultSelection} from '../../src/state';
import {rolloutData, type RolloutData} from '../../src/views/rollout/data';
import {rolloutSpec} from '../../src/views/rollout/spec';
import {fixtureRecord, type Story} from './story';

export const story: Story<RolloutData> = {
  spec: rolloutSpec,
  run: 'bert',
  example: 'pair',
  kind: 'encoder',
  async data(source) {
    const x = await fixtureRecord(source, 'bert', 'pair', 'encoder');
    const r = await source.rollout(x.ref, 'encoder', 0.5, 'mean');
    return rolloutData(r, buildAxes(x.header, 'encoder', defaultSelection()), 0.5, 'mean');
  },
};
