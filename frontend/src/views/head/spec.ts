// Head view: one layer, every head (or B − A, or two records side by side).
import {tokenLabels} from '../../tokens';
import {buildAxes, kindInfo, sameTokens} from '../../axes';
import {headColor} from '../../draw/colors';
import type {UrlState} from '../../state';
import type {ViewHost, Loaded} from '../spec';
import {defineView, paneTitles} from '../spec';
import type {TopK} from '../../types';
import {diffHeadData, headData, longHeadData, type HeadData} from './data';
import type {OpacityRule} from './draw';
import {HeadView} from './view';

/**
 * One layer's attention (or one head of it) of a record, under the selection's token filters, weighted as
 * `host.weighting`. A long record: each head's stored top-k (tokens unfiltered; raw weights), exact rows and
 * columns from /window on hover (weighted).
 */
export async function loadHeadData(host: Pick<ViewHost, 'source' | 'sel' | 'weighting'>, x: Loaded, layer: number, head?: number): Promise<HeadData> {
  const info = kindInfo(x.header, x.kind);
  const w = host.weighting;
  if (info.layout === 'long') {
    const src = host.source;
    if (!src.topk) throw new Error('This data source cannot serve long (format v3) records.');
    const heads = head !== undefined ? [head] : Array.from({length: info.heads}, (_, h) => h);
    const tks = await Promise.all(heads.map((h) => src.topk!(x.ref, x.kind, layer, h)));
    const q = tokenLabels(x.header, info.query);
    const k = tokenLabels(x.header, info.key);
    const exact = info.exact !== false && src.window
      ? async (h: number, side: 'left' | 'right', i: number) => (await src.window!(x.ref, x.kind, layer, h, side === 'left' ? [i, i + 1] : [0, q.length], side === 'left' ? [0, k.length] : [i, i + 1], w)).data
      : undefined;
    return longHeadData(q, k, info.heads, new Map(heads.map((h, i): [number, TopK] => [h, tks[i]])), exact);
  }
  const att = await host.source.attention(x.ref, x.kind, layer, head, w);
  return headData(att, buildAxes(x.header, x.kind, host.sel), info.heads);
}

/** The opacity rule in the URL (`op` = abs | row, `gain`), or null for the data's default. */
export function opacityFromUrl(extra: Readonly<Record<string, string | undefined>>): OpacityRule | null {
  const mode = extra.op === 'abs' || extra.op === 'row' ? extra.op : null;
  const gain = Number(extra.gain);
  if (!mode && !extra.gain) return null;
  return {mode: mode ?? 'abs', gain: Number.isFinite(gain) && gain >= 0.25 && gain <= 64 ? gain : 1};
}

/** The head view's own state: its opacity rule (null: the data's default). */
export interface HeadState {
  opacity: OpacityRule | null;
}

export const headUrl: UrlState<HeadState> = {
  keys: ['op', 'gain'],
  parse: (get) => ({opacity: opacityFromUrl({op: get('op'), gain: get('gain')})}),
  write: ({opacity}) => (opacity ? [['op', opacity.mode], ['gain', String(opacity.gain)]] : []),
};

function makeHeadView(host: ViewHost<HeadState>, testid: string): HeadView {
  return new HeadView({
    theme: host.theme,
    colorOf: headColor,
    active: host.sel.heads,
    topk: host.sel.topk,
    testid,
    opacity: host.state.opacity,
    onOpacity: (rule) => {
      host.remember({}, {opacity: rule});
      for (const v of host.shown()) if (v instanceof HeadView && v.el.dataset.testid !== testid) v.setOpacity(rule);
    },
    onActiveChange: (active) => {
      host.remember({heads: active});
      for (const v of host.shown()) if (v instanceof HeadView) v.setActive(active);
    },
    onHover: (side, i) => {
      for (const v of host.shown()) if (v instanceof HeadView && v.el.dataset.testid !== testid) v.setHover(side, i);
    },
  });
}

export const headSpec = defineView<HeadState>({
  name: 'head',
  label: 'Head view',
  controls: ['layer', 'topk', 'filter', 'tokens', 'weighting'],
  compare: ['side', 'diff'],
  url: headUrl,
  weightingLabel: (info, w) =>
    w !== 'value'
      ? 'raw weights'
      : info.layout !== 'long'
        ? 'value-weighted'
        : info.exact !== false
          ? 'lines at rest: raw weights (stored top-k); value-weighted in exact windows (the hovered token’s rows)'
          : 'raw weights: this long layer has no exact windows, where value weighting is computed',
  async show(host, a, b, mode) {
    const layer = host.sel.layer;
    const da = await loadHeadData(host, a, layer);
    const db = b ? await loadHeadData(host, b, layer) : null;
    if (!host.current()) return;
    let datas: HeadData[];
    let key: string;
    if (db && mode === 'diff') {
      if (!sameTokens(a.header, b!.header)) throw new Error('Cannot show B − A: the two records have different tokens.');
      if (da.sparse || db.sparse) throw new Error('B − A of the head view needs dense records; for long ones use the matrix view’s B − A.');
      datas = [diffHeadData(da, db)];
      key = 'head-diff';
    } else {
      datas = db ? [da, db] : [da];
      key = db ? 'head-side' : 'head';
    }
    const testids = ['head-view', 'head-view-b'];
    const views = host.panes(key, () => datas.map((_, i) => makeHeadView(host, testids[i])), db && mode !== 'diff' ? paneTitles(a, b!) : undefined);
    views.forEach((v, i) => {
      v.setActive(host.sel.heads);
      v.setTopk(host.sel.topk);
      v.setData(datas[i]);
    });
    const info = kindInfo(a.header, a.kind);
    const rule = views[0].opacityRule();
    const op = `opacity ${rule.mode === 'row' ? 'per row' : 'absolute'} × ${rule.gain}`;
    host.status?.(
      da.sparse
        ? `head view L${layer}: lines at rest from the stored top-${info.topk ?? '?'} of each row; ${info.exact !== false ? 'hover: exact row / column from q/k' : 'exact rows not available for this layer (no q/k, or a learned position bias): top-k only'}; ${op}`
        : `head view L${layer}: stored dense; ${op}`,
    );
  },
});
