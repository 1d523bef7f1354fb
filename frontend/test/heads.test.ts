// The Heads view's pure parts: head scores aggregated from headers (src/headscores.ts, as derived.TagScores),
// the filter, the sort, the data builder, and the probe-set fixture (its induction head on top).
import {describe, expect, it} from 'vitest';
import {FixtureSource} from '../dev/fixtures';
import {TagScores, naturalCompare} from '../src/headscores';
import type {Header} from '../src/types';
import {headsData, parseFilter, sortRows, type HeadRow} from '../src/views/heads/data';
import {headsUrl} from '../src/views/heads/spec';

function header(example: string, step: number, sink: (number | null)[][], layers = 1, heads = 2): Header {
  return {
    version: 1,
    tag: 't',
    example,
    step,
    sequences: {input: ['a']},
    sentence_b_start: null,
    kinds: {encoder: {query: 'input', key: 'input', layers, heads, head_dim: 4, has_qk: false, overview_shape: [1, 1], layer_info: []}},
    metrics: {encoder: {sink: sink as number[][]}},
  };
}

describe('TagScores (head scores from headers)', () => {
  const hs = [header('10', 0, [[0.1, null]]), header('2', 0, [[0.3, 0.5]]), header('x', 0, [[0.2, 0.4]]), header('odd', 0, [[1]], 1, 1), header('2', 5, [[0.9, 0.8]])];
  const s = new TagScores({run: 'r', tag: 't'}, hs);
  it('aggregates mean, population std, min, max and n per head, leaving out another grid', () => {
    const at = s.at(0);
    expect(at.kind).toBe('encoder');
    expect(at.steps).toEqual([0, 5]);
    expect(at.examples).toBe(3);
    expect(at.skipped).toEqual(['odd']);
    const m = at.metrics.sink;
    expect(m.mean[0][0]).toBeCloseTo(0.2, 12);
    expect(m.std[0][0]).toBeCloseTo(Math.sqrt((0.01 + 0.01 + 0) / 3), 12);
    expect(m.min[0]).toEqual([0.1, 0.4]);
    expect(m.max[0]).toEqual([0.3, 0.5]);
    expect(m.n).toEqual([[3, 2]]);
    expect(m.mean[0][1]).toBeCloseTo(0.45, 12);
  });
  it('ranks examples per head (undefined ones left out) and follows heads over steps', () => {
    expect(s.top(0, 'sink', 0, 1, 10).examples.map((e) => e.example)).toEqual(['2', 'x']);
    expect(s.top(0, 'sink', 0, 0, 2)).toMatchObject({n: 3, examples: [{example: '2', score: 0.3}, {example: 'x', score: 0.2}]});
    expect(() => s.top(0, 'nope', 0, 0, 1)).toThrow(/400: no metric/);
    expect(() => s.top(0, 'sink', 1, 0, 1)).toThrow(/400: head/);
    expect(() => s.at(3)).toThrow(/404/);
    const tr = s.trend();
    expect(tr.examples).toEqual([3, 1]);
    expect(tr.metrics.sink.mean[1]).toEqual([[0.9, 0.8]]);
  });
  it('orders example names naturally', () => {
    expect(['10', 'b', '2', 'a', '1'].sort(naturalCompare)).toEqual(['1', '2', '10', 'a', 'b']);
  });
});

describe('filter, sort, URL', () => {
  it('reads layer, head and value terms and refuses others', () => {
    expect(parseFilter('')).toBeNull();
    expect(parseFilter('L1 H0-2 >0.5 <0.9')).toEqual({layers: [1], heads: [0, 1, 2], above: 0.5, below: 0.9});
    expect(parseFilter('l2-3')).toMatchObject({layers: [2, 3]});
    expect(parseFilter('<script>')).toBeInstanceOf(Error);
  });
  it('sorts with undefined values last and ties by layer, head', () => {
    const r = (layer: number, head: number, mean: number): HeadRow => ({layer, head, mean, std: 0, min: mean, max: mean, n: 1});
    const rows = [r(0, 0, 0.5), r(0, 1, NaN), r(1, 0, 0.9), r(1, 1, 0.5)];
    expect(sortRows(rows, 'mean', false).map((x) => `${x.layer}.${x.head}`)).toEqual(['1.0', '0.0', '1.1', '0.1']);
    expect(sortRows(rows, 'mean', true).map((x) => `${x.layer}.${x.head}`)).toEqual(['0.0', '1.1', '1.0', '0.1']);
    expect(sortRows(rows, 'head', true).map((x) => `${x.layer}.${x.head}`)).toEqual(['0.0', '1.0', '0.1', '1.1']);
  });
  it('writes only non-defaults and reads them back; malformed values are defaults', () => {
    const s = {metric: 'sink', sort: 'std' as const, asc: true, filter: 'L1', chosen: [2, 3] as [number, number]};
    const kv = new Map(headsUrl.write(s));
    expect(headsUrl.parse((k) => kv.get(k))).toEqual(s);
    expect(headsUrl.write(headsUrl.parse(() => undefined))).toEqual([]);
    expect(headsUrl.parse((k) => ({hs: 'bogus', hh: '1.x', hm: '<b>'})[k])).toMatchObject({sort: 'mean', chosen: null, metric: null});
  });
});

describe('the probe-set fixture', () => {
  it('puts the induction head (L1 H1) on top at the last step, its best examples first', async () => {
    const src = new FixtureSource();
    const tag = {run: 'probeset', tag: 'probes'};
    const scores = await src.headScores(tag, 200, 'decoder');
    expect(scores.examples).toBe(8);
    const d = headsData({scores, trend: await src.headTrend(tag, 'decoder'), examples: null, metric: 'induction', sort: 'mean', asc: false, filter: '', chosen: null});
    expect(d.chosen).toEqual([1, 1]);
    expect(d.rows[0]).toMatchObject({layer: 1, head: 1});
    expect(d.trend!.mean[0]).toBeLessThan(d.trend!.mean[d.trend!.mean.length - 1]);
    // against each example's own metrics (/metrics)
    const per = await Promise.all(Array.from({length: 8}, (_, i) => src.metrics({...tag, example: String(i)}, 'decoder')));
    const at = per.map((m, i) => ({example: String(i), score: m.kinds.decoder!.induction[m.steps.indexOf(200)]![1][1]!}));
    expect(d.rows[0].mean).toBeCloseTo(at.reduce((a, b) => a + b.score, 0) / 8, 10);
    const top = await src.headExamples(tag, 200, 'decoder', 'induction', 1, 1, 3);
    expect(top.examples.map((e) => e.example)).toEqual([...at].sort((a, b) => b.score - a.score).slice(0, 3).map((e) => e.example));
    const filtered = headsData({scores, trend: null, examples: null, metric: 'induction', sort: 'mean', asc: false, filter: 'L0', chosen: null});
    expect(filtered.rows.every((r) => r.layer === 0)).toBe(true);
    expect(filtered.chosen).toEqual([0, filtered.rows[0].head]);
  });
});
