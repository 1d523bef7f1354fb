// Neuron view: one head of one layer, q and k (when logged) and the recomputed softmax; side by side only.
import {buildAxes, kindInfo} from '../../axes';
import {stepKey} from '../../math';
import type {Loaded, ViewHost, ViewSpec} from '../spec';
import {paneTitles} from '../spec';
import {neuronData, type NeuronData} from './data';
import {NeuronView} from './view';

async function loadNeuronData(host: ViewHost, x: Loaded): Promise<NeuronData> {
  const s = host.sel;
  const info = kindInfo(x.header, x.kind);
  const layer = s.layer;
  const head = s.neuronHead;
  const att = await host.source.attention(x.ref, x.kind, layer, head);
  const logged = info.has_qk && x.example.qk_steps.includes(x.ref.step);
  const qk = logged ? await host.source.qk(x.ref, x.kind, layer, head) : null;
  return neuronData({
    layer,
    head,
    info,
    axes: buildAxes(x.header, x.kind, s, false),
    attention: att.head(head),
    q: att.q,
    k: att.k,
    qk,
    decoderSelf: x.kind === 'decoder',
    run: x.ref.run,
    step: x.ref.step,
    qkSteps: x.example.qk_steps,
    merge: s.merge,
  });
}

export const neuronSpec: ViewSpec = {
  name: 'neuron',
  label: 'Neuron view',
  controls: ['layer', 'neuronHead', 'filter', 'tokens'],
  compare: ['side'],
  async show(host, a, b) {
    const na = await loadNeuronData(host, a);
    const nb = b ? await loadNeuronData(host, b) : null;
    if (!host.current()) return;
    const datas = nb ? [na, nb] : [na];
    const make = () =>
      datas.map(
        () =>
          new NeuronView({
            theme: host.theme,
            collapsed: host.sel.collapsed,
            query: host.sel.query,
            onPin: (r) => host.remember({query: r}),
            onCollapsed: (c) => host.remember({collapsed: c}),
            onGoToStep: (step) => host.update({step: stepKey(host.record()?.example.steps ?? [], step)}),
          }),
      );
    const views = host.panes(`neuron-${datas.length}`, make, b ? paneTitles(a, b) : undefined);
    views.forEach((v, i) => v.setData(datas[i]));
  },
};
