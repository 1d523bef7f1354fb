// Neuron view story: GPT-2-like layer 3 (softcap and position bias: the note), head 5, q/k logged.
import {buildAxes, kindInfo} from '../../src/axes';
import {defaultSelection} from '../../src/state';
import {neuronData, type NeuronData} from '../../src/views/neuron/data';
import {neuronSpec} from '../../src/views/neuron/spec';
import {fixtureRecord, type Story} from './story';

export const story: Story<NeuronData> = {
  spec: neuronSpec,
  run: 'gpt2',
  example: '0',
  kind: 'decoder',
  sel: {layer: 3, neuronHead: 5},
  state: {query: 4},
  async data(source) {
    const x = await fixtureRecord(source, 'gpt2', '0', 'decoder');
    const att = await source.attention(x.ref, 'decoder', 3, 5);
    return neuronData({
      layer: 3,
      head: 5,
      info: kindInfo(x.header, 'decoder'),
      axes: buildAxes(x.header, 'decoder', defaultSelection(), false),
      attention: att.head(5),
      q: att.q,
      k: att.k,
      qk: await source.qk(x.ref, 'decoder', 3, 5),
      decoderSelf: true,
      run: x.ref.run,
      step: x.ref.step,
      qkSteps: x.example.qk_steps,
      merge: false,
    });
  },
};
