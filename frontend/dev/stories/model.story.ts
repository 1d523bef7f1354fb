// Model view story: GPT-2-like causal decoder, 4 layers × 16 heads of the pooled overview.
import {buildAxes} from '../../src/axes';
import {defaultSelection} from '../../src/state';
import {modelData, type ModelData} from '../../src/views/model/data';
import {modelSpec} from '../../src/views/model/spec';
import {fixtureRecord, type Story} from './story';

export const story: Story<ModelData> = {
  spec: modelSpec,
  run: 'gpt2',
  example: '0',
  kind: 'decoder',
  async data(source) {
    const x = await fixtureRecord(source, 'gpt2', '0', 'decoder');
    return modelData(await source.overview(x.ref, 'decoder'), buildAxes(x.header, 'decoder', defaultSelection()), null, null);
  },
};
