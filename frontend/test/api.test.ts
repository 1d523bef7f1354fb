import {describe, expect, it} from 'vitest';
import {
  ApiError,
  CodedAttention,
  HttpSource,
  LruCache,
  decodeCodes,
  decodeFloat16,
  decodeOverview,
  decodeQK,
  decodeRollout,
  formatResidual,
  halfToFloat,
  headerProblem,
  limitsOf,
  LIMITS,
  revisionsOf,
  makeLut,
  parseShape,
} from '../src/api';

const LUT = Array.from({length: 256}, (_, c) => c / 255);

function f16bytes(bits: number[]): Uint8Array {
  const b = new Uint8Array(bits.length * 2);
  bits.forEach((h, i) => {
    b[2 * i] = h & 0xff;
    b[2 * i + 1] = h >> 8;
  });
  return b;
}

describe('codes through the LUT', () => {
  it('maps every byte to lut[byte]', () => {
    const lut = makeLut(LUT.map((v) => v * v));
    const codes = Uint8Array.from([0, 1, 128, 255, 255, 7]);
    const out = decodeCodes(codes, lut);
    expect(Array.from(out)).toEqual([0, (1 / 255) ** 2, (128 / 255) ** 2, 1, 1, (7 / 255) ** 2].map((v) => Math.fround(v)));
  });
  it('refuses a LUT that is not 256 long', () => {
    expect(() => makeLut([0, 1])).toThrow(/256/);
  });
  it('decodes a layer lazily per head, with the head offset of a single-head response', () => {
    const lut = makeLut(LUT);
    const codes = Uint8Array.from([0, 255, 255, 0, /* head 1 */ 51, 204, 102, 153]);
    const att = new CodedAttention(2, 2, 2, codes, lut);
    expect(Array.from(att.head(1))).toEqual([0.2, 0.8, 0.4, 0.6].map(Math.fround));
    expect(att.head(1)).toBe(att.head(1)); // decoded once
    const single = new CodedAttention(1, 2, 2, codes.subarray(4), lut, 5);
    expect(Array.from(single.head(5))).toEqual([0.2, 0.8, 0.4, 0.6].map(Math.fround));
    expect(() => single.head(0)).toThrow(RangeError);
    expect(() => new CodedAttention(2, 2, 3, codes, lut)).toThrow(/shape/);
  });
  it('decodes an overview with its shape header', () => {
    const ov = decodeOverview(Uint8Array.from([0, 255, 255, 0, 51, 51, 51, 102]).buffer, '2,1,2,2', makeLut(LUT));
    expect([ov.layers, ov.heads, ov.pq, ov.pk]).toEqual([2, 1, 2, 2]);
    expect(ov.data[1]).toBe(1);
    expect(() => decodeOverview(new ArrayBuffer(7), '2,1,2,2', makeLut(LUT))).toThrow(/size/);
  });
});

describe('float16', () => {
  it('decodes normals, signed zeros, extremes, inf and NaN', () => {
    expect(halfToFloat(0x0000)).toBe(0);
    expect(Object.is(halfToFloat(0x8000), -0)).toBe(true);
    expect(halfToFloat(0x3c00)).toBe(1);
    expect(halfToFloat(0xc000)).toBe(-2);
    expect(halfToFloat(0x3555)).toBeCloseTo(0.33325195, 7);
    expect(halfToFloat(0x7bff)).toBe(65504);
    expect(halfToFloat(0xfbff)).toBe(-65504);
    expect(halfToFloat(0x0400)).toBe(2 ** -14); // smallest normal
    expect(halfToFloat(0x7c00)).toBe(Infinity);
    expect(halfToFloat(0xfc00)).toBe(-Infinity);
    expect(halfToFloat(0x7e00)).toBeNaN();
  });
  it('decodes subnormals, positive and negative', () => {
    expect(halfToFloat(0x0001)).toBe(2 ** -24); // smallest subnormal
    expect(halfToFloat(0x8001)).toBe(-(2 ** -24));
    expect(halfToFloat(0x03ff)).toBe((1023 / 1024) * 2 ** -14); // largest subnormal
    expect(halfToFloat(0x8200)).toBe(-(2 ** -15));
  });
  it('reads little-endian buffers at an offset', () => {
    const bytes = f16bytes([0x3c00, 0xc000, 0x0001, 0x8001]);
    expect(Array.from(decodeFloat16(bytes))).toEqual([1, -2, Math.fround(2 ** -24), Math.fround(-(2 ** -24))]);
    expect(Array.from(decodeFloat16(bytes.buffer as ArrayBuffer, 2, 2))).toEqual([-2, Math.fround(2 ** -24)]);
    expect(() => decodeFloat16(bytes, 6, 2)).toThrow(/short/);
  });
  it('splits a /qk body into queries then keys', () => {
    // q_len 2, k_len 1, head_dim 2
    const body = f16bytes([0x3c00, 0x4000, 0xbc00, 0x0000, 0x3800, 0xb800]);
    const qk = decodeQK(body.buffer as ArrayBuffer, '2,1,2');
    expect(Array.from(qk.queries)).toEqual([1, 2, -1, 0]);
    expect(Array.from(qk.keys)).toEqual([0.5, -0.5]);
    expect(() => decodeQK(body.buffer as ArrayBuffer, '2,2,2')).toThrow(/bytes/);
  });
});

