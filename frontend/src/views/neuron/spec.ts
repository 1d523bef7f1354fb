// Neuron view: one head of one layer, q and k (when logged) and the recomputed softmax; side by side only.
import {tokenLabels} from '../../tokens';
import {buildAxes, kindInfo} from '../../axes';
import {stepKey} from '../../math';
import {parseIntStrict, type ShellKey, type UrlState} from '../../state';
import type {Loaded, ViewHost} from '../spec';
import {defineView, paneTitles} from '../spec';
import {neuronData, type NeuronData} from './data';
import {NeuronView} from './view';
import {LongNeuronView, type LongNeuronData} from './long';
import {resolveLayerInfo} from '../../math';
import {formatViewport} from '../matrix/spec';
import {around} from '../matrix/zoom';

/** The neuron view's own state: the pinned query token (index into the shown rows) and the layout. */
export interface NeuronState {
  query: number | null;
  collapsed: boolean;
}

export const neuronUrl: UrlState<NeuronState> = {
  keys: ['q', 'collapsed'],
  parse: (get) => ({query: parseIntStrict(get('q')) ?? null, collapsed: get('collapsed') === '1'}),
  write: (s) => [...(s.query !== null ? [['q', String(s.query)] as [string, string]] : []), ...(s.collapsed ? [['collapsed', '1'] as [string, string]] : [])],
  // other rows: the pin goes
  reset: (s, changed) => (['example', 'kind', 'filter', 'hideSpecial', 'merge'].some((k) => changed.has(k as ShellKey)) ? {...s, query: null} : s),
};

/** A long record: the pinned query's exact row from /window (or its stored top-k), q/k from /qk. */
function longNeuronData(host: ViewHost<NeuronState>, x: Loaded): LongNeuronData {
  const s = host.sel;
  const src = host.source;
  const info = kindInfo(x.header, x.kind);
  const {layer, neuronHead: head} = s;
  const q = tokenLabels(x.header, info.query);
  const k = tokenLabels(x.header, info.key);
  const exact = info.exact !== false && !!src.window;
  const notes: string[] = [];
  if (!exact) notes.push('Exact rows are not available for this layer (no q/k stored, or a learned position bias): the keys listed are the row’s stored top-k.');
  if (s.merge || s.hideSpecial || s.filter !== 'all') notes.push('Token filters and word merging do not apply to a long record’s neuron view.');
  return {
    layer,
    head,
    queryLabels: q,
    keyLabels: k,
    info: resolveLayerInfo(info.layer_info?.[layer], info.head_dim ?? 64, x.kind === 'decoder'),
    exact,
    notes,
    loadRow: exact
      ? async (i) => (await src.window!(x.ref, x.kind, layer, head, [i, i + 1], [0, k.length])).data
      : async (i) => {
          const t = await src.topk!(x.ref, x.kind, layer, head);
          const row = new Float32Array(k.length);
          for (let r = 0; r < t.k; r++) row[t.index[i * t.k + r]] = t.values[i * t.k + r];
          return row;
        },
    loadQK: async () => (info.has_qk && x.example.qk_steps.includes(x.ref.step) ? src.qk(x.ref, x.kind, layer, head) : null),
  };
}

async function loadNeuronData(host: ViewHost<NeuronState>, x: Loaded): Promise<NeuronData> {
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

export const neuronSpec = defineView<NeuronState>({
  name: 'neuron',
  label: 'Neuron view',
  controls: ['layer', 'neuronHead', 'filter', 'tokens'],
  compare: ['side'],
  url: neuronUrl,
  async show(host, a, b) {
    if (kindInfo(a.header, a.kind).layout === 'long') {
      const datas = [a, ...(b ? [b] : [])].map((x) => longNeuronData(host, x));
      const views = host.panes(
        `neuron-long-${datas.length}`,
        () =>
          datas.map(
            () =>
              new LongNeuronView({
                theme: host.theme,
                query: host.state.query,
                onPin: (i) => {
                  host.remember({}, {query: i});
                  for (const v of host.shown()) if (v instanceof LongNeuronView) v.pin(i ?? 0, false);
                },
                onJump: (i, j) => {
                  const n = datas[0].queryLabels.length;
                  host.open('matrix', {}, {mz: formatViewport(around(i, j, 64, n, datas[0].keyLabels.length))});
                },
              }),
          ),
        b ? paneTitles(a, b) : undefined,
      );
      views.forEach((v, i) => v.setData(datas[i]));
      host.status?.(`neuron view L${host.sel.layer} H${host.sel.neuronHead}: ${datas[0].exact ? 'the pinned query’s exact row from q/k' : 'the pinned query’s stored top-k'}, keys by weight`);
      return;
    }
    const na = await loadNeuronData(host, a);
    const nb = b ? await loadNeuronData(host, b) : null;
    if (!host.current()) return;
    const datas = nb ? [na, nb] : [na];
    const make = () =>
      datas.map(
        () =>
          new NeuronView({
            theme: host.theme,
            collapsed: host.state.collapsed,
            query: host.state.query,
            onPin: (r) => host.remember({}, {query: r}),
            onCollapsed: (c) => host.remember({}, {collapsed: c}),
            onGoToStep: (step) => host.update({step: stepKey(host.record()?.example.steps ?? [], step)}),
          }),
      );
    const views = host.panes(`neuron-${datas.length}`, make, b ? paneTitles(a, b) : undefined);
    views.forEach((v, i) => v.setData(datas[i]));
  },
});
