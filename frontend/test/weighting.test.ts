// The shell's weighting toggle (URL `weighting=value`): its URL round trip, when it is disabled, and what the
// head, model, matrix and image views ask the backend for with it (a long layer's pooled data never
// value-weighted: /overview, /pyramid and /topk answer 400 for that).
import {describe, expect, it} from 'vitest';
import {HttpSource} from '../src/api';
import {EmbeddedSource} from '../src/sources/embedded';
import {defaultSelection, KNOWN_KEYS, readSelectionFromHash, writeSelectionToHash} from '../src/state';
import type {Header, KindInfo, Weighting} from '../src/types';
import {loadHeadData} from '../src/views/head/spec';
import {queryRow} from '../src/views/image/spec';
import {loadMatrixData} from '../src/views/matrix/spec';
import type {Tile} from '../src/views/matrix/zoom';
import {loadOverview} from '../src/views/model/spec';
import {VIEW_SPECS} from '../src/views/registry';
import type {Loaded} from '../src/views/spec';
import {compareOutcome, effectiveWeighting, NO_BACKEND, NO_VALUE_NORMS, pooledWeighting, valueWeightingProblem} from '../src/weighting';

const LUT = Array.from({length: 256}, (_, c) => c / 255);
const TOKENS = ['a', 'b', 'c', 'd'];
const N = TOKENS.length;
const HEADS = 2;

function header(kind: Partial<KindInfo> = {}): Header {
  return {
    version: 5, tag: 't', example: '0', step: 0, sequences: {input: TOKENS}, sentence_b_start: null,
    kinds: {encoder: {query: 'input', key: 'input', layers: 1, heads: HEADS, q_len: N, k_len: N, head_dim: 4, has_qk: true, overview_shape: [2, 2], layer_info: [{}], has_value_norms: true, ...kind}},
  };
}

const LONG: Partial<KindInfo> = {layout: 'long', exact: true, pyramid_shape: [2, 2], topk: 2, kv_heads: HEADS};

function loaded(h: Header): Loaded {
  return {ref: {run: 'r', tag: 't', example: '0', step: 0}, header: h, example: {example: '0', steps: [0], qk_steps: [0], header: h}, kind: 'encoder'};
}

/** An HttpSource over a fake backend answering every attention route with a body of the asked shape; `calls`: the URLs. */
function backend() {
  const calls: URL[] = [];
  const bin = (bytes: number, shape: string, header = 'X-Attention-Shape') => new Response(new Uint8Array(bytes).fill(1), {headers: {[header]: shape}});
  const span = (v: string | null) => {
    const [a, b] = (v ?? '').split(':').map(Number);
    return b - a;
  };
  const fetchFn = async (input: string) => {
    const u = new URL(input);
    calls.push(u);
    const p = u.searchParams;
    switch (u.pathname.split('/').pop()) {
      case 'index':
        return new Response(JSON.stringify({version: 1, codec: {name: 'log8', lut: LUT}, runs: []}));
      case 'attention': {
        const h = p.has('head') ? 1 : HEADS;
        return bin(h * N * N, `${h},${N},${N}`);
      }
      case 'overview':
        return bin(HEADS * 4, `1,${HEADS},2,2`);
      case 'window': {
        const [r, c] = [span(p.get('rows')), span(p.get('cols'))];
        return bin(r * c, `1,${r},${c}`);
      }
      case 'pyramid':
        return bin(4, '1,2,2');
      case 'topk': // (q × 2) key indices 0 and 1, then their codes
        return new Response(new Uint8Array([...Array.from({length: N}, () => [0, 0, 0, 0, 1, 0, 0, 0]).flat(), ...new Array(2 * N).fill(9)]), {headers: {'X-TopK-Shape': `${N},2`}});
      case 'rollout':
        return bin(N * N, `1,${N},${N}`);
    }
    return new Response(JSON.stringify({error: 'no route'}), {status: 404});
  };
  const source = new HttpSource(new URL('http://h/data/plugin/attention/'), fetchFn);
  /** The calls to `route`, each as its `weighting` parameter (null: none, raw weights). */
  const weightings = (route: string) => calls.filter((u) => u.pathname.endsWith(`/${route}`)).map((u) => u.searchParams.get('weighting'));
  return {source, calls, weightings};
}

const host = (source: HttpSource, weighting: Weighting, sel = {}) => ({source, sel: {...defaultSelection(), ...sel}, weighting});