describe('shape headers', () => {
  it('parses and validates', () => {
    expect(parseShape('12, 7,7', 3)).toEqual([12, 7, 7]);
    expect(() => parseShape(null, 3)).toThrow(/missing/);
    expect(() => parseShape('1,2', 3)).toThrow(/bad/);
    expect(() => parseShape('1,-2,3', 3)).toThrow(/bad/);
    expect(() => parseShape('1,x,3', 3)).toThrow(/bad/);
  });
});

describe('LruCache', () => {
  it('dedupes, evicts least recently used past the byte budget, forgets failures', async () => {
    const c = new LruCache<number>(10, (v) => v);
    let loads = 0;
    const load = (v: number) => () => {
      loads++;
      return Promise.resolve(v);
    };
    await c.get('a', load(4));
    await c.get('a', load(4));
    expect(loads).toBe(1);
    await c.get('b', load(4));
    await c.get('a', load(4)); // a is now most recent
    await c.get('c', load(4)); // 12 > 10: evicts b
    await c.get('a', load(4));
    expect(loads).toBe(3);
    await c.get('b', load(4));
    expect(loads).toBe(4);
    await expect(c.get('bad', () => Promise.reject(new Error('x')))).rejects.toThrow('x');
    await Promise.resolve();
    await c.get('bad', load(1));
    expect(loads).toBe(5);
  });
});

function fakeFetch(routes: Record<string, (u: URL) => Response>) {
  const calls: string[] = [];
  const fn = async (input: string) => {
    calls.push(input);
    const u = new URL(input);
    const name = u.pathname.split('/').pop()!;
    const h = routes[name];
    if (!h) return new Response(JSON.stringify({error: `no route ${name}`}), {status: 404});
    return h(u);
  };
  return {fn, calls};
}

describe('HttpSource', () => {
  const index = {version: 1, codec: {name: 'log8', lut: LUT}, runs: []};
  it('builds URLs relative to the module (path prefix kept) and caches responses', async () => {
    const {fn, calls} = fakeFetch({
      index: () => new Response(JSON.stringify(index)),
      attention: () => new Response(Uint8Array.from([0, 255, 255, 0]), {headers: {'X-Attention-Shape': '1,2,2'}}),
    });
    const src = new HttpSource(new URL('http://h:6006/prefix/data/plugin/attention/'), fn);
    const ref = {run: 'r/1 x', tag: 't', example: '0', step: 20};
    const a = await src.attention(ref, 'encoder', 3, 1);
    await src.attention(ref, 'encoder', 3, 1);
    expect(Array.from(a.head(1))).toEqual([0, 1, 1, 0]);
    const attCalls = calls.filter((c) => new URL(c).pathname.endsWith('/attention'));
    expect(attCalls).toHaveLength(1);
    const u = new URL(attCalls[0]);
    expect(u.pathname).toBe('/prefix/data/plugin/attention/attention');
    expect(Object.fromEntries(u.searchParams)).toEqual({run: 'r/1 x', tag: 't', example: '0', step: '20', kind: 'encoder', layer: '3', head: '1'});
  });
  it('turns JSON errors into ApiError and a /qk 404 into null', async () => {
    const {fn} = fakeFetch({
      index: () => new Response(JSON.stringify(index)),
      header: () => new Response(JSON.stringify({error: 'unknown run "x"'}), {status: 404}),
      qk: () => new Response(JSON.stringify({error: 'no q/k at step 3'}), {status: 404}),
      overview: () => new Response(JSON.stringify({error: 'bad kind'}), {status: 400}),
    });
    const src = new HttpSource(new URL('http://h/data/plugin/attention/'), fn);
    const ref = {run: 'x', tag: 't', example: '0', step: 3};
    await expect(src.header(ref)).rejects.toMatchObject({name: 'ApiError', status: 404, message: 'unknown run "x"'});
    expect(await src.qk(ref, 'encoder', 0, 0)).toBeNull();
    const err = await src.overview(ref, 'encoder').catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(400);
  });
});

