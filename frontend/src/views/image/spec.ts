// Image view: attention from one query token to the image's patches, over the image (records with
// header.image); side by side or B − A across checkpoints and runs.
import {kindInfo, sameTokens} from '../../axes';
import {imageOf} from '../../image';
import {parseIntStrict, type ShellKey, type UrlState} from '../../state';
import type {Loaded, ViewHost} from '../spec';
import {defineView, paneTitles} from '../spec';
import {defaultQuery, diffImageData, diffProblem, IMAGE_AGGS, imageData, imageUnavailable, meanRows, type ImageAgg, type ImageData} from './data';
import {decodeImage, ImageView} from './view';

/** The image view's own state: the query token (null: CLS, the first non-patch token), what is shown, opacity. */
export interface ImageState {
  query: number | null;
  agg: ImageAgg;
  opacity: number;
}

export const DEFAULT_OPACITY = 0.7;
/** The rollout the image view shows (the rollout view's defaults: Abnar & Zuidema's). */
const ROLLOUT = {residual: 0.5, fusion: 'mean'} as const;

export const imageUrl: UrlState<ImageState> = {
  keys: ['iq', 'ia', 'io'],
  parse(get) {
    const agg = get('ia');
    const o = get('io');
    const op = o !== undefined && /^(?:0?\.\d{1,2}|1(?:\.0{1,2})?)$/.test(o) ? Number(o) : NaN;
    return {
      query: parseIntStrict(get('iq')) ?? null,
      agg: agg && (IMAGE_AGGS as readonly string[]).includes(agg) ? (agg as ImageAgg) : 'mean',
      opacity: op >= 0.1 && op <= 1 ? op : DEFAULT_OPACITY,
    };
  },
  write: (s) => [
    ...(s.query !== null ? [['iq', String(s.query)] as [string, string]] : []),
    ...(s.agg !== 'mean' ? [['ia', s.agg] as [string, string]] : []),
    ...(s.opacity !== DEFAULT_OPACITY ? [['io', String(s.opacity)] as [string, string]] : []),
  ],
  // a query past the record's tokens: back to the default
  reconcile: (s, info) => (s.query !== null && info.q_len != null && s.query >= info.q_len ? {...s, query: null} : s),
  // other tokens: the query goes back to the default
  reset: (s, changed) => (['example', 'kind'].some((k) => changed.has(k as ShellKey)) ? {...s, query: null} : s),
};

/** The query token shown for record `x`: the state's when it is one of its tokens, else the default. */
export function queryOf(x: Loaded, query: number | null): number {
  const info = kindInfo(x.header, x.kind);
  const n = x.header.sequences[info.query]?.length ?? 0;
  return query !== null && query >= 0 && query < n ? query : defaultQuery(x.header, info.query);
}

/**
 * The query's row over every key (one head, the mean of the selected heads, or the rollout), and what it
 * is. A long record's rows are exact from q/k (/window), else its stored top-k.
 */
export async function queryRow(host: Pick<ViewHost<ImageState>, 'source' | 'sel' | 'weighting'>, x: Loaded, query: number, agg: ImageAgg): Promise<{row: Float32Array; what: string; notes: string[]}> {
  const src = host.source;
  const w = host.weighting;
  const info = kindInfo(x.header, x.kind);
  const {layer, neuronHead} = host.sel;
  const k = info.k_len ?? x.header.sequences[info.key]?.length ?? 0;
  const notes: string[] = [];
  if (agg === 'rollout') {
    if (info.query !== info.key) throw new Error('Attention rollout needs self-attention (one sequence for queries and keys): choose the encoder or decoder kind, or show one head or the mean of heads.');
    if (w === 'value') notes.push('The rollout is computed from the raw weights (the weighting toggle does not apply to it).');
    const r = await src.rollout(x.ref, x.kind, ROLLOUT.residual, ROLLOUT.fusion);
    if (r.n !== k) throw new Error(`The rollout of this record covers ${r.n} bins, not its ${k} tokens (a long record's rollout is pooled): show one head or the mean of heads.`);
    return {row: r.data.slice(query * r.n, (query + 1) * r.n), what: `rollout over all layers (residual ${ROLLOUT.residual}, ${ROLLOUT.fusion} fusion)`, notes};
  }
  const all = Array.from({length: info.heads}, (_, h) => h);
  const sel = (host.sel.heads ?? all).filter((h) => h >= 0 && h < info.heads);
  const heads = agg === 'head' ? [Math.min(neuronHead, info.heads - 1)] : sel.length ? sel : all;
  const what = agg === 'head' ? `L${layer} H${heads[0]}` : `L${layer}, mean of ${heads.length === info.heads ? `all ${heads.length} heads` : `heads ${heads.join(', ')}`}`;
  let rows: Float32Array[];
  if (info.layout === 'long') {
    if (info.exact !== false && src.window) {
      rows = await Promise.all(heads.map(async (h) => (await src.window!(x.ref, x.kind, layer, h, [query, query + 1], [0, k], w)).data));
      notes.push('Long record: the query’s exact row, recomputed from q/k.');
    } else if (src.topk) {
      rows = await Promise.all(
        heads.map(async (h) => {
          const t = await src.topk!(x.ref, x.kind, layer, h);
          const row = new Float32Array(k);
          for (let r = 0; r < t.k; r++) row[t.index[query * t.k + r]] = t.values[query * t.k + r];
          return row;
        }),
      );
      notes.push(`Exact rows are not available for this layer (no q/k, or a learned position bias): the overlay shows the row’s stored top-k${w === 'value' ? ' (raw weights: value weighting needs exact rows)' : ''}, other patches 0.`);
    } else throw new Error('This data source cannot serve long (format v3) records.');
  } else {
    const att = await src.attention(x.ref, x.kind, layer, agg === 'head' ? heads[0] : undefined, w);
    rows = heads.map((h) => att.head(h).slice(query * att.k, (query + 1) * att.k));
  }
  return {row: meanRows(rows), what, notes};
}

