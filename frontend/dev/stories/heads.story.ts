// Heads story: the probe set (8 sequences of the induction model), induction score at the last step: the
// induction head (L1 H1) tops the table, its examples listed.
import {headsData, type HeadsData} from '../../src/views/heads/data';
import {headsSpec} from '../../src/views/heads/spec';
import {fixtureRecord, type Story} from './story';

export const story: Story<HeadsData> = {
  spec: headsSpec,
  run: 'probeset',
  example: '0',
  kind: 'decoder',
  state: {metric: 'induction'},
  async data(source) {
    const x = await fixtureRecord(source, 'probeset', '0', 'decoder');
    const tag = {run: x.ref.run, tag: x.ref.tag};
    const scores = await source.headScores!(tag, x.ref.step, 'decoder');
    const trend = await source.headTrend!(tag, 'decoder');
    const first = headsData({scores, trend, examples: null, metric: 'induction', sort: 'mean', asc: false, filter: '', chosen: null});
    const examples = await source.headExamples!(tag, x.ref.step, 'decoder', 'induction', first.chosen![0], first.chosen![1], 10);
    return headsData({scores, trend, examples, metric: 'induction', sort: 'mean', asc: false, filter: '', chosen: null});
  },
};