describe('rollout, metrics and divergence', () => {
  it('decodes a rollout (1, n, n) through the lut', () => {
    const r = decodeRollout(Uint8Array.from([255, 0, 51, 204]).buffer, '1,2,2', makeLut(LUT));
    expect(r.n).toBe(2);
    expect(Array.from(r.data)).toEqual([1, 0, 0.2, 0.8].map(Math.fround));
    expect(() => decodeRollout(new ArrayBuffer(6), '1,2,3', makeLut(LUT))).toThrow(/not \(1, n, n\)/);
    expect(() => decodeRollout(new ArrayBuffer(3), '1,2,2', makeLut(LUT))).toThrow(/bytes/);
    expect(() => decodeRollout(new ArrayBuffer(4), null, makeLut(LUT))).toThrow(/missing/);
  });
  it('writes residuals as plain decimals the server accepts', () => {
    expect(formatResidual(0.5)).toBe('0.5');
    expect(formatResidual(0.15000000000000002)).toBe('0.15');
    expect(formatResidual(1e-7)).toBe('0');
    expect(formatResidual(3)).toBe('1');
    expect(formatResidual(NaN)).toBe('0.5');
  });
  it('requests /metrics, /divergence and /rollout; metrics are refetched when the example gains a step', async () => {
    let metricsCalls = 0;
    let steps = [0];
    const header = {version: 2, tag: 't', example: '0', step: 0, sequences: {input: ['a']}, sentence_b_start: null, kinds: {}};
    const {fn, calls} = fakeFetch({
      index: () =>
        new Response(JSON.stringify({version: 1, codec: {name: 'log8', lut: LUT}, runs: [{run: 'r', tags: [{tag: 't', examples: [{example: '0', steps, qk_steps: [], header}]}]}]})),
      metrics: () => {
        metricsCalls++;
        return new Response(JSON.stringify({steps: [0, 10], kinds: {encoder: {entropy: [[[0.5, null]], [[0.25, 1]]]}}}));
      },
      divergence: () => new Response(JSON.stringify({js: [[0.1, null]], unit: 'nats', max: Math.LN2})),
      rollout: () => new Response(Uint8Array.from([255, 0, 0, 255]), {headers: {'X-Attention-Shape': '1,2,2'}}),
    });
    const src = new HttpSource(new URL('http://h/p/data/plugin/attention/'), fn);
    const ex = {run: 'r', tag: 't', example: '0'};
    await src.index();
    const m = await src.metrics(ex, 'encoder');
    expect(m.steps).toEqual([0, 10]);
    await src.metrics(ex, 'encoder');
    await src.index(true); // the same steps: still cached
    await src.metrics(ex, 'encoder');
    expect(metricsCalls).toBe(1);
    steps = [0, 10];
    await src.index(true);
    await src.metrics(ex, 'encoder');
    expect(metricsCalls).toBe(2);
    const d = await src.divergence(ex, 'encoder', 0, 10);
    expect(d.js[0][1]).toBeNull();
    const r = await src.rollout({...ex, step: 10}, 'encoder', 0.25, 'max');
    expect(Array.from(r.data)).toEqual([1, 0, 0, 1]);
    const q = (route: string) => Object.fromEntries(new URL(calls.find((c) => new URL(c).pathname.endsWith('/' + route))!).searchParams);
    expect(q('metrics')).toEqual({run: 'r', tag: 't', example: '0', kind: 'encoder'});
    expect(q('divergence')).toEqual({run: 'r', tag: 't', example: '0', kind: 'encoder', step_a: '0', step_b: '10'});
    expect(q('rollout')).toEqual({run: 'r', tag: 't', example: '0', step: '10', kind: 'encoder', residual: '0.25', fusion: 'max'});
  });
  it('rejects malformed responses', async () => {
    const {fn} = fakeFetch({
      metrics: () => new Response(JSON.stringify({steps: 3})),
      divergence: () => new Response(JSON.stringify({})),
    });
    const src = new HttpSource(new URL('http://h/data/plugin/attention/'), fn);
    await expect(src.metrics({run: 'r', tag: 't', example: '0'})).rejects.toThrow(/malformed/);
    await expect(src.divergence({run: 'r', tag: 't', example: '0'}, 'encoder', 0, 1)).rejects.toThrow(/malformed/);
  });
});

