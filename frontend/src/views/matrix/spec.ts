// Matrix view: one head of one layer as a zoomable query × key heatmap (long records: the stored pyramid,
// then exact tiles rebuilt from q/k; short ones: the stored matrix). Compare: side by side (one viewport) or
// B − A. The viewport is kept in the URL (`mz=y0:y1,x0:x1`, tokens), small multiples (`mh`) and a long
// layer's overview pooling (`magg=max`: the largest weight per pyramid block; absent: the mean).
import {tokenLabels} from '../../tokens';
import {kindInfo, sameTokens} from '../../axes';
import type {Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import type {Grid, KindInfo, PyramidAgg} from '../../types';
import type {UrlState} from '../../state';
import type {Loaded, ViewHost} from '../spec';
import {defineView, paneTitles} from '../spec';
import {el, type ViewBase} from '../common';
import {AGG_HELP, AGG_LABELS, AGG_MEAN_ONLY, AGGS, aggProblem, compareAggOutcome, effectiveAgg, parseAgg} from './agg';
import {diffMatrixData, layerMask, shareExtent, type MatrixData} from './data';
import {MAX_MULTI} from './multi';
import {MatrixMultiView} from './multi-view';
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

/**
 * One head of a record weighted as `host.weighting`: the stored matrix, or a long layer's pyramid (pooled as
 * `asked` where the record stores a max pyramid, else the mean) and top-k (raw weights, all they serve)
 * under exact tiles and rows from /window (weighted).
 */
export async function loadMatrixData(host: Pick<ViewHost, 'source' | 'sel' | 'weighting'>, x: Loaded, layer: number, head: number, asked: PyramidAgg = 'mean'): Promise<MatrixData> {
  const src = host.source;
  const w = host.weighting;
  const info = kindInfo(x.header, x.kind);
  const queryLabels = tokenLabels(x.header, info.query);
  const keyLabels = tokenLabels(x.header, info.key);
  const q = info.q_len ?? queryLabels.length;
  const k = info.k_len ?? keyLabels.length;
  const mask = layerMask(x.header, x.kind, layer);
  const notes: string[] = [];
  if (host.sel.filter !== 'all' || host.sel.hideSpecial || host.sel.merge) notes.push('Token filters and word merging do not apply to the matrix view: it shows every token of the record.');
  if (info.layout !== 'long') {
    const att = await src.attention(x.ref, x.kind, layer, head, w);
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
  const agg = effectiveAgg(asked, info);
  const pyr = await src.pyramid(x.ref, x.kind, layer, head, 0, agg);
  notes.push(`${AGG_LABELS[agg].replace(/^o/, 'O')}${agg === 'max' ? '; exact tiles, once zoomed in, show each pixel’s mass as before' : asked === 'max' ? `: the largest weight per block was asked for, but ${AGG_MEAN_ONLY}` : ''}.`);
  const win = (rows: [number, number], cols: [number, number]): Promise<Grid> => src.window!(x.ref, x.kind, layer, head, rows, cols, w);
  if (w === 'value') notes.push(exact ? 'Value-weighted in exact tiles and rows; the pyramid underneath is raw weights (all a long layer’s pyramid serves).' : 'Raw weights: this long layer has no exact windows, where value weighting is computed.');
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
    agg,
    loadTile: exact ? async (t) => (await win([t.r0, t.r1], [t.c0, t.c1])).data : undefined,
    loadRow,
    baseLabel: `pyramid level 0 (${bq} × ${bk} bins of ~${Math.round(q / bq)} × ${Math.round(k / bk)} tokens; ${AGG_LABELS[agg]})`,
  };
}

/** Small multiples (URL `mh`): '' one head (the Head selector's), `sel` the selected heads, `all` the layer's. */
export type MultiMode = '' | 'sel' | 'all';

export function multiMode(extra: Readonly<Record<string, string | undefined>>): MultiMode {
  return extra.mh === 'sel' || extra.mh === 'all' ? extra.mh : '';
}

/**
 * The matrix view's own state: its viewport (`mz`; null: the whole sequence), small multiples (`mh`) and a
 * long layer's overview pooling (`magg`; kept while a record cannot use it, as the weighting toggle).
 */
export interface MatrixState {
  viewport: Viewport | null;
  multi: MultiMode;
  agg: PyramidAgg;
}

export const matrixUrl: UrlState<MatrixState> = {
  keys: ['mz', 'mh', 'magg'],
  parse: (get) => ({viewport: parseViewport(get('mz')), multi: multiMode({mh: get('mh')}), agg: parseAgg(get('magg'))}),
  write: ({viewport, multi, agg}) => [
    ...(viewport ? [['mz', formatViewport(viewport)] as [string, string]] : []),
    ...(multi ? [['mh', multi] as [string, string]] : []),
    ...(agg === 'max' ? [['magg', 'max'] as [string, string]] : []),
  ],
};

let urlTimer: ReturnType<typeof setTimeout> | null = null;

function rememberViewport(host: ViewHost<MatrixState>, v: Viewport): void {
  if (urlTimer) clearTimeout(urlTimer);
  urlTimer = setTimeout(() => host.remember({}, {viewport: parseViewport(formatViewport(v))}), 250);
}

/** The heads drawn as small multiples: the selected ones (`heads`; null: all) or all, at most MAX_MULTI. */
export function multiHeads(mode: MultiMode, heads: number, selected: readonly number[] | null): {shown: number[]; of: number} {
  const all = Array.from({length: heads}, (_, h) => h);
  const want = mode === 'sel' && selected ? selected.filter((h) => h >= 0 && h < heads) : all;
  return {shown: want.slice(0, MAX_MULTI), of: want.length};
}

/** The heads selector of the matrix view's toolbar (changes the URL's `mh` and redraws). */
function headsControl(host: ViewHost<MatrixState>): HTMLElement {
  const sel = el('select', {'data-testid': 'matrix-heads', title: 'One head, or several as small multiples sharing one viewport'});
  for (const [v, text] of [['', 'One head'], ['sel', 'Selected heads'], ['all', `All heads (≤ ${MAX_MULTI})`]]) sel.appendChild(el('option', {value: v, text}));
  sel.value = host.state.multi;
  sel.addEventListener('change', () => host.update({}, {multi: multiMode({mh: sel.value})}));
  return sel;
}

/** The overview selector (`magg`): mean / max, enabled for a long kind storing a max pyramid (`syncAggControl`). */
function aggControl(host: ViewHost<MatrixState>): HTMLElement {
  const sel = el('select', {'data-testid': 'matrix-agg', title: AGG_HELP});
  for (const a of AGGS) sel.appendChild(el('option', {value: a, text: a}));
  sel.value = host.state.agg;
  sel.addEventListener('change', () => host.update({}, {agg: parseAgg(sel.value)}));
  return el('label', {class: 'matrix-agg', title: AGG_HELP}, 'overview ', sel);
}

/**
 * Shows in the overview selector under `root` what record A (`info`) gets of `asked`: disabled with the reason
 * as its title and `data-unavailable` (showing mean) when A's kind has no max pyramid.
 */
export function syncAggControl(root: ParentNode, info: Pick<KindInfo, 'layout' | 'pyramid_max'>, asked: PyramidAgg): void {
  const sel = root.querySelector<HTMLSelectElement>('[data-testid="matrix-agg"]');
  if (!sel) return;
  const why = aggProblem(info);
  sel.value = why ? 'mean' : asked;
  sel.disabled = !!why;
  sel.title = why ?? AGG_HELP;
  if (why) sel.dataset.unavailable = why;
  else delete sel.dataset.unavailable;
}

/** Compared B in a pane of its own as a message (B cannot be drawn with A's overview pooling). */
class MessagePane implements ViewBase {
  readonly el: HTMLElement;
  constructor(testid: string) {
    this.el = el('div', {class: 'pane-message', 'data-testid': testid, role: 'note'});
  }
  set(text: string): void {
    this.el.textContent = text;
  }
  setTheme(_t: Theme): void {}
  exportSize(): {width: number; height: number} {
    return {width: 0, height: 0};
  }
  paint(_ctx: Ctx): void {}
  dispose(): void {}
}

function makeMatrixView(host: ViewHost<MatrixState>, testid: string, viewport: Viewport | null): MatrixView {
  return new MatrixView({
    theme: host.theme,
    testid,
    viewport,
    controls: testid === 'matrix-view' ? [headsControl(host), aggControl(host)] : [],
    onViewport: (v) => {
      for (const o of host.shown()) if (o instanceof MatrixView && o.el.dataset.testid !== testid) o.setViewport(v, false, true);
      rememberViewport(host, v);
    },
    onHover: (cell) => {
      for (const o of host.shown()) if (o instanceof MatrixView && o.el.dataset.testid !== testid) o.setHover(cell);
    },
    onStatus: testid === 'matrix-view' ? (t) => host.status?.(t) : undefined,
  });
}

export const matrixSpec = defineView<MatrixState>({
  name: 'matrix',
  label: 'Matrix',
  controls: ['layer', 'neuronHead', 'weighting'],
  compare: ['side', 'diff'],
  url: matrixUrl,
  weightingLabel: (info, w, s) =>
    w !== 'value'
      ? 'raw weights'
      : info.layout !== 'long'
        ? 'value-weighted'
        : s.multi
          ? 'raw weights: small multiples of a long layer are its pyramids; One head shows value-weighted exact tiles'
          : info.exact !== false
          ? 'pyramid: raw weights; value-weighted in exact windows (tiles, hovered rows)'
          : 'raw weights: this long layer has no exact windows, where value weighting is computed',
  exportName: (s) => `_L${s.layer}_H${s.neuronHead}`,
  async show(host, a, b, mode) {
    const {layer, neuronHead: head} = host.sel;
    const {multi, viewport: vp, agg: asked} = host.state;
    const infoA = kindInfo(a.header, a.kind);
    if (multi && !b) {
      // small multiples of one record
      const {shown, of} = multiHeads(multi, infoA.heads, host.sel.heads);
      const ds = await Promise.all(shown.map((h) => loadMatrixData(host, a, layer, h, asked)));
      if (!host.current()) return;
      const notes: string[] = [];
      if (of > shown.length) notes.push(`The first ${shown.length} of ${of} heads are shown.`);
      if (ds[0].long) notes.push('Small multiples show each head’s stored pyramid; the single-head view (One head) fetches exact tiles.');
      const [view] = host.panes('matrix-multi', () => [new MatrixMultiView({theme: host.theme, viewport: vp, controls: [headsControl(host), aggControl(host)], onViewport: (v) => rememberViewport(host, v)})]);
      syncAggControl(view.el, infoA, asked);
      view.setData(ds, notes, vp);
      host.status?.(`matrix L${layer} heads ${shown.join(', ')} (small multiples): ${ds[0].long ? `pyramid level 0 per head; ${AGG_LABELS[ds[0].agg ?? 'mean']}` : 'stored dense'}`);
      return;
    }
    // a comparison never mixes overview poolings: A max-pooled, B without a max pyramid is a message
    const agg = effectiveAgg(asked, infoA);
    const bOut = b && compareAggOutcome(agg, {info: kindInfo(b.header, b.kind), ref: b.ref}, mode);
    if (bOut?.error) throw new Error(bOut.text);
    const da = await loadMatrixData(host, a, layer, head, asked);
    const db = b && !bOut ? await loadMatrixData(host, b, layer, head, agg) : null;
    if (!host.current()) return;
    if (b && bOut) {
      const panes = host.panes<ViewBase>('matrix-side-b-message', () => [makeMatrixView(host, 'matrix-view', vp), new MessagePane('matrix-agg-b-missing')], paneTitles(a, b));
      const [va, msg] = panes as [MatrixView, MessagePane];
      syncAggControl(va.el, infoA, asked);
      msg.set(bOut.text);
      va.setData(da, vp);
      return;
    }
    if (multi) da.notes.push('Small multiples show one record: comparing, the matrix view shows the Head selector’s head.');
    let datas: MatrixData[];
    let key: string;
    if (db && mode === 'diff') {
      if (!sameTokens(a.header, b!.header)) throw new Error('Cannot show B − A: the two records have different tokens.');
      datas = [diffMatrixData(da, db)];
      key = 'matrix-diff';
    } else {
      datas = db ? [da, db] : [da];
      // one viewport over both: a shorter record's cells past its tokens are padding (grey)
      if (db) shareExtent(datas);
      key = db ? 'matrix-side' : 'matrix';
    }
    const testids = ['matrix-view', 'matrix-view-b'];
    const views = host.panes(key, () => datas.map((_, i) => makeMatrixView(host, testids[i], vp)), db && mode !== 'diff' ? paneTitles(a, b!) : undefined);
    syncAggControl(views[0].el, infoA, asked);
    views.forEach((v, i) => v.setData(datas[i], vp));
  },
});