describe('the weighting toggle in the URL', () => {
  it('round-trips `weighting=value`; the default (weights) writes nothing; anything else reads as weights', () => {
    const s = readSelectionFromHash('#attention&p.attention.weighting=value&p.attention.view=matrix', VIEW_SPECS);
    expect([s.weighting, s.view]).toEqual(['value', 'matrix']);
    expect(s.extra).toEqual({});
    expect(writeSelectionToHash('#attention', s, VIEW_SPECS)).toBe('attention&p.attention.view=matrix&p.attention.weighting=value');
    expect(readSelectionFromHash(writeSelectionToHash('#attention', s, VIEW_SPECS), VIEW_SPECS).weighting).toBe('value');
    expect(writeSelectionToHash('#attention', {...s, weighting: 'weights'}, VIEW_SPECS)).toBe('attention&p.attention.view=matrix');
    expect(readSelectionFromHash('#attention&p.attention.weighting=bogus', VIEW_SPECS).weighting).toBe('weights');
    expect(readSelectionFromHash('#attention', VIEW_SPECS).weighting).toBe('weights');
  });
  it('is the shell’s key: no view declares it', () => {
    expect(KNOWN_KEYS.has('weighting')).toBe(true);
    for (const v of VIEW_SPECS) expect(v.url?.keys ?? []).not.toContain('weighting');
  });
  it('applies to the head, model, matrix and image views only (their toolbar shows it)', () => {
    expect(VIEW_SPECS.filter((v) => v.controls.includes('weighting')).map((v) => v.name).sort()).toEqual(['head', 'image', 'matrix', 'model']);
  });
});

describe('when the toggle is disabled', () => {
  const {source} = backend();
  it('a record without value norms (older format, or captured without values=True): disabled with the reason', () => {
    const old = header({has_value_norms: undefined});
    expect(valueWeightingProblem(source, old, 'encoder')).toBe(NO_VALUE_NORMS);
    expect(NO_VALUE_NORMS).toMatch(/no value norms: capture with values=True/);
    expect(valueWeightingProblem(source, header({has_value_norms: false}), 'encoder')).toBe(NO_VALUE_NORMS);
    expect(valueWeightingProblem(source, header(), 'encoder')).toBeNull();
    // the shown record is fetched raw then, whatever the URL says
    expect(effectiveWeighting('value', true, source, old, 'encoder')).toBe('weights');
    expect(effectiveWeighting('value', true, source, header(), 'encoder')).toBe('value');
    expect(effectiveWeighting('value', false, source, header(), 'encoder')).toBe('weights'); // a view that ignores it
    expect(effectiveWeighting('weights', true, source, header(), 'encoder')).toBe('weights');
  });
  it('the notebook / standalone page (no backend): disabled with the reason; asked anyway, it answers 404', async () => {
    const page = new EmbeddedSource({index: {version: 1, codec: {name: 'log8', lut: LUT}, runs: []}, records: []});
    expect(valueWeightingProblem(page, header(), 'encoder')).toBe(NO_BACKEND);
    expect(effectiveWeighting('value', true, page, header(), 'encoder')).toBe('weights');
    const ref = loaded(header()).ref;
    await expect(page.attention(ref, 'encoder', 0, undefined, 'value')).rejects.toMatchObject({status: 404});
    await expect(page.overview(ref, 'encoder', 'value')).rejects.toMatchObject({status: 404});
  });
});

describe('comparisons use one weighting', () => {
  const b = (h: Header) => ({...loaded(h), ref: {run: 'other', tag: 't', example: '0', step: 7}});
  it('B without value norms next to a value-weighted A: a message in its place, or no B − A', () => {
    const old = header({has_value_norms: false});
    expect(compareOutcome('value', b(header()), 'side')).toBeNull();
    expect(compareOutcome('weights', b(old), 'diff')).toBeNull();
    const side = compareOutcome('value', b(old), 'side')!;
    expect(side.error).toBe(false);
    expect(side.text).toMatch(/^B \(other @ 7\) has no value norms/);
    const diff = compareOutcome('value', b(old), 'diff')!;
    expect(diff.error).toBe(true);
    expect(diff.text).toMatch(/^B − A is not drawn: B \(other @ 7\) has no value norms/);
  });
});