describe('re-logged steps (revisions in /index)', () => {
  const header = {version: 2, tag: 't', example: '0', step: 5, sequences: {input: ['a', 'b']}, sentence_b_start: null, kinds: {}};
  const indexWith = (revs: string[] | undefined, steps = [5, 6]) => ({
    version: 1,
    codec: {name: 'log8', lut: LUT},
    runs: [{run: 'r', tags: [{tag: 't', examples: [{example: '0', steps, qk_steps: [], header, ...(revs ? {revisions: revs} : {})}]}]}],
  });
  it('reads a revision per step, and none (all empty) from older backends', () => {
    const step = (revs: Map<string, string>, st: number) => revs.get(JSON.stringify(['r', 't', '0', st]));
    const withRevs = revisionsOf(indexWith(['a', 'b']));
    expect([step(withRevs, 5), step(withRevs, 6)]).toEqual(['a', 'b']);
    const old = revisionsOf(indexWith(undefined));
    expect([step(old, 5), step(old, 6)]).toEqual(['', '']);
    // the example as a whole (what /metrics covers): its steps and their revisions
    expect(withRevs.get(JSON.stringify(['r', 't', '0']))).toBe(JSON.stringify([[5, 6], ['a', 'b']]));
  });
  it('serves the new arrays after a reload that changed the step’s revision, the cached ones otherwise', async () => {
    let revs = ['r1', 'x'];
    let code = 255;
    const {fn, calls} = fakeFetch({
      index: () => new Response(JSON.stringify(indexWith(revs))),
      attention: () => new Response(Uint8Array.from([code, 0, 0, code]), {headers: {'X-Attention-Shape': '1,2,2'}}),
      overview: () => new Response(Uint8Array.from([code, 0, 0, code]), {headers: {'X-Attention-Shape': '1,1,2,2'}}),
      metrics: () => new Response(JSON.stringify({steps: [5, 6], kinds: {}})),
    });
    const src = new HttpSource(new URL('http://h/data/plugin/attention/'), fn);
    await src.index();
    const ref = {run: 'r', tag: 't', example: '0', step: 5};
    const other = {...ref, step: 6};
    const all = async () => {
      await src.attention(ref, 'encoder', 0);
      await src.overview(other, 'encoder');
      await src.metrics(ref);
    };
    expect(Array.from((await src.attention(ref, 'encoder', 0)).head(0))).toEqual([1, 0, 0, 1]);
    await all();
    const n = (route: string) => calls.filter((c) => c.includes(`/${route}?`)).length;
    expect([n('attention'), n('overview'), n('metrics')]).toEqual([1, 1, 1]);
    // same revisions: nothing refetched
    await src.index(true);
    await all();
    expect([n('attention'), n('overview'), n('metrics')]).toEqual([1, 1, 1]);
    // step 5 logged again: a new revision, new arrays and metrics; step 6 untouched stays cached
    revs = ['r2', 'x'];
    code = 51;
    await src.index(true);
    expect(Array.from((await src.attention(ref, 'encoder', 0)).head(0))).toEqual([0.2, 0, 0, 0.2].map(Math.fround));
    await all();
    expect([n('attention'), n('overview'), n('metrics')]).toEqual([2, 1, 2]);
  });
  it('drops a pending result of a record whose revision changed meanwhile', async () => {
    let revs = ['r1', 'x'];
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const {fn, calls} = fakeFetch({
      index: () => new Response(JSON.stringify(indexWith(revs))),
      header: () => new Response(JSON.stringify(header)),
    });
    const slow = async (u: string) => {
      if (u.includes('/header')) await gate;
      return fn(u);
    };
    const src = new HttpSource(new URL('http://h/data/plugin/attention/'), slow);
    await src.index();
    const ref = {run: 'r', tag: 't', example: '0', step: 5};
    const first = src.header(ref);
    revs = ['r2', 'x'];
    await src.index(true);
    release();
    await first;
    await src.header(ref);
    expect(calls.filter((c) => c.includes('/header'))).toHaveLength(2);
  });
  it('the LRU keeps only what passes retain', async () => {
    const c = new LruCache<number, string>(1000, () => 1);
    await c.get('a', async () => 1, 'keep');
    await c.get('b', async () => 2, 'drop');
    c.retain((tag) => tag === 'keep');
    expect([c.size, c.bytes]).toEqual([1, 1]);
  });
});

