// Matrix view: one head of one layer as a zoomable query × key heatmap (long records: the stored pyramid,
// then exact tiles rebuilt from q/k; short ones: the stored matrix). Compare: side by side (one viewport) or
// B − A. The viewport is kept in the URL (`mz=y0:y1,x0:x1`, tokens).
import {kindInfo, sameTokens} from '../../axes';
import type {Grid} from '../../types';
import type {Loaded, ViewHost, ViewSpec} from '../spec';
import {paneTitles} from '../spec';
import {diffMatrixData, layerMask, type MatrixData} from './data';
import {MatrixView} from './view';
import type {Viewport} from './zoom';

/** `mz` ↔ viewport: "y0:y1,x0:x1" in whole tokens. */
export function parseViewport(s: string | undefined): Viewport | null {
  const m = /^(\d+):(\d+),(\d+):(\d+)$/.exec(s ?? '');
  if (!m) return null;
  const [y0, y1, x0, x1] = m.slice(1).map(Number);
  return y1 > y0 && x1 > x0 ? {x0, x1, y0, y1} : null;
}

export function formatViewport(v: Viewport): string {
  return `${Math.floor(v.y0)}:${Math.ceil(v.y1)},${Math.floor(v.x0)}:${Math.ceil(v.x1)}`;
}

export async function loadMatrixData(host: ViewHost, x: Loaded, layer: number, head: number): Promise<MatrixData> {
  const src = host.source;
  const info = kindInfo(x.header, x.kind);
  const queryLabels = x.header.sequences[info.query] ?? [];
  const keyLabels = x.header.sequences[info.key] ?? [];
  const q = info.q_len ?? queryLabels.length;
  const k = info.k_len ?? keyLabels.length;
  const mask = layerMask(x.header, x.kind, layer);
  const notes: string[] = [];
  if (host.sel.filter !== 'all' || host.sel.hideSpecial || host.sel.merge) notes.push('Token filters and word merging do not apply to the matrix view: it shows every token of the record.');
  if (info.layout !== 'long') {
    const att = await src.attention(x.ref, x.kind, layer, head);
    const data = att.head(head);
    return {
      layer, head, q, k, queryLabels, keyLabels, long: false, exact: true, mask, notes,
      base: {rows: att.q, cols: att.k, data},
      loadRow: async (i) => data.slice(i * att.k, (i + 1) * att.k),
      baseLabel: `stored dense (${att.q} × ${att.k})`,
    };
  }
  if (!src.pyramid) throw new Error('This data source cannot serve long (format v3) records.');
  const exact = info.exact !== false && !!src.window;
  const pyr = await src.pyramid(x.ref, x.kind, layer, head, 0);
  const win = (rows: [number, number], cols: [number, number]): Promise<Grid> => src.window!(x.ref, x.kind, layer, head, rows, cols);
  let loadRow: (i: number) => Promise<Float32Array>;
  if (exact) loadRow = async (i) => (await win([i, i + 1], [0, k])).data;
  else {
    if (!src.topk) throw new Error('This data source cannot serve top-k rows.');
    notes.push('Exact windows are not available for this layer (no q/k stored, or a learned position bias): the pyramid and each row’s stored top-k are shown.');
    loadRow = async (i) => {
      const t = await src.topk!(x.ref, x.kind, layer, head);
      const row = new Float32Array(k);
      for (let r = 0; r < t.k; r++) row[t.index[i * t.k + r]] = t.values[i * t.k + r];
      return row;
    };
  }
  const [bq, bk] = [pyr.rows, pyr.cols];
  return {
    layer, head, q, k, queryLabels, keyLabels, long: true, exact, mask, notes,
    base: pyr,
    loadTile: exact ? async (t) => (await win([t.r0, t.r1], [t.c0, t.c1])).data : undefined,
    loadRow,
    baseLabel: `pyramid level 0 (${bq} × ${bk} bins of ~${Math.round(q / bq)} × ${Math.round(k / bk)} tokens: keys summed, queries averaged)`,
  };
}

let urlTimer: ReturnType<typeof setTimeout> | null = null;

function makeMatrixView(host: ViewHost, testid: string, viewport: Viewport | null): MatrixView {
  return new MatrixView({
    theme: host.theme,
    testid,
    viewport,
    onViewport: (v) => {
      for (const o of host.shown()) if (o instanceof MatrixView && o.el.dataset.testid !== testid) o.setViewport(v);
      if (urlTimer) clearTimeout(urlTimer);
      urlTimer = setTimeout(() => host.remember({extra: {...host.sel.extra, mz: formatViewport(v)}}), 250);
    },
    onHover: (cell) => {
      for (const o of host.shown()) if (o instanceof MatrixView && o.el.dataset.testid !== testid) o.setHover(cell);
    },
    onStatus: testid === 'matrix-view' ? (t) => host.status?.(t) : undefined,
  });
}

export const matrixSpec: ViewSpec = {
  name: 'matrix',
  label: 'Matrix',
  controls: ['layer', 'neuronHead'],
  compare: ['side', 'diff'],
  exportName: (s) => `_L${s.layer}_H${s.neuronHead}`,
  async show(host, a, b, mode) {
    const {layer, neuronHead: head} = host.sel;
    const da = await loadMatrixData(host, a, layer, head);
    const db = b ? await loadMatrixData(host, b, layer, head) : null;
    if (!host.current()) return;
    let datas: MatrixData[];
    let key: string;
    if (db && mode === 'diff') {
      if (!sameTokens(a.header, b!.header)) throw new Error('Cannot show B − A: the two records have different tokens.');
      datas = [diffMatrixData(da, db)];
      key = 'matrix-diff';
    } else {
      datas = db ? [da, db] : [da];
      key = db ? 'matrix-side' : 'matrix';
    }
    const vp = parseViewport(host.sel.extra.mz);
    const testids = ['matrix-view', 'matrix-view-b'];
    const views = host.panes(key, () => datas.map((_, i) => makeMatrixView(host, testids[i], vp)), db && mode !== 'diff' ? paneTitles(a, b!) : undefined);
    views.forEach((v, i) => v.setData(datas[i], vp));
  },
};
