// Model view: every layer × head of the pooled overview, with a head detail of a clicked thumbnail.
import {buildAxes, kindInfo} from '../../axes';
import {headColor, layerColor} from '../../draw/colors';
import {diffHeadData, type HeadData} from '../head/data';
import {loadHeadData} from '../head/spec';
import {HeadView} from '../head/view';
import {decodeIntList, encodeIntList, type UrlState} from '../../state';
import type {Loaded, ViewHost} from '../spec';
import {defineView, paneTitles} from '../spec';
import type {Overview} from '../../types';
import {pooledWeighting} from '../../weighting';
import {diffModelData, modelData} from './data';
import type {ThumbStyle} from './draw';
import {ModelView} from './view';

/** The model view's own state: layers / heads included (null: all), the opened head detail, thumbnails. */
export interface ModelState {
  modelLayers: number[] | null;
  modelHeads: number[] | null;
  /** Head detail opened from a thumbnail: [layer, head]. */
  detail: [number, number] | null;
  thumbs: ThumbStyle;
}

export const modelUrl: UrlState<ModelState> = {
  keys: ['mlayers', 'mheads', 'detail', 'thumbs'],
  parse(get) {
    const ml = get('mlayers');
    const mh = get('mheads');
    const det = /^(\d+)\.(\d+)$/.exec(get('detail') ?? '');
    const th = get('thumbs');
    return {
      modelLayers: ml !== undefined ? decodeIntList(ml) : null,
      modelHeads: mh !== undefined ? decodeIntList(mh) : null,
      detail: det ? [Number(det[1]), Number(det[2])] : null,
      thumbs: th === 'lines' || th === 'heat' ? th : 'auto',
    };
  },
  write(s) {
    const out: [string, string][] = [];
    if (s.modelLayers) out.push(['mlayers', encodeIntList(s.modelLayers)]);
    if (s.modelHeads) out.push(['mheads', encodeIntList(s.modelHeads)]);
    if (s.detail) out.push(['detail', `${s.detail[0]}.${s.detail[1]}`]);
    if (s.thumbs !== 'auto') out.push(['thumbs', s.thumbs]);
    return out;
  },
  reconcile(s, info) {
    const keep = (xs: number[] | null, n: number) => {
      const kept = xs?.filter((x) => x < n);
      return kept?.length ? kept : null;
    };
    const detail = s.detail && s.detail[0] < info.layers && s.detail[1] < info.heads ? s.detail : null;
    return {...s, detail, modelLayers: keep(s.modelLayers, info.layers), modelHeads: keep(s.modelHeads, info.heads)};
  },
  // another kind has other layers and heads: the detail closes
  reset: (s, changed) => (changed.has('kind') ? {...s, detail: null} : s),
};

/** A record's overview, weighted as `host.weighting` (a long layer's: raw weights, all it serves). */
export function loadOverview(host: Pick<ViewHost, 'source' | 'weighting'>, x: Loaded): Promise<Overview> {
  return host.source.overview(x.ref, x.kind, pooledWeighting(kindInfo(x.header, x.kind), host.weighting));
}

function makeModelView(host: ViewHost<ModelState>): ModelView {
  return new ModelView({
    theme: host.theme,
    style: host.state.thumbs,
    detail: host.state.detail,
    onDetail: (d) => {
      host.remember({}, {detail: d});
      host.redraw();
    },
    onInclude: (layers, heads) => host.update({}, {modelLayers: layers, modelHeads: heads}),
    onStyle: (s) => {
      host.remember({}, {thumbs: s});
      for (const v of host.shown()) if (v instanceof ModelView) v.setStyle(s);
    },
  });
}

export const modelSpec = defineView<ModelState>({
  name: 'model',
  label: 'Model view',
  controls: ['filter', 'tokens', 'weighting'],
  compare: ['side', 'diff'],
  url: modelUrl,
  weightingLabel: (info, w) =>
    w !== 'value'
      ? 'raw weights'
      : info.layout !== 'long'
        ? 'value-weighted (thumbnails and head detail)'
        : info.exact !== false
          ? 'overview: raw weights; value-weighted in exact windows (the head detail’s hovered rows)'
          : 'raw weights: this long layer has no exact windows, where value weighting is computed',
  async show(host, a, b, mode) {
    const s = {...host.sel, ...host.state};
    const diff = !!b && mode === 'diff';
    const model = async (x: Loaded) => modelData(await loadOverview(host, x), buildAxes(x.header, x.kind, s), s.modelLayers, s.modelHeads);
    const ma = await model(a);
    const mb = b ? await model(b) : null;
    const info = kindInfo(a.header, a.kind);
    // the head detail of the clicked thumbnail: a head view of that layer and head
    const detailFor = async (x: Loaded): Promise<HeadData | null> => (s.detail ? loadHeadData(host, x, s.detail[0], s.detail[1]) : null);
    let details: (HeadData | null)[];
    if (b && diff) {
      const [d1, d2] = await Promise.all([detailFor(a), detailFor(b)]);
      details = [d1 && d2 ? diffHeadData(d1, d2) : null];
    } else {
      details = await Promise.all([detailFor(a), ...(b ? [detailFor(b)] : [])]);
    }
    if (!host.current()) return;
    const datas = mb && diff ? [diffModelData(ma, mb)] : mb ? [ma, mb] : [ma];
    const views = host.panes(`model-${datas.length}`, () => datas.map(() => makeModelView(host)), b && !diff ? paneTitles(a, b) : undefined);
    views.forEach((v, i) => {
      v.setStyle(s.thumbs);
      v.setInclude(info.layers, info.heads, s.modelLayers, s.modelHeads);
      const dd = details[i];
      if (dd && s.detail) {
        const layer = s.detail[0];
        const detailColor = dd.signed ? headColor : () => layerColor(layer, info.layers);
        const hv = new HeadView({theme: host.theme, colorOf: detailColor, active: null, topk: s.topk, swatches: false, testid: `model-detail-head-${i}`});
        v.setDetail(s.detail, hv.el); // attach first: a tall detail virtualises against its scrolling panel
        hv.setData(dd);
      } else v.setDetail(null, null);
      v.setData(datas[i]);
    });
  },
});
