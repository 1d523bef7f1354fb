// The matrix view's overview pooling (URL `magg=max`): its URL round trip, when it is disabled, which pyramid
// requests carry `agg=max` (only when chosen, only for long kinds with a max pyramid), comparisons (one
// pooling on both sides), the renderer and hover over a max pyramid, and the notebook page's max pyramid.
import {describe, expect, it} from 'vitest';
import {HttpSource} from '../src/api';
import {EmbeddedSource, poolPyramidMax} from '../src/sources/embedded';
import {AssetRecord, crc32c} from '../src/sources/record';
import {defaultSelection, readSelectionFromHash, writeSelectionToHash} from '../src/state';
import {LIGHT} from '../src/draw/colors';
import type {Header, IndexResponse, KindInfo, PyramidAgg} from '../src/types';
import {AGG_DENSE, AGG_LABELS, AGG_MEAN_ONLY, aggProblem, compareAggOutcome, effectiveAgg} from '../src/views/matrix/agg';
import {coarseValue} from '../src/views/matrix/data';
import {renderPlot} from '../src/views/matrix/draw';
import {loadMatrixData, matrixSpec, syncAggControl} from '../src/views/matrix/spec';
import {VIEW_SPECS} from '../src/views/registry';
import type {Loaded} from '../src/views/spec';

const LUT = Array.from({length: 256}, (_, c) => c / 255);
const N = 8;
const HEADS = 2;
const LONG: Partial<KindInfo> = {layout: 'long', exact: true, pyramid_shape: [2, 2], topk: 2, kv_heads: HEADS, pyramid_max: true};

function header(kind: Partial<KindInfo> = {}): Header {
  const tokens = Array.from({length: N}, (_, i) => `t${i}`);
  return {
    version: 5, tag: 't', example: '0', step: 0, sequences: {input: tokens}, sentence_b_start: null,
    kinds: {encoder: {query: 'input', key: 'input', layers: 1, heads: HEADS, q_len: N, k_len: N, head_dim: 4, has_qk: true, overview_shape: [2, 2], layer_info: [{}], ...kind}},
  };
}

function loaded(h: Header, run = 'r', step = 0): Loaded {
  return {ref: {run, tag: 't', example: '0', step}, header: h, example: {example: '0', steps: [step], qk_steps: [step], header: h}, kind: 'encoder'};
}

/** An HttpSource over a fake backend (pyramid 2 × 2, windows of the asked shape); `calls`: the URLs asked. */
function backend() {
  const calls: URL[] = [];
  const bin = (bytes: number, shape: string) => new Response(new Uint8Array(bytes).fill(1), {headers: {'X-Attention-Shape': shape}});
  const fetchFn = async (input: string) => {
    const u = new URL(input);
    calls.push(u);
    const p = u.searchParams;
    const span = (v: string | null) => (v ?? '').split(':').map(Number).reduce((a, b) => b - a);
    switch (u.pathname.split('/').pop()) {
      case 'index':
        return new Response(JSON.stringify({version: 1, codec: {name: 'log8', lut: LUT}, runs: []}));
      case 'attention': {
        const h = p.has('head') ? 1 : HEADS;
        return bin(h * N * N, `${h},${N},${N}`);
      }
      case 'pyramid':
        return bin(4, '1,2,2');
      case 'window':
        return bin(span(p.get('rows')) * span(p.get('cols')), `1,${span(p.get('rows'))},${span(p.get('cols'))}`);
    }
    return new Response(JSON.stringify({error: 'no route'}), {status: 404});
  };
  const source = new HttpSource(new URL('http://h/data/plugin/attention/'), fetchFn);
  /** The pyramid requests, each as its `agg` parameter (null: none, the mean). */
  const aggs = () => calls.filter((u) => u.pathname.endsWith('/pyramid')).map((u) => u.searchParams.get('agg'));
  return {source, calls, aggs};
}

const host = (source: HttpSource) => ({source, sel: defaultSelection(), weighting: 'weights' as const});