describe('requests carry the weighting', () => {
  it('dense records: head, model, matrix and image fetch with weighting=value, and without it for raw weights', async () => {
    for (const w of ['value', 'weights'] as const) {
      const {source, weightings} = backend();
      const x = loaded(header());
      const h = host(source, w);
      await loadHeadData(h, x, 0); // head view (and the model view's head detail)
      await loadHeadData(h, x, 0, 1);
      await loadOverview(h, x); // model view
      await loadMatrixData(h, x, 0, 1); // matrix view
      await queryRow(h, x, 0, 'mean'); // image view: mean of heads, one head
      await queryRow(h, x, 0, 'head');
      const want = w === 'value' ? 'value' : null;
      expect(weightings('attention').length).toBeGreaterThan(0);
      expect(new Set(weightings('attention'))).toEqual(new Set([want]));
      expect(weightings('overview')).toEqual([want]);
    }
  });
  it('the cache keys include the weighting: the same request weighted otherwise is fetched anew', async () => {
    const {source, weightings} = backend();
    const ref = loaded(header()).ref;
    await source.attention(ref, 'encoder', 0, 1);
    await source.attention(ref, 'encoder', 0, 1, 'value');
    await source.attention(ref, 'encoder', 0, 1, 'value');
    await source.attention(ref, 'encoder', 0, 1, 'weights');
    expect(weightings('attention')).toEqual([null, 'value']);
    await source.overview(ref, 'encoder', 'value');
    await source.overview(ref, 'encoder');
    await source.window(ref, 'encoder', 0, 0, [0, 1], [0, N], 'value');
    await source.window(ref, 'encoder', 0, 0, [0, 1], [0, N]);
    expect(weightings('overview')).toEqual(['value', null]);
    expect(weightings('window')).toEqual(['value', null]);
  });
  it('long records: exact windows value-weighted; /overview, /pyramid and /topk never asked for weighting=value', async () => {
    const {source, calls, weightings} = backend();
    const x = loaded(header(LONG));
    const h = host(source, 'value');
    const hd = await loadHeadData(h, x, 0); // lines at rest from /topk, exact rows on hover from /window
    await hd.exactLine!(1, 'left', 2);
    await hd.exactLine!(0, 'right', 3);
    await loadOverview(h, x); // model view
    const md = await loadMatrixData(h, x, 0, 1); // matrix: pyramid, then exact tiles and rows
    expect(md.notes.join(' ')).toMatch(/pyramid underneath is raw weights/);
    await md.loadRow(2);
    await md.loadTile!({ti: 0, tj: 0, r0: 0, r1: 2, c0: 0, c1: N} as Tile);
    const img = await queryRow(h, x, 1, 'mean'); // image view: the query's exact row
    expect(img.notes.join(' ')).toMatch(/exact row/);
    for (const route of ['topk', 'overview', 'pyramid', 'window']) expect(weightings(route).length, route).toBeGreaterThan(0);
    expect(new Set(weightings('window'))).toEqual(new Set(['value']));
    for (const u of calls) if (/\/(overview|pyramid|topk)$/.test(u.pathname)) expect(u.searchParams.has('weighting'), u.toString()).toBe(false);
    expect(pooledWeighting({layout: 'long'}, 'value')).toBe('weights');
    expect(pooledWeighting({layout: 'dense'}, 'value')).toBe('value');
  });
  it('long records without exact windows: raw top-k only, nothing value-weighted asked for', async () => {
    const {source, calls} = backend();
    const x = loaded(header({...LONG, exact: false}));
    const h = host(source, 'value');
    await loadHeadData(h, x, 0);
    const md = await loadMatrixData(h, x, 0, 0);
    expect(md.notes.join(' ')).toMatch(/Raw weights: this long layer has no exact windows/);
    await md.loadRow(1);
    const img = await queryRow(h, x, 1, 'mean');
    expect(img.notes.join(' ')).toMatch(/raw weights: value weighting needs exact rows/);
    expect(calls.some((u) => u.searchParams.has('weighting'))).toBe(false);
  });
  it('the rollout (image view) stays raw and says so', async () => {
    const {source, weightings} = backend();
    const {notes} = await queryRow(host(source, 'value'), loaded(header()), 0, 'rollout');
    expect(weightings('rollout')).toEqual([null]);
    expect(notes.join(' ')).toMatch(/rollout is computed from the raw weights/);
  });
  it('each view labels what its weighting gives (long layers: what stays raw)', () => {
    const dense = header().kinds.encoder!;
    const long = header(LONG).kinds.encoder!;
    const label = (name: string, info: KindInfo, w: Weighting, state: object = {}) => VIEW_SPECS.find((v) => v.name === name)!.weightingLabel!(info, w, state);
    for (const v of ['head', 'model', 'matrix', 'image']) {
      expect(label(v, dense, 'value', {agg: 'mean', multi: ''})).toMatch(/^value-weighted/);
      expect(label(v, dense, 'weights', {agg: 'mean', multi: ''})).toBe('raw weights');
    }
    expect(label('model', long, 'value')).toBe('overview: raw weights; value-weighted in exact windows (the head detail’s hovered rows)');
    expect(label('matrix', long, 'value', {multi: ''})).toMatch(/^pyramid: raw weights; value-weighted in exact windows/);
    expect(label('head', long, 'value')).toMatch(/raw weights \(stored top-k\); value-weighted in exact windows/);
    expect(label('image', dense, 'value', {agg: 'rollout'})).toMatch(/^rollout: raw weights/);
  });
});
