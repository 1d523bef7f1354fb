// Attention rollout: one record, self-attention kinds only; no comparison.
import {buildAxes} from '../../axes';
import type {ViewSpec} from '../spec';
import {rolloutData} from './data';
import {RolloutView} from './view';

export const rolloutSpec: ViewSpec = {
  name: 'rollout',
  label: 'Rollout',
  controls: ['filter', 'tokens'],
  compare: [],
  exportName: (s) => `_r${s.residual}_${s.fusion}`,
  async show(host, a) {
    const s = host.sel;
    const axes = buildAxes(a.header, a.kind, s);
    if (!axes.self) throw new Error('Attention rollout needs self-attention (one sequence for queries and keys): choose the encoder or decoder kind.');
    const r = await host.source.rollout(a.ref, a.kind, s.residual, s.fusion);
    if (!host.current()) return;
    const data = rolloutData(r, axes, s.residual, s.fusion);
    if (a.kind === 'decoder' && a.header.kinds.cross) data.notes.push('Decoder self-attention only: what flows in through cross-attention from the encoder is not part of this rollout.');
    const [view] = host.panes('rollout', () => [
      new RolloutView({theme: host.theme, residual: s.residual, fusion: s.fusion, onResidual: (x) => host.update({residual: x}), onFusion: (f) => host.update({fusion: f})}),
    ]);
    view.setData(data);
  },
};
