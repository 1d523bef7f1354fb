// Head view story: BERT sentence pair (17 tokens, 12 heads), layer 2.
import {buildAxes} from '../../src/axes';
import {defaultSelection} from '../../src/state';
import {headData, type HeadData} from '../../src/views/head/data';
import {headSpec} from '../../src/views/head/spec';
import {fixtureRecord, type Story} from './story';

export const story: Story<HeadData> = {
  spec: headSpec,
  run: 'bert',
  example: 'pair',
  kind: 'encoder',
  sel: {layer: 2},
  async data(source) {
    const x = await fixtureRecord(source, 'bert', 'pair', 'encoder');
    const att = await source.attention(x.ref, 'encoder', 2);
    return headData(att, buildAxes(x.header, 'encoder', defaultSelection()), att.heads);
  },
};
