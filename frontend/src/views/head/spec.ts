// Head view: one layer, every head (or B − A, or two records side by side).
import {buildAxes, kindInfo, sameTokens} from '../../axes';
import {headColor} from '../../draw/colors';
import type {ViewHost, Loaded, ViewSpec} from '../spec';
import {paneTitles} from '../spec';
import {diffHeadData, headData, type HeadData} from './data';
import {HeadView} from './view';

/** One layer's attention (or one head of it) of a record, under the selection's token filters. */
export async function loadHeadData(host: ViewHost, x: Loaded, layer: number, head?: number): Promise<HeadData> {
  const att = await host.source.attention(x.ref, x.kind, layer, head);
  return headData(att, buildAxes(x.header, x.kind, host.sel), kindInfo(x.header, x.kind).heads);
}

function makeHeadView(host: ViewHost, testid: string): HeadView {
  return new HeadView({
    theme: host.theme,
    colorOf: headColor,
    active: host.sel.heads,
    topk: host.sel.topk,
    testid,
    onActiveChange: (active) => {
      host.remember({heads: active});
      for (const v of host.shown()) if (v instanceof HeadView) v.setActive(active);
    },
    onHover: (side, i) => {
      for (const v of host.shown()) if (v instanceof HeadView && v.el.dataset.testid !== testid) v.setHover(side, i);
    },
  });
}

export const headSpec: ViewSpec = {
  name: 'head',
  label: 'Head view',
  controls: ['layer', 'topk', 'filter', 'tokens'],
  compare: ['side', 'diff'],
  async show(host, a, b, mode) {
    const layer = host.sel.layer;
    const da = await loadHeadData(host, a, layer);
    const db = b ? await loadHeadData(host, b, layer) : null;
    if (!host.current()) return;
    let datas: HeadData[];
    let key: string;
    if (db && mode === 'diff') {
      if (!sameTokens(a.header, b!.header)) throw new Error('Cannot show B − A: the two records have different tokens.');
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
  },
};