/** The record's image decoded; a clear error (naming the image) when it is missing or corrupt. */
async function loadPixels(host: ViewHost<ImageState>, x: Loaded): Promise<HTMLCanvasElement> {
  const im = imageOf(x.header)!;
  try {
    if (!host.source.image) throw new Error('this data source serves no images');
    return await decodeImage(await host.source.image(x.ref), im);
  } catch (e) {
    throw new Error(`This record’s image could not be loaded (${x.ref.run} @ ${x.ref.step}): ${(e as Error).message}. The other views do not need it.`);
  }
}

async function load(host: ViewHost<ImageState>, x: Loaded, query: number): Promise<ImageData> {
  const why = imageUnavailable(x.header, x.kind);
  if (why) throw new Error(`${x.ref.run} @ ${x.ref.step}: ${why}`);
  const info = kindInfo(x.header, x.kind);
  const {row, what, notes} = await queryRow(host, x, query, host.state.agg);
  return imageData({header: x.header, querySeq: info.query, query, row, what, notes});
}

function makeView(host: ViewHost<ImageState>, testid: string): ImageView {
  return new ImageView({
    theme: host.theme,
    agg: host.state.agg,
    opacity: host.state.opacity,
    testid,
    onQuery: (pos) => host.update({}, {query: pos}),
    onAgg: (agg) => host.update({}, {agg}),
    onOpacity: (opacity) => host.update({}, {opacity}),
    onHover: (p) => {
      for (const v of host.shown()) if (v instanceof ImageView && v.el.dataset.testid !== testid) v.setHover(p);
    },
  });
}

export const imageSpec = defineView<ImageState>({
  name: 'image',
  label: 'Image',
  controls: ['layer', 'neuronHead', 'weighting'],
  compare: ['side', 'diff'],
  url: imageUrl,
  weightingLabel: (info, w, s) =>
    w !== 'value'
      ? 'raw weights'
      : s.agg === 'rollout'
        ? 'rollout: raw weights (the weighting does not apply to it)'
        : info.layout !== 'long' || info.exact !== false
          ? 'value-weighted'
          : 'raw weights (stored top-k): this long layer has no exact rows, where value weighting is computed',
  unavailable: imageUnavailable,
  exportName: (sel, s) => `_L${sel.layer}_${s.agg}_q${s.query ?? 'cls'}`,
  async show(host, a, b, mode) {
    const query = queryOf(a, host.state.query);
    if (b && mode === 'diff') {
      if (diffProblem(a.header, b.header)) throw new Error(diffProblem(a.header, b.header)!);
      if (!sameTokens(a.header, b.header)) throw new Error('Cannot show B − A: the two records have different tokens.');
    }
    const da = await load(host, a, query);
    const db = b ? await load(host, b, query) : null;
    const pa = await loadPixels(host, a);
    const pb = b && mode !== 'diff' ? await loadPixels(host, b) : null;
    if (!host.current()) return;
    const diff = !!db && mode === 'diff';
    // side by side: one colour scale for both panes (the larger of their largest weights)
    const shared = db ? Math.max(da.max, db.max) : da.max;
    const datas = db ? (diff ? [diffImageData(da, db)] : [{...da, max: shared}, {...db, max: shared}]) : [da];
    const pixels = diff || !db ? [pa] : [pa, pb];
    const testids = ['image-view', 'image-view-b'];
    const key = db ? (diff ? 'image-diff' : 'image-side') : 'image';
    const views = host.panes(key, () => datas.map((_, i) => makeView(host, testids[i])), db && !diff ? paneTitles(a, b!) : undefined);
    views.forEach((v, i) => v.setData(datas[i], pixels[i], host.state.opacity));
    const info = kindInfo(a.header, a.kind);
    host.status?.(`image view: ${datas[0].what}; query ${query} “${da.queryLabel}”; ${info.layout === 'long' && host.state.agg !== 'rollout' ? (info.exact !== false ? 'exact row from q/k' : 'stored top-k') : 'stored dense'}`);
  },
});
