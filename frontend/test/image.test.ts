// The image view and what it stands on: header.image checks, patch ↔ pixel mapping, the overlay drawn on
// each patch's own pixels, B − A, patch token labels, and the image bytes from the HTTP and in-page sources.
import {describe, expect, it} from 'vitest';
import {loadStory} from '../dev/stories';
import {FixtureSource, VIT_PNG} from '../dev/fixtures';
import {encodePng} from '../dev/png';
import {HttpSource} from '../src/api';
import {buildAxes} from '../src/axes';
import {DIVERGING, LIGHT, rampColor} from '../src/draw/colors';
import {SvgContext} from '../src/draw/ctx';
import {displaySize, imageOf, imageProblem, patchAtPixel, patchOf, patchRects, patchToken} from '../src/image';
import {AssetRecord, crc32c} from '../src/sources/record';
import {EmbeddedSource} from '../src/sources/embedded';
import {defaultSelection} from '../src/state';
import {tokenLabels} from '../src/tokens';
import type {Header, ImageInfo, IndexResponse} from '../src/types';
import {defaultQuery, diffImageData, diffWeights, imageData, imageUnavailable, patchWeights, type ImageData} from '../src/views/image/data';
import {ImagePainter, imageLayout, legendText, patchStyle, RAMP} from '../src/views/image/draw';
import {imageSpec, imageUrl, queryRow, type ImageState} from '../src/views/image/spec';
import type {Loaded, ViewHost} from '../src/views/spec';
import {fixtureRecord} from '../dev/stories/story';
import type {DataSource, Grid, Kind, RecordRef} from '../src/types';
import {whyUnavailable} from '../src/views/spec';

const IMG: ImageInfo = {mime: 'image/png', width: 32, height: 32, grid: [4, 4], sequence: 'input', patch_start: 1, bytes: 100};
const TOKENS = ['[CLS]', ...Array.from({length: 16}, () => 'Ġpatch'), '[REG]'];

function header(image: unknown = IMG, tokens = TOKENS): Header {
  return {
    version: 4, tag: 't', example: '0', step: 0, sequences: {input: tokens}, sentence_b_start: null, special_tokens: {input: [0, tokens.length - 1]},
    kinds: {encoder: {query: 'input', key: 'input', layers: 1, heads: 1, q_len: tokens.length, k_len: tokens.length, head_dim: 4, has_qk: false, overview_shape: [4, 4], layer_info: [{}]}},
    ...(image === null ? {} : {image: image as ImageInfo}),
  };
}

/** A row over 18 keys with `w` on patch (r, c) and the rest on [CLS]. */
function plantedRow(r: number, c: number, w = 0.8): Float32Array {
  const row = new Float32Array(18);
  row[0] = 1 - w;
  row[patchToken(IMG, r, c)] = w;
  return row;
}

/** The fill rectangles an SVG recording holds: x, y, width, height, fill, opacity. */
function rects(svg: SvgContext): {x: number; y: number; w: number; h: number; fill: string; alpha: number}[] {
  return svg.elements
    .filter((e) => e.startsWith('<rect ') && !e.includes('fill="none"'))
    .map((e) => {
      const a = (k: string) => new RegExp(` ${k}="([^"]*)"`).exec(e)?.[1];
      return {x: Number(a('x')), y: Number(a('y')), w: Number(a('width')), h: Number(a('height')), fill: a('fill') ?? '', alpha: a('fill-opacity') === undefined ? 1 : Number(a('fill-opacity'))};
    });
}