describe('record headers with absurd counts', () => {
  const ok = {
    version: 2,
    tag: 't',
    example: '0',
    step: 0,
    sequences: {input: ['a', 'b', 'c']},
    sentence_b_start: null,
    kinds: {encoder: {query: 'input', key: 'input', layers: 12, heads: 12, q_len: 3, k_len: 3, head_dim: 64, has_qk: false, overview_shape: [3, 3] as [number, number], layer_info: []}},
  };
  it('accepts a real one and refuses counts that would freeze the tab', () => {
    expect(headerProblem(ok)).toBeNull();
    const withKind = (patch: object) => ({...ok, kinds: {encoder: {...ok.kinds.encoder, ...patch}}});
    expect(headerProblem(withKind({layers: 10 ** 9}))).toMatch(/1000000000 layers/);
    expect(headerProblem(withKind({heads: 1e6}))).toMatch(/heads/);
    expect(headerProblem(withKind({layers: 1.5}))).toMatch(/layers/);
    expect(headerProblem(withKind({layers: '12'}))).toMatch(/layers/);
    expect(headerProblem(withKind({q_len: 2 ** 40}))).toMatch(/query tokens/);
    expect(headerProblem(withKind({head_dim: 2 ** 30}))).toMatch(/head size/);
    expect(headerProblem(withKind({overview_shape: [1e9, 3]}))).toMatch(/overview/);
    expect(headerProblem(withKind({key: 'nope'}))).toMatch(/key sequence/);
    expect(headerProblem({...ok, sequences: {input: 'abc'}} as never)).toMatch(/token list/);
  });
  it('reads the bounds from /index when it serves them, else the built-in ones', () => {
    expect(limitsOf(null)).toEqual(LIMITS);
    expect(limitsOf({})).toEqual(LIMITS);
    const served = limitsOf({limits: {layers: 8, heads: 4, tokens: 16, headDim: 32, overview: 64}});
    expect(served).toEqual({layers: 8, heads: 4, tokens: 16, headDim: 32, overview: 64});
    // a malformed field keeps the built-in bound; unknown fields are ignored
    expect(limitsOf({limits: {layers: -1, heads: 1.5, tokens: '9', other: 3} as never})).toEqual(LIMITS);
    const withKind = (patch: object) => ({...ok, kinds: {encoder: {...ok.kinds.encoder, ...patch}}});
    expect(headerProblem(ok, served)).toMatch(/12 layers \(at most 8\)/);
    expect(headerProblem(withKind({layers: 8, heads: 4, head_dim: 32}), served)).toBeNull();
    expect(headerProblem(withKind({layers: 8, heads: 4, head_dim: 33}), served)).toMatch(/head size of 33 \(at most 32\)/);
    expect(headerProblem(withKind({layers: 8, heads: 4, head_dim: 32}), {...served, tokens: 2})).toMatch(/3 input tokens/);
  });
});
