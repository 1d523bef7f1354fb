// Attention rollout: one record, self-attention kinds only; no comparison.
import {buildAxes, kindInfo} from '../../axes';
import {FUSIONS, type Fusion} from '../../types';
import type {UrlState} from '../../state';
import {defineView} from '../spec';
import {rolloutData} from './data';
import {RolloutView} from './view';

/** The rollout view's own state: the identity's weight (0–1, steps of 0.05) and how heads are fused. */
export interface RolloutState {
  residual: number;
  fusion: Fusion;
}

export const rolloutUrl: UrlState<RolloutState> = {
  keys: ['residual', 'fusion'],
  parse(get) {
    const res = get('residual');
    const fusion = get('fusion');
    return {
      residual: res !== undefined && /^(?:0(?:\.\d{1,3})?|1(?:\.0{1,3})?|\.\d{1,3})$/.test(res) ? Number(res) : 0.5,
      fusion: fusion && (FUSIONS as readonly string[]).includes(fusion) ? (fusion as Fusion) : 'mean',
    };
  },
  write: (s) => [...(s.residual !== 0.5 ? [['residual', String(s.residual)] as [string, string]] : []), ...(s.fusion !== 'mean' ? [['fusion', s.fusion] as [string, string]] : [])],
};

export const rolloutSpec = defineView<RolloutState>({
  name: 'rollout',
  label: 'Rollout',
  controls: ['filter', 'tokens'],
  compare: [],
  url: rolloutUrl,
  unavailable(header, kind) {
    const info = kindInfo(header, kind);
    return info.query === info.key ? null : 'Attention rollout needs self-attention (one sequence for queries and keys): choose the encoder or decoder kind.';
  },
  exportName: (_, s) => `_r${s.residual}_${s.fusion}`,
  async show(host, a) {
    const s = {...host.sel, ...host.state};
    const axes = buildAxes(a.header, a.kind, s);
    const r = await host.source.rollout(a.ref, a.kind, s.residual, s.fusion);
    if (!host.current()) return;
    const data = rolloutData(r, axes, s.residual, s.fusion);
    if (a.kind === 'decoder' && a.header.kinds.cross) data.notes.push('Decoder self-attention only: what flows in through cross-attention from the encoder is not part of this rollout.');
    const [view] = host.panes('rollout', () => [
      new RolloutView({theme: host.theme, residual: s.residual, fusion: s.fusion, onResidual: (x) => host.update({}, {residual: x}), onFusion: (f) => host.update({}, {fusion: f})}),
    ]);
    view.setData(data);
  },
});