describe('header.image', () => {
  it('accepts a layout that fits the tokens, and says why one does not', () => {
    expect(imageProblem(header())).toBeNull();
    expect(imageProblem(header(null))).toBeNull();
    expect(imageOf(header(null))).toBeNull();
    expect(imageOf(header())).toEqual(IMG);
    // a 5 × 5 grid needs 25 patch tokens from token 1: the record has 18 tokens
    expect(imageProblem(header({...IMG, grid: [5, 5]}))).toMatch(/patch grid 5 × 5 \(25 patches from token 1\) does not fit the 18 tokens/);
    expect(imageProblem(header({...IMG, patch_start: 3}))).toMatch(/does not fit/);
    expect(imageProblem(header({...IMG, grid: [4]}))).toMatch(/malformed patch grid/);
    expect(imageProblem(header({...IMG, grid: [0, 4]}))).toMatch(/malformed patch grid/);
    expect(imageProblem(header({...IMG, mime: 'image/svg+xml'}))).toMatch(/unsupported type/);
    expect(imageProblem(header({...IMG, width: 100000, height: 100000}))).toMatch(/100000 × 100000 pixels/);
    expect(imageProblem(header({...IMG, width: 3, height: 3}))).toMatch(/finer than/);
    expect(imageProblem(header({...IMG, sequence: 'pixels'}))).toMatch(/names no token sequence/);
    expect(imageProblem(header({...IMG, bytes: -1}))).toMatch(/byte count/);
    expect(imageProblem(header('png'))).toMatch(/malformed/);
  });
  it('makes the image view unavailable with the reason, and only it', () => {
    expect(imageUnavailable(header(null), 'encoder')).toBe('This record has no image.');
    expect(whyUnavailable(imageSpec, header(null), 'encoder')).toBe('This record has no image.');
    expect(whyUnavailable(imageSpec, header({...IMG, grid: [5, 5]}), 'encoder')).toMatch(/^This record’s image cannot be drawn: its patch grid 5 × 5 .* does not fit the 18 tokens/);
    expect(whyUnavailable(imageSpec, header(), 'encoder')).toBeNull();
    // keys that are not the image's sequence (e.g. a decoder's cross-attention to text)
    const h = header();
    h.sequences.target = ['a', 'b'];
    h.kinds.cross = {...h.kinds.encoder!, query: 'input', key: 'target'};
    expect(whyUnavailable(imageSpec, h, 'cross')).toMatch(/keys are the “target” tokens, not the image’s patches/);
  });
});

