// Model view: every layer × head of the pooled overview, with a head detail of a clicked thumbnail.
import {buildAxes, kindInfo} from '../../axes';
import {headColor, layerColor} from '../../draw/colors';
import {diffHeadData, type HeadData} from '../head/data';
import {loadHeadData} from '../head/spec';
import {HeadView} from '../head/view';
import type {Loaded, ViewHost, ViewSpec} from '../spec';
import {paneTitles} from '../spec';
import {diffModelData, modelData} from './data';
import {ModelView} from './view';

function makeModelView(host: ViewHost): ModelView {
  return new ModelView({
    theme: host.theme,
    style: host.sel.thumbs,
    detail: host.sel.detail,
    onDetail: (d) => {
      host.remember({detail: d});
      host.redraw();
    },
    onInclude: (layers, heads) => host.update({modelLayers: layers, modelHeads: heads}),
    onStyle: (s) => {
      host.remember({thumbs: s});
      for (const v of host.shown()) if (v instanceof ModelView) v.setStyle(s);
    },
  });
}

export const modelSpec: ViewSpec = {
  name: 'model',
  label: 'Model view',
  controls: ['filter', 'tokens'],
  compare: ['side', 'diff'],
  async show(host, a, b, mode) {
    const s = host.sel;
    const diff = !!b && mode === 'diff';
    const model = async (x: Loaded) => modelData(await host.source.overview(x.ref, x.kind), buildAxes(x.header, x.kind, s), s.modelLayers, s.modelHeads);
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
};
