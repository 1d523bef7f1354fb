import {describe, expect, it} from 'vitest';
import {FloatAttention} from '../src/api';
import {buildAxes} from '../src/axes';
import {diffHeadData, headData} from '../src/views/head/data';
import {binAxis, diffModelData, modelData} from '../src/views/model/data';
import {rolloutData} from '../src/views/rollout/data';
import {defaultSelection} from '../src/state';
import {buildAxis} from '../src/tokens';
import type {Header, KindInfo, Overview} from '../src/types';

const info = (q: string, k: string, layers = 1, heads = 2): KindInfo => ({
  query: q,
  key: k,
  layers,
  heads,
  head_dim: 4,
  has_qk: false,
  overview_shape: [4, 4],
  layer_info: [],
});

const header: Header = {
  version: 1,
  tag: 't',
  example: '0',
  step: 0,
  sequences: {input: ['[CLS]', 'a', 'b', '[SEP]'], output: ['<pad>', 'x', 'y']},
  sentence_b_start: 2,
  special_tokens: {input: [0, 3], output: [0]},
  kinds: {encoder: info('input', 'input'), cross: info('output', 'input')},
};

describe('axes for a kind', () => {
  it('applies sentence filters only to the input sequence (cross attention keeps all queries)', () => {
    const sel = {...defaultSelection(), filter: 'bb' as const};
    const enc = buildAxes(header, 'encoder', sel);
    expect(enc.rows.labels).toEqual(['b', '[SEP]']);
    expect(enc.self).toBe(true);
    const cross = buildAxes(header, 'cross', sel);
    expect(cross.rows.labels).toEqual(['<pad>', 'x', 'y']);
    expect(cross.cols.labels).toEqual(['b', '[SEP]']);
    expect(cross.self).toBe(false);
  });
  it('hides each sequence’s own special tokens', () => {
    const cross = buildAxes(header, 'cross', {...defaultSelection(), hideSpecial: true});
    expect(cross.rows.labels).toEqual(['x', 'y']);
    expect(cross.cols.labels).toEqual(['a', 'b']);
    expect(() => buildAxes(header, 'decoder', defaultSelection())).toThrow(/no decoder/);
  });
});

describe('head data and differences', () => {
  const a = new FloatAttention(2, 2, 2, Float32Array.from([0.5, 0.5, 1, 0, /**/ 0, 1, 0.5, 0.5]));
  const b = new FloatAttention(2, 2, 2, Float32Array.from([0.9, 0.1, 1, 0, /**/ 0, 1, 0.2, 0.8]));
  const axes = {rows: buildAxis(['p', 'q']), cols: buildAxis(['p', 'q']), queryTokens: ['p', 'q'], keyTokens: ['p', 'q'], self: true};
  it('B − A per head with the largest |difference| over all heads', () => {
    const d = diffHeadData(headData(a, axes, 2), headData(b, axes, 2));
    expect(d.signed).toBe(true);
    expect(Array.from(d.matrix(0)).map((x) => +x.toFixed(5))).toEqual([0.4, -0.4, 0, 0]);
    expect(Array.from(d.matrix(1)).map((x) => +x.toFixed(5))).toEqual([0, 0, -0.3, 0.3]);
    expect(d.maxAbs).toBeCloseTo(0.4, 5);
  });
  it('refuses B − A across different token counts', () => {
    const c = new FloatAttention(2, 3, 3, new Float32Array(18));
    const ax3 = {...axes, rows: buildAxis(['p', 'q', 'r']), cols: buildAxis(['p', 'q', 'r'])};
    expect(() => diffHeadData(headData(a, axes, 2), headData(c, ax3, 2))).toThrow(/different token/);
  });
});

describe('model view data from the pooled overview', () => {
  it('keeps whole bins under filters and says so', () => {
    const tokens = Array.from({length: 8}, (_, i) => (i === 0 ? '[CLS]' : `t${i}`));
    const ax = buildAxis(tokens, {hide: new Set([0, 1])});
    const bins = binAxis(ax, 4); // bins {0,1} {2,3} {4,5} {6,7}: bin 0 dropped
    expect(Array.from(bins.idx)).toEqual([1, 2, 3]);
    expect(binAxis(buildAxis(tokens), 4).identity).toBe(true);
    const ov: Overview = {layers: 2, heads: 2, pq: 4, pk: 4, data: Float32Array.from({length: 64}, (_, i) => i / 64)};
    const axes = {rows: ax, cols: ax, queryTokens: tokens, keyTokens: tokens, self: true};
    const md = modelData(ov, axes, [1], null);
    expect(md.layers).toEqual([1]);
    expect(md.heads).toEqual([0, 1]);
    expect([md.rows, md.cols]).toEqual([3, 3]);
    expect(md.note).toMatch(/Pooled to 4×4 bins.*whole bins/);
    // layer 1, head 0, bin row 1, bin col 1 → overview[1,0,1,1]
    expect(md.cell(1, 0)[0]).toBeCloseTo(ov.data[(2 * 16) + 1 * 4 + 1], 6);
  });
  it('uses token axes exactly when the overview is not pooled, and subtracts overviews', () => {
    const tokens = ['a', 'b'];
    const ovA: Overview = {layers: 1, heads: 1, pq: 2, pk: 2, data: Float32Array.from([1, 0, 0.5, 0.5])};
    const ovB: Overview = {layers: 1, heads: 1, pq: 2, pk: 2, data: Float32Array.from([0.5, 0.5, 0.5, 0.5])};
    const axes = {rows: buildAxis(tokens), cols: buildAxis(tokens), queryTokens: tokens, keyTokens: tokens, self: true};
    const a = modelData(ovA, axes, null, null);
    expect(a.note).toBeUndefined();
    const d = diffModelData(a, modelData(ovB, axes, null, null));
    expect(Array.from(d.cell(0, 0))).toEqual([-0.5, 0.5, 0, 0]);
    expect(d.maxAbs).toBe(0.5);
  });
});

describe('rollout data', () => {
  const r = {n: 4, data: Float32Array.from([1, 0, 0, 0, 0.5, 0.5, 0, 0, 0.25, 0.25, 0.5, 0, 0.1, 0.2, 0.3, 0.4])};
  it('keeps the rollout as is without filters', () => {
    const d = rolloutData(r, buildAxes(header, 'encoder', defaultSelection()), 0.5, 'mean');
    expect([d.rows, d.cols, d.n]).toEqual([4, 4, 4]);
    expect(d.matrix).toBe(r.data);
    expect(d.notes).toEqual([]);
  });
  it('applies hidden special tokens to rows and columns, and says so', () => {
    const d = rolloutData(r, buildAxes(header, 'encoder', {...defaultSelection(), hideSpecial: true}), 0.5, 'max');
    expect(d.rowLabels).toEqual(['a', 'b']);
    expect(Array.from(d.matrix)).toEqual([0.5, 0, 0.25, 0.5].map(Math.fround));
    expect(d.notes.join(' ')).toMatch(/not renormalised/);
  });
  it('refuses cross attention and a size mismatch', () => {
    expect(() => rolloutData(r, buildAxes(header, 'cross', defaultSelection()), 0.5, 'mean')).toThrow(/self-attention/);
    expect(() => rolloutData({n: 3, data: new Float32Array(9)}, buildAxes(header, 'encoder', defaultSelection()), 0.5, 'mean')).toThrow(/covers 3/);
  });
});