describe('the overview pooling in the URL', () => {
  it('round-trips `magg=max` as the matrix view’s key; the default (mean) writes nothing; anything else reads as mean', () => {
    expect(matrixSpec.url!.keys).toContain('magg');
    for (const v of VIEW_SPECS) if (v !== matrixSpec) expect(v.url?.keys ?? []).not.toContain('magg');
    const s = readSelectionFromHash('#attention&p.attention.view=matrix&p.attention.magg=max', VIEW_SPECS);
    expect((s.views.matrix as {agg: PyramidAgg}).agg).toBe('max');
    expect(s.extra).toEqual({});
    const written = writeSelectionToHash('#attention', s, VIEW_SPECS);
    expect(written).toBe('attention&p.attention.view=matrix&p.attention.magg=max');
    expect((readSelectionFromHash('#' + written, VIEW_SPECS).views.matrix as {agg: PyramidAgg}).agg).toBe('max');
    const mean = {...s, views: {...s.views, matrix: {...(s.views.matrix as object), agg: 'mean'}}};
    expect(writeSelectionToHash('#attention', mean, VIEW_SPECS)).toBe('attention&p.attention.view=matrix');
    expect((readSelectionFromHash('#attention&p.attention.magg=bogus', VIEW_SPECS).views.matrix as {agg: PyramidAgg}).agg).toBe('mean');
    expect((readSelectionFromHash('#attention', VIEW_SPECS).views.matrix as {agg: PyramidAgg}).agg).toBe('mean');
  });
});

describe('when the control is disabled', () => {
  it('dense kinds and long kinds without pyramid_max: disabled with the reason, fetched with the mean', () => {
    expect(aggProblem(header(LONG).kinds.encoder!)).toBeNull();
    expect(aggProblem(header({...LONG, pyramid_max: undefined}).kinds.encoder!)).toBe(AGG_MEAN_ONLY);
    expect(aggProblem(header({...LONG, pyramid_max: false}).kinds.encoder!)).toBe(AGG_MEAN_ONLY);
    expect(AGG_MEAN_ONLY).toBe('this record stores only the mean pyramid (logged before format v5)');
    expect(aggProblem(header().kinds.encoder!)).toBe(AGG_DENSE);
    expect(AGG_DENSE).toBe('dense layers are drawn exactly');
    expect(effectiveAgg('max', header(LONG).kinds.encoder!)).toBe('max');
    expect(effectiveAgg('mean', header(LONG).kinds.encoder!)).toBe('mean');
    expect(effectiveAgg('max', header({...LONG, pyramid_max: undefined}).kinds.encoder!)).toBe('mean');
    expect(effectiveAgg('max', header().kinds.encoder!)).toBe('mean');
  });
  it('the select shows the reason as its title and data-unavailable, and mean', () => {
    // no DOM in these tests: the select as far as syncAggControl touches it
    const sel = {value: 'mean', disabled: false, title: '', dataset: {} as Record<string, string | undefined>};
    const root = {querySelector: (q: string) => (q === '[data-testid="matrix-agg"]' ? sel : null)} as unknown as ParentNode;
    syncAggControl(root, header({...LONG, pyramid_max: undefined}).kinds.encoder!, 'max');
    expect([sel.disabled, sel.value, sel.title, sel.dataset.unavailable]).toEqual([true, 'mean', AGG_MEAN_ONLY, AGG_MEAN_ONLY]);
    syncAggControl(root, header().kinds.encoder!, 'max');
    expect([sel.disabled, sel.title]).toEqual([true, AGG_DENSE]);
    syncAggControl(root, header(LONG).kinds.encoder!, 'max');
    expect([sel.disabled, sel.value, sel.dataset.unavailable]).toEqual([false, 'max', undefined]);
  });
});