describe('patches and pixels', () => {
  it('maps tokens to patches row-major', () => {
    expect(patchOf(IMG, 'input', 0)).toBeNull();
    expect(patchOf(IMG, 'input', 1)).toEqual([0, 0]);
    expect(patchOf(IMG, 'input', 7)).toEqual([1, 2]);
    expect(patchOf(IMG, 'input', 16)).toEqual([3, 3]);
    expect(patchOf(IMG, 'input', 17)).toBeNull();
    expect(patchOf(IMG, 'target', 7)).toBeNull();
    expect(patchToken(IMG, 1, 2)).toBe(7);
    expect(defaultQuery(header(), 'input')).toBe(0);
    // no CLS (SigLIP-like): the first non-patch token, else token 0
    expect(defaultQuery(header({...IMG, patch_start: 0}, [...TOKENS.slice(1), 'x']), 'input')).toBe(16);
  });
  it('tiles the drawn image with whole-pixel patch rectangles, and finds the patch under any pixel', () => {
    for (const [W, H, rows, cols, dw, dh] of [
      [32, 32, 4, 4, 480, 480],
      [30, 20, 3, 4, 91, 61],
      [224, 224, 14, 14, 448, 448],
    ]) {
      const im: ImageInfo = {...IMG, width: W, height: H, grid: [rows, cols]};
      const R = patchRects(im, dw, dh);
      const owner = new Int32Array(dw * dh).fill(-1);
      let overlaps = 0;
      for (let p = 0; p < rows * cols; p++) {
        const [x0, y0, x1, y1] = R.subarray(4 * p, 4 * p + 4);
        for (let y = y0; y < y1; y++)
          for (let x = x0; x < x1; x++) {
            if (owner[y * dw + x] !== -1) overlaps++;
            owner[y * dw + x] = p;
          }
      }
      expect(overlaps).toBe(0);
      expect(owner.every((p) => p >= 0)).toBe(true);
      let wrong = 0;
      for (let y = 0; y < dh; y += 3)
        for (let x = 0; x < dw; x += 2) {
          const [r, c] = patchAtPixel(im, dw, dh, x, y)!;
          if (r * cols + c !== owner[y * dw + x]) wrong++;
        }
      expect(wrong).toBe(0);
      expect(patchAtPixel(im, dw, dh, dw, 0)).toBeNull();
      expect(patchAtPixel(im, dw, dh, -1, 0)).toBeNull();
    }
    // whole-factor enlargement: 8 px patches of a 32 px image drawn at 15× are 120 px squares
    expect(displaySize(IMG, 500, 500)).toEqual({width: 480, height: 480, scale: 15});
    expect(Array.from(patchRects(IMG, 480, 480).subarray(4 * 6, 4 * 7))).toEqual([240, 120, 360, 240]);
  });
  it('paints a planted weight on exactly that patch’s pixels', () => {
    const h = header();
    for (const [r, c] of [[1, 2], [0, 0], [3, 3], [2, 1]] as [number, number][]) {
      const d = imageData({header: h, querySeq: 'input', query: 0, row: plantedRow(r, c), what: 'L0 H0'});
      expect(d.weights[r * 4 + c]).toBeCloseTo(0.8, 6);
      expect(d.outside).toBeCloseTo(0.2, 6);
      const L = imageLayout(d, 500);
      const svg = new SvgContext();
      const n = new ImagePainter(d, L, LIGHT, 0.7).paintHeat(svg);
      expect(n).toBe(1); // the other patches are 0: nothing painted there
      const [rect] = rects(svg);
      // image at (8, 8), 480 px: patch (r, c) covers x ∈ [8 + 120c, 8 + 120(c + 1)), y likewise
      expect([rect.x, rect.y, rect.w, rect.h]).toEqual([L.x + 120 * c, L.y + 120 * r, 120, 120]);
      expect(rect.fill).toBe(rampColor(RAMP, 255));
      expect(rect.alpha).toBeCloseTo(0.7, 3);
    }
  });
  it('states the colour scale and opacity rule; weights map to colour and √ opacity', () => {
    expect(patchStyle(0.2, 0.8, false, 0.7).alpha).toBeCloseTo(0.7 * Math.sqrt(0.25), 6);
    expect(patchStyle(0.2, 0.8, false, 0.7).color).toBe(rampColor(RAMP, 255 * 0.25));
    expect(patchStyle(0, 0.8, false, 0.7).alpha).toBe(0);
    expect(patchStyle(-0.4, 0.8, true, 1)).toEqual({color: DIVERGING.neg, alpha: Math.sqrt(0.5)});
    expect(patchStyle(0.8, 0.8, true, 1)).toEqual({color: DIVERGING.pos, alpha: 1});
    const d = imageData({header: header(), querySeq: 'input', query: 0, row: plantedRow(1, 2), what: 'L0 H0'});
    expect(legendText(d, 0.7)).toMatch(/viridis from 0 to 0\.8.*opacity = 0\.7 × √\(weight \/ 0\.8\)/);
    expect(legendText({...d, signed: true}, 0.5)).toMatch(/blue where B attends more, red where A does; opacity = 0\.5 × √\(\|B − A\|/);
  });
});

describe('B − A', () => {
  it('subtracts per patch, and draws by sign on those patches', () => {
    const h = header();
    const a = imageData({header: h, querySeq: 'input', query: 0, row: plantedRow(2, 1), what: 'L0 H0'});
    const b = imageData({header: h, querySeq: 'input', query: 0, row: plantedRow(1, 2, 0.6), what: 'L0 H0'});
    const d = diffImageData(a, b);
    expect(d.signed).toBe(true);
    expect(d.weights[1 * 4 + 2]).toBeCloseTo(0.6, 6);
    expect(d.weights[2 * 4 + 1]).toBeCloseTo(-0.8, 6);
    expect(Array.from(d.weights).filter((v) => v !== 0)).toHaveLength(2);
    expect(d.max).toBeCloseTo(0.8, 6);
    expect(Array.from(diffWeights(Float32Array.of(0.1, 0.5), Float32Array.of(0.3, 0.2)))).toEqual([Math.fround(0.3) - Math.fround(0.1), Math.fround(0.2) - Math.fround(0.5)].map(Math.fround));
    const L = imageLayout(d, 500);
    const svg = new SvgContext();
    expect(new ImagePainter(d, L, LIGHT, 1).paintHeat(svg)).toBe(2);
    const byFill = Object.fromEntries(rects(svg).map((r) => [r.fill, r]));
    expect([byFill[DIVERGING.pos].x, byFill[DIVERGING.pos].y]).toEqual([L.x + 240, L.y + 120]); // (1, 2): more in B
    expect([byFill[DIVERGING.neg].x, byFill[DIVERGING.neg].y]).toEqual([L.x + 120, L.y + 240]); // (2, 1): more in A
    expect(byFill[DIVERGING.neg].alpha).toBeCloseTo(1, 3);
    expect(byFill[DIVERGING.pos].alpha).toBeCloseTo(Math.sqrt(0.6 / 0.8), 3);
  });
  it('the fixture’s two checkpoints: [CLS] moved from patch (2, 1) to (1, 2)', async () => {
    const src = new FixtureSource();
    const story = await loadStory('image');
    const b = (await story.data(src)) as ImageData;
    const idx = await src.index();
    const ex = idx.runs.find((r) => r.run === 'vit')!.tags[0].examples[0];
    const ref = {run: 'vit', tag: 'probes', example: '0', step: 0};
    const att = await src.attention(ref, 'encoder', 0);
    const rows = Array.from({length: att.heads}, (_, h) => att.head(h).slice(0, att.k));
    const mean = rows[0].map((_, j) => rows.reduce((s, r) => s + r[j], 0) / rows.length);
    const a = imageData({header: ex.header, querySeq: 'input', query: 0, row: mean, what: 'L0'});
    let top = 0;
    b.weights.forEach((w, i) => (w > b.weights[top] ? (top = i) : 0));
    expect(top).toBe(1 * 4 + 2);
    const d = diffImageData(a, b);
    expect(d.weights[6]).toBeGreaterThan(0.4);
    expect(d.weights[9]).toBeLessThan(-0.4);
  });
});

describe('patch token labels', () => {
  it('labels patches by grid position in every view’s axes, never merged; other tokens keep their text', () => {
    const labels = tokenLabels(header(), 'input');
    expect(labels[0]).toBe('[CLS]');
    expect(labels[1]).toBe('▦ 0,0');
    expect(labels[7]).toBe('▦ 1,2');
    expect(labels[16]).toBe('▦ 3,3');
    expect(labels[17]).toBe('[REG]');
    // without an image, or with one that does not fit: the tokens as they are
    expect(tokenLabels(header(null), 'input')).toEqual(TOKENS);
    expect(tokenLabels(header({...IMG, grid: [5, 5]}), 'input')).toEqual(TOKENS);
    // BPE-looking text would merge "Ġpatch" runs; patches stand alone whatever the merge setting
    const axes = buildAxes(header(), 'encoder', {...defaultSelection(), merge: true});
    expect(axes.rows.labels).toEqual(labels);
    expect(axes.cols.labels.length).toBe(18);
    const hidden = buildAxes(header(), 'encoder', {...defaultSelection(), hideSpecial: true});
    expect(hidden.rows.labels).toEqual(labels.slice(1, 17));
    // untrusted text (a VLM's text tokens) stays text, not markup
    const vlm = header({...IMG, patch_start: 2}, ['<b>x</b>', 'Ġdescribe', ...Array.from({length: 16}, () => '<image>')]);
    expect(tokenLabels(vlm, 'input').slice(0, 3)).toEqual(['<b>x</b>', 'Ġdescribe', '▦ 0,0']);
  });
});

describe('image view state', () => {
  it('round-trips its keys; reconciles a query past the tokens; resets it with the example', () => {
    const s = {query: 7, agg: 'head' as const, opacity: 0.4};
    const w = imageUrl.write(s);
    expect(w).toEqual([['iq', '7'], ['ia', 'head'], ['io', '0.4']]);
    expect(imageUrl.parse((k) => new Map(w).get(k))).toEqual(s);
    expect(imageUrl.parse((k) => ({iq: '-1', ia: 'nope', io: '7'})[k])).toEqual({query: null, agg: 'mean', opacity: 0.7});
    expect(imageUrl.reconcile!(s, header().kinds.encoder!).query).toBe(7);
    expect(imageUrl.reconcile!({...s, query: 40}, header().kinds.encoder!).query).toBeNull();
    expect(imageUrl.reset!(s, new Set(['example'])).query).toBeNull();
    expect(imageUrl.reset!(s, new Set(['layer'])).query).toBe(7);
  });
});

describe('image bytes', () => {
  it('the fixture image is a PNG of the header’s size', () => {
    expect(Array.from(VIT_PNG.subarray(0, 8))).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const dv = new DataView(VIT_PNG.buffer, VIT_PNG.byteOffset);
    expect([dv.getUint32(16), dv.getUint32(20)]).toEqual([32, 32]);
  });
  it('HttpSource asks /image with the record and answers bytes and type; a 404 gives its text', async () => {
    const urls: string[] = [];
    const png = encodePng(2, 2, () => [1, 2, 3]);
    const fn = async (u: string) => {
      urls.push(u);
      if (u.includes('step=5')) return new Response('step 5 of example "0" has no image', {status: 404, statusText: 'Not Found', headers: {'Content-Type': 'text/plain'}});
      return new Response(png as Uint8Array<ArrayBuffer>, {status: 200, headers: {'Content-Type': 'image/png'}});
    };
    const src = new HttpSource(new URL('http://h/data/plugin/attention/'), fn);
    const got = await src.image({run: 'r', tag: 't', example: '0', step: 3});
    expect(got.mime).toBe('image/png');
    expect(Array.from(got.bytes)).toEqual(Array.from(png));
    expect(urls[0]).toBe('http://h/data/plugin/attention/image?run=r&tag=t&example=0&step=3');
    await expect(src.image({run: 'r', tag: 't', example: '0', step: 5})).rejects.toMatchObject({status: 404, message: 'step 5 of example "0" has no image'});
  });
});

/** An asset record with an image chunk at the top level of the chunk table (raw bytes, not zlib). */
function recordWithImage(png: Uint8Array | null, corrupt = false): {bytes: Uint8Array; header: Record<string, unknown>} {
  const h = header(png ? {...IMG, bytes: png.length} : null);
  const chunks = png ? {image: [0, png.length, crc32c(png)]} : {};
  const head = new TextEncoder().encode(JSON.stringify({...h, chunks}));
  const all = new Uint8Array(16 + head.length + (png?.length ?? 0));
  all.set([0x54, 0x42, 0x41, 0x54, 0x54, 0x4e, 0, 0]);
  const dv = new DataView(all.buffer);
  dv.setUint32(8, head.length, true);
  dv.setUint32(12, crc32c(head), true);
  all.set(head, 16);
  if (png) all.set(png, 16 + head.length);
  if (corrupt) all[all.length - 3] ^= 1;
  return {bytes: all, header: h as unknown as Record<string, unknown>};
}

function embedded(rec: {bytes: Uint8Array; header: Record<string, unknown>}): EmbeddedSource {
  let s = '';
  for (const b of rec.bytes) s += String.fromCharCode(b);
  const index: IndexResponse = {version: 1, codec: {name: 'log8', lut: Array.from({length: 256}, (_, c) => c / 255)},
    runs: [{run: 'nb', tags: [{tag: 't', examples: [{example: '0', steps: [0], qk_steps: [], header: rec.header as never}]}]}]};
  return new EmbeddedSource({index, records: [{run: 'nb', tag: 't', example: '0', step: 0, data: btoa(s)}]});
}

describe('the in-page source’s image chunk', () => {
  const REF = {run: 'nb', tag: 't', example: '0', step: 0};
  it('reads the top-level image chunk, CRC32C checked', async () => {
    const rec = recordWithImage(VIT_PNG);
    expect(AssetRecord.parse(rec.bytes).recordChunk('image')).toEqual(VIT_PNG);
    const got = await embedded(rec).image(REF);
    expect(got.mime).toBe('image/png');
    expect(Array.from(got.bytes)).toEqual(Array.from(VIT_PNG));
    expect((await embedded(rec).header(REF)).image).toEqual({...IMG, bytes: VIT_PNG.length});
  });
  it('refuses a damaged image (400) and answers 404 without one', async () => {
    await expect(embedded(recordWithImage(VIT_PNG, true)).image(REF)).rejects.toMatchObject({status: 400, message: expect.stringMatching(/image is corrupt: image chunk checksum mismatch/)});
    await expect(embedded(recordWithImage(null)).image(REF)).rejects.toMatchObject({status: 404, message: expect.stringMatching(/has no image/)});
    expect(AssetRecord.parse(recordWithImage(null).bytes).recordChunk('image')).toBeNull();
  });
});

/** A ViewHost over `source` with no DOM: enough for loading (queryRow, show up to its panes). */
function stubHost(source: DataSource, state: ImageState, sel: Partial<ReturnType<typeof defaultSelection>> = {}): ViewHost<ImageState> {
  return {
    source, sel: {...defaultSelection(), ...sel}, state, theme: LIGHT, weighting: 'weights', current: () => true, record: () => null,
    panes: () => { throw new Error('no panes in this test'); }, shown: () => [], update() {}, remember() {}, open() {}, redraw() {},
  };
}

describe('the query row', () => {
  it('a long record: the query’s exact row from /window for each selected head, averaged', async () => {
    const h = header();
    h.kinds.encoder = {...h.kinds.encoder!, heads: 3, layout: 'long', exact: true};
    const calls: string[] = [];
    const source = {
      window: async (_r: RecordRef, _k: Kind, layer: number, head: number, rows: [number, number], cols: [number, number]): Promise<Grid> => {
        calls.push(`${layer} ${head} ${rows} ${cols}`);
        return {rows: 1, cols: 18, data: plantedRow(head, head, 0.9)};
      },
    } as unknown as DataSource;
    const x: Loaded = {ref: {run: 'r', tag: 't', example: '0', step: 0}, header: h, example: {example: '0', steps: [0], qk_steps: [0], header: h}, kind: 'encoder'};
    const {row, what, notes} = await queryRow(stubHost(source, {query: null, agg: 'mean', opacity: 0.7}, {layer: 1, heads: [0, 2]}), x, 5, 'mean');
    expect(calls).toEqual(['1 0 5,6 0,18', '1 2 5,6 0,18']);
    expect(what).toBe('L1, mean of heads 0, 2');
    expect(notes.join(' ')).toMatch(/exact row, recomputed from q\/k/);
    const w = patchWeights(row, IMG);
    expect(w[0]).toBeCloseTo(0.45, 6);
    expect(w[2 * 4 + 2]).toBeCloseTo(0.45, 6);
    calls.length = 0;
    const one = await queryRow(stubHost(source, {query: null, agg: 'head', opacity: 0.7}, {layer: 0, neuronHead: 1}), x, 0, 'head');
    expect(calls).toEqual(['0 1 0,1 0,18']);
    expect(one.what).toBe('L0 H1');
  });
  it('rollout: the query’s row of the rollout; refused for pooled (long) rollouts', async () => {
    const src = new FixtureSource();
    const x = await fixtureRecord(src, 'vit', '0', 'encoder');
    const host = stubHost(src, {query: null, agg: 'rollout', opacity: 0.7});
    const {row, what} = await queryRow(host, x, 0, 'rollout');
    const r = await src.rollout(x.ref, 'encoder', 0.5, 'mean');
    expect(Array.from(row)).toEqual(Array.from(r.data.slice(0, 18)));
    expect(what).toMatch(/^rollout over all layers \(residual 0\.5, mean fusion\)$/);
    const pooled = {rollout: async () => ({n: 4, data: new Float32Array(16)})} as unknown as DataSource;
    await expect(queryRow(stubHost(pooled, host.state), x, 0, 'rollout')).rejects.toThrow(/covers 4 bins, not its 18 tokens/);
  });
  it('a record whose image is missing or corrupt: a clear error in this view (the attention loads first)', async () => {
    class NoImage extends FixtureSource {
      override image(): Promise<never> {
        return Promise.reject(new Error('step 100 has no image (404)'));
      }
    }
    const src = new NoImage();
    const x = await fixtureRecord(src, 'vit', '0', 'encoder');
    await expect(imageSpec.show(stubHost(src, {query: null, agg: 'mean', opacity: 0.7}), x, null, 'side')).rejects.toThrow(
      /^This record’s image could not be loaded \(vit @ 100\): step 100 has no image \(404\)\. The other views do not need it\.$/,
    );
  });
});
