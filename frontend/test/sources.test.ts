// The in-page data source (src/sources/): records in the stored format (docs/format.md), built here byte by
// byte as format.encode_record writes them, answer as the plugin's routes do.
import {describe, expect, it} from 'vitest';
import {EmbeddedSource, poolPyramid} from '../src/sources/embedded';
import {notebookDark} from '../src/sources/page';
import {AssetRecord, crc32c} from '../src/sources/record';
import type {IndexResponse} from '../src/types';

const LUT = Array.from({length: 256}, (_, c) => c / 255);
const REF = {run: 'notebook', tag: 'attention', example: '0', step: 0};

/** A zlib stream (RFC 1950), as the writer stores chunks (CompressionStream: no Node types needed). */
async function zlib(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await new Response(new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new CompressionStream('deflate'))).arrayBuffer());
}

function base64(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/** A dense record: 1 layer, 2 heads, 3 tokens, q/k of width 2 (float16 1.0 = 0x3c00, 0 = 0). */
async function record(corrupt = false): Promise<{bytes: Uint8Array; header: Record<string, unknown>}> {
  const chunks: Uint8Array[] = [];
  let pos = 0;
  const add = (b: Uint8Array): [number, number, number] => {
    chunks.push(b);
    const e: [number, number, number] = [pos, b.length, crc32c(b)];
    pos += b.length;
    return e;
  };
  const codes = (h: number) => Uint8Array.from({length: 9}, (_, i) => (h * 9 + i) * 7 % 256);
  const f16 = (vals: number[]) => new Uint8Array(Uint16Array.from(vals.map((v) => (v ? 0x3c00 : 0))).buffer);
  const table = {
    attention: [[add(await zlib(codes(0))), add(await zlib(codes(1)))]],
    queries: [[add(f16([1, 0, 0, 1, 1, 1])), add(f16([0, 0, 0, 0, 0, 0]))]],
    keys: [[add(f16([1, 0, 0, 1, 0, 0])), add(f16([1, 1, 1, 1, 1, 1]))]],
    overview: add(await zlib(Uint8Array.from({length: 18}, (_, i) => i))),
  };
  const header = {
    version: 3, tag: 'attention', example: '0', step: 0, wall_time: 1, model: null,
    sequences: {input: ['[CLS]', 'a', '[SEP]']}, sentence_b_start: null, special_tokens: {input: [0, 2]},
    kinds: {encoder: {query: 'input', key: 'input', layers: 1, heads: 2, q_len: 3, k_len: 3, head_dim: 2, has_qk: true,
      overview_shape: [3, 3], layer_info: [{}]}},
    metrics: {encoder: {entropy: [[0.5, null]], sink: [[1]]}},
  };
  const head = new TextEncoder().encode(JSON.stringify({...header, chunks: {encoder: table}}));
  const frame = new Uint8Array(16);
  frame.set([0x54, 0x42, 0x41, 0x54, 0x54, 0x4e, 0, 0]);
  const dv = new DataView(frame.buffer);
  dv.setUint32(8, head.length, true);
  dv.setUint32(12, crc32c(head), true);
  const all = new Uint8Array(16 + head.length + pos);
  all.set(frame);
  all.set(head, 16);
  let p = 16 + head.length;
  for (const c of chunks) {
    all.set(c, p);
    p += c.length;
  }
  if (corrupt) all[all.length - 1] ^= 1; // the overview chunk
  return {bytes: all, header};
}

async function source(corrupt = false): Promise<EmbeddedSource> {
  const {bytes, header} = await record(corrupt);
  const index: IndexResponse = {version: 1, codec: {name: 'log8', lut: LUT},
    runs: [{run: 'notebook', tags: [{tag: 'attention', examples: [{example: '0', steps: [0], qk_steps: [0], header: header as never}]}]}]};
  return new EmbeddedSource({index, records: [{...REF, data: base64(bytes)}]});
}

describe('stored records in the page', () => {
  it('crc32c is Castagnoli', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
  });

  it('refuses a damaged header', async () => {
    const {bytes} = await record();
    bytes[20] ^= 1;
    expect(() => AssetRecord.parse(bytes)).toThrow(/checksum/);
    expect(() => AssetRecord.parse(bytes.subarray(0, 10))).toThrow(/magic/);
  });

  it('serves attention, q/k, overview, header and metrics as the routes do', async () => {
    const s = await source();
    const h = await s.header(REF);
    expect(h.sequences.input).toEqual(['[CLS]', 'a', '[SEP]']);
    expect('chunks' in h).toBe(false);
    const a = await s.attention(REF, 'encoder', 0);
    expect([a.heads, a.q, a.k]).toEqual([2, 3, 3]);
    expect(a.head(1)[2]).toBeCloseTo(((9 + 2) * 7) / 255, 6);
    const one = await s.attention(REF, 'encoder', 0, 1);
    expect([one.heads, one.headOffset, one.head(1)[2]]).toEqual([1, 1, a.head(1)[2]]);
    const qk = (await s.qk(REF, 'encoder', 0, 0))!;
    expect([...qk.queries]).toEqual([1, 0, 0, 1, 1, 1]);
    expect([...qk.keys]).toEqual([1, 0, 0, 1, 0, 0]);
    const ov = await s.overview(REF, 'encoder');
    expect([ov.layers, ov.heads, ov.pq, ov.pk, ov.data[17]]).toEqual([1, 2, 3, 3, Math.fround(17 / 255)]);
    const w = await s.window!(REF, 'encoder', 0, 1, [1, 3], [0, 2]);
    expect([w.rows, w.cols, w.data[3]]).toEqual([2, 2, a.head(1)[2 * 3 + 1]]);
    const m = await s.metrics(REF);
    expect(m).toEqual({steps: [0], kinds: {encoder: {entropy: [[[0.5, null]]], sink: [null]}}}); // sink: not layers x heads
    await expect(s.attention(REF, 'encoder', 1)).rejects.toThrow(/layer 1 out of range/);
    await expect(s.attention(REF, 'cross', 0)).rejects.toThrow(/no 'cross' attention/);
    await expect(s.header({...REF, step: 5})).rejects.toThrow(/no step 5/);
    const d = await s.divergence(REF, 'encoder', 0, 0);
    expect(d.js).toEqual([[0, 0]]);
    const r = await s.rollout(REF, 'encoder', 1, 'mean'); // residual 1: the identity
    expect([...r.data]).toEqual([1, 0, 0, 0, 1, 0, 0, 0, 1]);
  });

  it('checks every chunk', async () => {
    await expect((await source(true)).overview(REF, 'encoder')).rejects.toThrow(/checksum/);
  });

  it('pools a pyramid level as format.pool_pyramid', () => {
    // 4 x 4 fine bins of 4 tokens -> 2 x 2: keys summed, queries averaged
    const fine = Float32Array.from({length: 16}, (_, i) => i);
    expect([...poolPyramid(fine, 4, 4, 4, 4, 2, 2)]).toEqual([(0 + 1 + 4 + 5) / 2, (2 + 3 + 6 + 7) / 2, (8 + 9 + 12 + 13) / 2, (10 + 11 + 14 + 15) / 2]);
  });

  it('reads the notebook theme', () => {
    const doc = (attrs: Record<string, string>, cls = '') =>
      ({body: {getAttribute: (k: string) => attrs[k] ?? null, classList: {contains: (c: string) => cls.split(' ').includes(c)}},
        documentElement: {getAttribute: () => null}, defaultView: null}) as unknown as Document;
    expect(notebookDark(doc({'data-jp-theme-light': 'false'}))).toBe(true);
    expect(notebookDark(doc({}, 'vscode-light'))).toBe(false);
    expect(notebookDark(doc({}, 'vscode-dark'))).toBe(true);
    expect(notebookDark(doc({}))).toBe(null);
    expect(notebookDark(null)).toBe(null);
  });
});