describe('pyramid requests', () => {
  it('carry agg=max only when chosen, only for long kinds storing it; cached apart', async () => {
    const {source, calls, aggs} = backend();
    const long = loaded(header(LONG));
    const mean = await loadMatrixData(host(source), long, 0, 0);
    expect([mean.agg, mean.baseLabel.includes(AGG_LABELS.mean), mean.notes.join(' ')]).toEqual(['mean', true, expect.stringMatching(/^Overview: attention mass per block/)]);
    const max = await loadMatrixData(host(source), long, 0, 0, 'max');
    expect([max.agg, max.baseLabel.includes(AGG_LABELS.max)]).toEqual(['max', true]);
    expect(max.notes.join(' ')).toMatch(/Overview: largest weight per block \(peaks kept\)/);
    expect(aggs()).toEqual([null, 'max']); // two cache entries: agg is in the key
    await loadMatrixData(host(source), long, 0, 0, 'max');
    expect(aggs()).toEqual([null, 'max']);
    // exact tiles are unaffected
    await max.loadTile!({ti: 0, tj: 0, r0: 0, r1: N, c0: 0, c1: N});
    expect(calls.filter((u) => u.pathname.endsWith('/window')).every((u) => !u.searchParams.has('agg'))).toBe(true);
    // an older long record: the mean, and the note says why
    const old = await loadMatrixData(host(source), loaded(header({...LONG, pyramid_max: undefined}), 'old'), 0, 0, 'max');
    expect(old.agg).toBe('mean');
    expect(old.notes.join(' ')).toContain(AGG_MEAN_ONLY);
    expect(aggs()).toEqual([null, 'max', null]);
    // dense: no pyramid at all
    const dense = await loadMatrixData(host(source), loaded(header()), 0, 0, 'max');
    expect(dense.agg).toBeUndefined();
    expect(aggs()).toEqual([null, 'max', null]);
  });
});

describe('comparisons', () => {
  const b = (kind: Partial<KindInfo>) => ({info: header(kind).kinds.encoder!, ref: {run: 'b', step: 3}});
  it('use one pooling: B without a max pyramid is a message (side by side) or the error (B − A)', () => {
    expect(compareAggOutcome('max', b(LONG), 'side')).toBeNull();
    expect(compareAggOutcome('mean', b({...LONG, pyramid_max: undefined}), 'side')).toBeNull();
    expect(compareAggOutcome('max', b({}), 'side')).toBeNull(); // dense B: exact
    const side = compareAggOutcome('max', b({...LONG, pyramid_max: undefined}), 'side')!;
    expect(side.error).toBe(false);
    expect(side.text).toMatch(/^B \(b @ 3\) stores only the mean pyramid \(logged before format v5\).*switch Overview to “mean”/);
    const diff = compareAggOutcome('max', b({...LONG, pyramid_max: false}), 'diff')!;
    expect([diff.error, diff.text.startsWith('B − A is not drawn: ')]).toEqual([true, true]);
  });
});

describe('drawing a max pyramid', () => {
  it('a pixel shows the largest bin it covers (mean: the mass), hover the bin’s largest weight', async () => {
    const {source} = backend();
    const d = await loadMatrixData(host(source), loaded(header(LONG)), 0, 0, 'max');
    // one strong link in bin (1, 0), faint elsewhere
    d.base = {rows: 2, cols: 2, data: Float32Array.from([0.01, 0.01, 0.9, 0.01])};
    d.mask = {causal: false, window: null, off: 0};
    const v = {x0: 0, x1: N, y0: 0, y1: N};
    const one = renderPlot(d, v, 1, 1, LIGHT, null, 256); // one pixel over the whole plane
    expect(one.maxAbs).toBeCloseTo(0.9, 6);
    const mean = renderPlot({...d, agg: 'mean'}, v, 1, 1, LIGHT, null, 256);
    expect(mean.maxAbs).toBeCloseTo((0.01 + 0.01 + 0.9 + 0.01) / 2, 6); // keys summed, queries averaged
    expect(coarseValue(d, 5, 1).value).toBeCloseTo(0.9, 6);
    expect(coarseValue({...d, agg: 'mean'}, 5, 1).value).toBeCloseTo(0.9 / 4, 6); // per cell of a 4-key bin
  });
});

// ---- the notebook page: a long record with its max pyramid, built as format.encode_record writes it ----

async function zlib(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await new Response(new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new CompressionStream('deflate'))).arrayBuffer());
}

/** A long record: 1 layer, 1 head, 8 tokens, pyramid 4 × 4 (mean codes `i`, max codes `2i`); `max`: stores pyramid_max. */
async function longSource(max: boolean): Promise<EmbeddedSource> {
  const chunks: Uint8Array[] = [];
  let pos = 0;
  const add = (b: Uint8Array): [number, number, number] => {
    chunks.push(b);
    const e: [number, number, number] = [pos, b.length, crc32c(b)];
    pos += b.length;
    return e;
  };
  const table: Record<string, unknown> = {pyramid: [[add(await zlib(Uint8Array.from({length: 16}, (_, i) => i)))]]};
  if (max) table.pyramid_max = [[add(await zlib(Uint8Array.from({length: 16}, (_, i) => 2 * i)))]];
  const header = {
    version: 5, tag: 'attention', example: '0', step: 0, wall_time: 1, model: null, sequences: {input: Array.from({length: 8}, (_, i) => `t${i}`)}, sentence_b_start: null,
    kinds: {encoder: {query: 'input', key: 'input', layers: 1, heads: 1, q_len: 8, k_len: 8, head_dim: 2, has_qk: false, overview_shape: [4, 4], layer_info: [{}],
      layout: 'long', pyramid_shape: [4, 4], pyramid_max: max, topk: 1, exact: false}},
  };
  const head = new TextEncoder().encode(JSON.stringify({...header, chunks: {encoder: table}}));
  const frame = new Uint8Array(16);
  frame.set([0x54, 0x42, 0x41, 0x54, 0x54, 0x4e, 0, 0]);
  new DataView(frame.buffer).setUint32(8, head.length, true);
  new DataView(frame.buffer).setUint32(12, crc32c(head), true);
  const all = new Uint8Array(16 + head.length + pos);
  all.set(frame);
  all.set(head, 16);
  let p = 16 + head.length;
  for (const c of chunks) {
    all.set(c, p);
    p += c.length;
  }
  expect(AssetRecord.parse(all).header.kinds.encoder!.pyramid_max).toBe(max);
  let s = '';
  for (const b of all) s += String.fromCharCode(b);
  const index: IndexResponse = {version: 1, codec: {name: 'log8', lut: LUT},
    runs: [{run: 'notebook', tags: [{tag: 'attention', examples: [{example: '0', steps: [0], qk_steps: [], header: header as never}]}]}]};
  return new EmbeddedSource({index, records: [{run: 'notebook', tag: 'attention', example: '0', step: 0, data: btoa(s)}]});
}

const REF = {run: 'notebook', tag: 'attention', example: '0', step: 0};

describe('the notebook page’s max pyramid', () => {
  it('pools a level with max (format.pool_pyramid_max)', () => {
    const fine = Float32Array.from([0, 1, 2, 3, 4, 9, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    expect([...poolPyramidMax(fine, 4, 4, 8, 8, 2, 2)]).toEqual([9, 7, 13, 15]);
    expect([...poolPyramidMax(fine, 4, 4, 8, 8, 1, 1)]).toEqual([15]);
  });
  it('serves chunks.pyramid_max for agg=max (level 0 and pooled), the mean pyramid otherwise', async () => {
    const s = await longSource(true);
    const mean = await s.pyramid(REF, 'encoder', 0, 0);
    const max = await s.pyramid(REF, 'encoder', 0, 0, 0, 'max');
    expect([max.rows, max.cols]).toEqual([4, 4]);
    expect(max.data[5]).toBeCloseTo(10 / 255, 6);
    expect(mean.data[5]).toBeCloseTo(5 / 255, 6);
    const l1 = await s.pyramid(REF, 'encoder', 0, 0, 1, 'max');
    expect([l1.rows, l1.cols]).toEqual([2, 2]);
    expect(l1.data[3]).toBeCloseTo(30 / 255, 6); // max of codes 20, 22, 28, 30
    // the matrix view asks it as it asks the backend
    const d = await loadMatrixData({source: s, sel: defaultSelection(), weighting: 'weights'}, {...loaded((await s.header(REF)) as Header), ref: REF}, 0, 0, 'max');
    expect(d.agg).toBe('max');
  });
  it('an older record: agg=max answers 404', async () => {
    const s = await longSource(false);
    await expect(s.pyramid(REF, 'encoder', 0, 0, 0, 'max')).rejects.toThrow(/no max pyramid \(logged before format v5\)/);
    expect((await s.pyramid(REF, 'encoder', 0, 0)).rows).toBe(4);
  });
});
