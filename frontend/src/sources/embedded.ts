// A DataSource over records embedded in the page (notebooks, standalone HTML): the same answers as the
// plugin's routes (docs/http-api.md), computed from the stored bytes as the backend computes them
// (reader.py, plugin.py), so the views cannot tell it from HttpSource. Nothing is requested from anywhere.
import {jensenShannon, rollout as rolloutOf} from '../derived';
import {TagScores} from '../headscores';
import {ApiError, CodedAttention, FloatAttention, LruCache, decodeCodes, decodeFloat16, makeLut} from '../api';
import type {
  AttentionLayer,
  DataSource,
  DivergenceResponse,
  ExampleRef,
  Fusion,
  Grid,
  Header,
  HeadExamplesResponse,
  HeadScoresResponse,
  HeadTrendResponse,
  ImageBytes,
  IndexResponse,
  Kind,
  KindInfo,
  MetricsResponse,
  Overview,
  PyramidAgg,
  QK,
  RecordRef,
  Rollout,
  TagRef,
  TopK,
  Weighting,
} from '../types';
import {KINDS, METRIC_NAMES} from '../types';
import {AssetRecord, fromBase64, inflate} from './record';

/** One stored record: where it belongs and its bytes (the asset record, frame to last chunk) in base64. */
export interface EmbeddedRecord {
  run: string;
  tag: string;
  example: string;
  step: number;
  data: string;
}

/** What the page carries: `/index` as the backend serves it, and every record it lists. */
export interface EmbeddedData {
  index: IndexResponse;
  records: EmbeddedRecord[];
}

const ORIGIN = 'embedded';
const notFound = (msg: string) => new ApiError(`Not found: ${msg}`, 404, ORIGIN);
const invalid = (msg: string) => new ApiError(`Invalid argument: ${msg}`, 400, ORIGIN);

/** The page holds stored weights only: no backend value-weights them here (the source lists no `weightings`). */
function rawOnly(w: Weighting | undefined): void {
  if (w === 'value') throw notFound('value-weighted attention is not embedded in this page (it holds the stored weights only)');
}

/** Runs a TagScores call, its "404: …" / "400: …" errors as the backend's. */
function scoresCall<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (msg.startsWith('404: ')) throw notFound(msg.slice(5));
    if (msg.startsWith('400: ')) throw invalid(msg.slice(5));
    throw e;
  }
}

function refKey(r: RecordRef): string {
  return JSON.stringify([r.run, r.tag, r.example, r.step]);
}

/** Float32 queries/keys from a stored q/k chunk (`qk_dtype`: float16, bfloat16 bits or float32). */
function decodeQkChunk(bytes: Uint8Array, dtype: string, count: number): Float32Array {
  if (dtype === 'float16') return decodeFloat16(bytes, 0, count);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const width = dtype === 'float32' ? 4 : 2;
  if (bytes.length < count * width) throw new Error('q/k chunk too short');
  const out = new Float32Array(count);
  if (dtype === 'float32') for (let i = 0; i < count; i++) out[i] = dv.getFloat32(4 * i, true);
  else if (dtype === 'bfloat16') {
    const bits = new DataView(new ArrayBuffer(4));
    for (let i = 0; i < count; i++) {
      bits.setUint32(0, dv.getUint16(2 * i, true) << 16);
      out[i] = bits.getFloat32(0);
    }
  } else throw new Error(`unknown q/k type ${dtype}`);
  return out;
}

/** How many of `length` tokens fall in each of `count` bins (`floor(i * count / length)`). */
function binCounts(length: number, count: number): number[] {
  const out = new Array<number>(count).fill(0);
  for (let i = 0; i < length; i++) out[Math.floor((i * count) / length)]++;
  return out;
}

/** Fine bin → coarse bin of one side, as the backend's (bins nest: every token of a fine bin is in one coarse bin). */
function coarseMap(f: number, b: number, n: number): number[] {
  const map = new Array<number>(f).fill(0);
  for (let i = 0; i < n; i++) map[Math.floor((i * f) / n)] = Math.floor((i * b) / n);
  return map;
}

/** A coarser level of a max pyramid (format.pool_pyramid_max): each coarse cell the largest of its fine cells. */
export function poolPyramidMax(fine: Float32Array, fq: number, fk: number, qLen: number, kLen: number, bq: number, bk: number): Float32Array {
  const cq = coarseMap(fq, bq, qLen);
  const ck = coarseMap(fk, bk, kLen);
  const out = new Float32Array(bq * bk); // weights are >= 0
  for (let i = 0; i < fq; i++) {
    for (let j = 0; j < fk; j++) {
      const o = cq[i] * bk + ck[j];
      if (fine[i * fk + j] > out[o]) out[o] = fine[i * fk + j];
    }
  }
  return out;
}

/** A coarser pyramid level (format.pool_pyramid): keys summed, queries averaged weighted by tokens per bin. */
export function poolPyramid(fine: Float32Array, fq: number, fk: number, qLen: number, kLen: number, bq: number, bk: number): Float32Array {
  const cq = coarseMap(fq, bq, qLen);
  const ck = coarseMap(fk, bk, kLen);
  const w = binCounts(qLen, fq);
  const sum = new Float64Array(bq * bk);
  const wsum = new Float64Array(bq);
  for (let i = 0; i < fq; i++) {
    wsum[cq[i]] += w[i];
    for (let j = 0; j < fk; j++) sum[cq[i] * bk + ck[j]] += fine[i * fk + j] * w[i];
  }
  const out = new Float32Array(bq * bk);
  for (let i = 0; i < bq; i++) for (let j = 0; j < bk; j++) out[i * bk + j] = wsum[i] ? sum[i * bk + j] / wsum[i] : 0;
  return out;
}

/** Bins of pyramid `level` along a side whose stored level has `finest` bins over `length` tokens (reader._level_bins). */
function levelBins(finest: number, length: number, level: number): number {
  if (finest === length) return Math.max(1, Math.ceil(finest / 2 ** level));
  let b = finest;
  for (let l = 0; l < level && b % 2 === 0; l++) b /= 2;
  return b;
}

export class EmbeddedSource implements DataSource {
  private readonly lut: Float32Array;
  private readonly raw = new Map<string, string>();
  private readonly parsed = new Map<string, AssetRecord>();
  private readonly cache = new LruCache<unknown>(512 * 1024 * 1024, (v) => (v instanceof CodedAttention ? v.codes.length * 5 : v && typeof v === 'object' && 'data' in v ? (v as {data: Float32Array}).data.byteLength : 4096));

  constructor(private readonly data: EmbeddedData) {
    if (!data || !data.index || !Array.isArray(data.index.runs) || !Array.isArray(data.records)) throw new Error('the page holds no attention data');
    this.lut = makeLut(data.index.codec.lut);
    for (const r of data.records) this.raw.set(refKey(r), r.data);
  }

  index(): Promise<IndexResponse> {
    return Promise.resolve(this.data.index);
  }

  private record(ref: RecordRef): AssetRecord {
    const key = refKey(ref);
    let rec = this.parsed.get(key);
    if (!rec) {
      const b64 = this.raw.get(key);
      if (b64 === undefined) throw notFound(`example ${JSON.stringify(ref.example)} of ${JSON.stringify(ref.run)}/${JSON.stringify(ref.tag)} has no step ${ref.step} in this page`);
      rec = AssetRecord.parse(fromBase64(b64));
      this.parsed.set(key, rec);
    }
    return rec;
  }

  private kind(ref: RecordRef, kind: Kind): {rec: AssetRecord; k: KindInfo} {
    const rec = this.record(ref);
    const k = rec.header.kinds[kind];
    if (!k) throw notFound(`no '${kind}' attention at step ${ref.step} (logged kinds: ${Object.keys(rec.header.kinds).sort().join(', ')})`);
    return {rec, k};
  }

  private checkLayerHead(k: KindInfo, layer: number, head?: number): void {
    if (!Number.isInteger(layer) || layer < 0 || layer >= k.layers) throw invalid(`layer ${layer} out of range (0..${k.layers - 1})`);
    if (head !== undefined && (!Number.isInteger(head) || head < 0 || head >= k.heads)) throw invalid(`head ${head} out of range (0..${k.heads - 1})`);
  }

  private memo<T>(key: string, load: () => Promise<T>): Promise<T> {
    return this.cache.get(key, load) as Promise<T>;
  }

  async header(ref: RecordRef): Promise<Header> {
    return this.record(ref).publicHeader();
  }

  /** The record's `image` chunk (CRC32C checked), as `/image` answers it. */
  async image(ref: RecordRef): Promise<ImageBytes> {
    const rec = this.record(ref);
    const im = rec.header.image;
    if (!im) throw notFound(`step ${ref.step} of example ${JSON.stringify(ref.example)} has no image`);
    let bytes: Uint8Array | null;
    try {
      bytes = rec.recordChunk('image');
    } catch (e) {
      throw invalid(`the record's image is corrupt: ${(e as Error).message}`);
    }
    if (!bytes) throw notFound(`step ${ref.step} of example ${JSON.stringify(ref.example)} has no image chunk`);
    if (typeof im.bytes === 'number' && bytes.length !== im.bytes) throw invalid(`the record's image is corrupt: ${bytes.length} bytes stored, its header says ${im.bytes}`);
    return {mime: im.mime, bytes};
  }

  async attention(ref: RecordRef, kind: Kind, layer: number, head?: number, weighting?: Weighting): Promise<AttentionLayer> {
    rawOnly(weighting);
    const {rec, k} = this.kind(ref, kind);
    this.checkLayerHead(k, layer, head);
    if (k.layout === 'long') throw invalid(`${kind} attention at step ${ref.step} is a long layer (${k.q_len} x ${k.k_len} tokens, not stored densely): ask /window for exact values, /pyramid for the pooled head or /topk for each row's largest`);
    const full = await this.memo(`att ${refKey(ref)} ${kind} ${layer}`, async () => {
      const q = k.q_len!;
      const n = q * k.k_len!;
      const codes = new Uint8Array(k.heads * n);
      for (let h = 0; h < k.heads; h++) codes.set(await inflate(rec.chunk(kind, 'attention', layer, h), n), h * n);
      return new CodedAttention(k.heads, q, k.k_len!, codes, this.lut);
    });
    if (head === undefined) return full;
    const n = full.q * full.k;
    return new CodedAttention(1, full.q, full.k, full.codes.subarray(head * n, (head + 1) * n), this.lut, head);
  }

  async overview(ref: RecordRef, kind: Kind, weighting?: Weighting): Promise<Overview> {
    rawOnly(weighting);
    const {rec, k} = this.kind(ref, kind);
    return this.memo(`ov ${refKey(ref)} ${kind}`, async () => {
      const [pq, pk] = k.overview_shape;
      if (!rec.has(kind, 'overview') && k.layout !== 'long') {
        // a compact notebook page leaves the overview out: pooled here from the attention, as format.pool_overview
        const data = new Float32Array(k.layers * k.heads * pq * pk);
        for (let l = 0; l < k.layers; l++) {
          const a = await this.attention(ref, kind, l);
          for (let h = 0; h < k.heads; h++) data.set(poolPyramid(a.head(h), a.q, a.k, a.q, a.k, pq, pk), (l * k.heads + h) * pq * pk);
        }
        return {layers: k.layers, heads: k.heads, pq, pk, data};
      }
      const codes = await inflate(rec.chunk(kind, 'overview'), k.layers * k.heads * pq * pk);
      return {layers: k.layers, heads: k.heads, pq, pk, data: decodeCodes(codes, this.lut)};
    });
  }

  async qk(ref: RecordRef, kind: Kind, layer: number, head: number): Promise<QK | null> {
    const {rec, k} = this.kind(ref, kind);
    this.checkLayerHead(k, layer, head);
    if (!k.has_qk || !rec.has(kind, 'queries')) return null;
    const d = k.head_dim!;
    const long = k.layout === 'long';
    const dtype = long ? (k.qk_dtype ?? 'float16') : 'float16';
    const kv = long && k.kv_heads ? Math.floor(head / (k.heads / k.kv_heads)) : head;
    const queries = decodeQkChunk(rec.chunk(kind, 'queries', layer, head), dtype, k.q_len! * d);
    const keys = decodeQkChunk(rec.chunk(kind, 'keys', layer, kv), dtype, k.k_len! * d);
    return {q: k.q_len!, k: k.k_len!, d, queries, keys};
  }

  /** Each step's header of one example, ascending (what /metrics and the comparisons read). */
  private steps(ex: ExampleRef): number[] {
    for (const r of this.data.index.runs)
      if (r.run === ex.run)
        for (const t of r.tags)
          if (t.tag === ex.tag)
            for (const e of t.examples) if (e.example === ex.example) return e.steps;
    throw notFound(`tag ${JSON.stringify(ex.tag)} of run ${JSON.stringify(ex.run)} has no example ${JSON.stringify(ex.example)}`);
  }

  private tagScores = new Map<string, TagScores>();

  /** The head scores of a tag from its embedded records' headers (as derived.TagScores). */
  private scores(t: TagRef, kind: Kind): TagScores {
    const key = JSON.stringify([t.run, t.tag, kind]);
    let s = this.tagScores.get(key);
    if (!s) {
      const headers = this.data.records.filter((r) => r.run === t.run && r.tag === t.tag).map((r) => this.record(r).header);
      if (!headers.length) throw notFound(`run ${JSON.stringify(t.run)} has no attention tag ${JSON.stringify(t.tag)}`);
      s = scoresCall(() => new TagScores(t, headers, kind));
      this.tagScores.set(key, s);
    }
    return s;
  }

  async headScores(t: TagRef, step: number, kind: Kind): Promise<HeadScoresResponse> {
    const s = this.scores(t, kind);
    return scoresCall(() => s.at(step));
  }

  async headTrend(t: TagRef, kind: Kind): Promise<HeadTrendResponse> {
    return this.scores(t, kind).trend();
  }

  async headExamples(t: TagRef, step: number, kind: Kind, metric: string, layer: number, head: number, limit: number): Promise<HeadExamplesResponse> {
    const s = this.scores(t, kind);
    return scoresCall(() => s.top(step, metric, layer, head, limit));
  }

  async metrics(ex: ExampleRef, kind?: Kind): Promise<MetricsResponse> {
    const steps = this.steps(ex);
    const headers = steps.map((step) => this.record({...ex, step}).header);
    const logged = new Set(headers.flatMap((h) => Object.keys(h.kinds)));
    if (kind && !logged.has(kind)) throw notFound(`no '${kind}' attention in this example (logged kinds: ${[...logged].sort().join(', ')})`);
    const out: MetricsResponse['kinds'] = {};
    for (const kd of kind ? [kind] : KINDS.filter((x) => logged.has(x))) {
      const perStep = headers.map((h) => metricsOf(h, kd));
      const names = new Set(perStep.flatMap((m) => Object.keys(m)));
      const ordered = [...METRIC_NAMES.filter((n) => names.has(n)), ...[...names].filter((n) => !(METRIC_NAMES as readonly string[]).includes(n)).sort()];
      out[kd] = Object.fromEntries(ordered.map((n) => [n, perStep.map((m) => m[n] ?? null)]));
    }
    return {steps, kinds: out};
  }

  /** Every head of every layer of a kind, dense or (long) its stored pyramid. */
  private async layers(ref: RecordRef, kind: Kind): Promise<AttentionLayer[]> {
    const {k} = this.kind(ref, kind);
    const out: AttentionLayer[] = [];
    for (let l = 0; l < k.layers; l++) {
      if (k.layout !== 'long') out.push(await this.attention(ref, kind, l));
      else {
        const grids = await Promise.all(Array.from({length: k.heads}, (_, h) => this.pyramid(ref, kind, l, h)));
        const {rows, cols} = grids[0];
        const data = new Float32Array(k.heads * rows * cols);
        grids.forEach((g, h) => data.set(g.data, h * rows * cols));
        out.push(new FloatAttention(k.heads, rows, cols, data));
      }
    }
    return out;
  }

  async divergence(ex: ExampleRef, kind: Kind, stepA: number, stepB: number): Promise<DivergenceResponse> {
    const a = this.kind({...ex, step: stepA}, kind);
    const b = this.kind({...ex, step: stepB}, kind);
    const shape = (k: KindInfo) => [k.layers, k.heads, k.q_len, k.k_len];
    if (JSON.stringify(shape(a.k)) !== JSON.stringify(shape(b.k))) throw invalid(`steps ${stepA} and ${stepB} have different ${kind} shapes (layers, heads, q_len, k_len): the tokens changed, so attention cannot be compared`);
    const toks = (r: AssetRecord, k: KindInfo) => JSON.stringify([r.header.sequences[k.query], r.header.sequences[k.key]]);
    const long = a.k.layout === 'long' || b.k.layout === 'long';
    return this.memo(`div ${JSON.stringify(ex)} ${kind} ${Math.min(stepA, stepB)} ${Math.max(stepA, stepB)}`, async () => {
      const [la, lb] = [await this.layers({...ex, step: stepA}, kind), await this.layers({...ex, step: stepB}, kind)];
      const js = la.map((l, i) => jensenShannon(l, lb[i]).map((v) => (Number.isFinite(v) ? v : null)));
      return {js, unit: 'nats', max: Math.LN2, same_tokens: toks(a.rec, a.k) === toks(b.rec, b.k), source: long ? 'pyramid' : 'dense'} as DivergenceResponse;
    });
  }

  async rollout(ref: RecordRef, kind: Kind, residual: number, fusion: Fusion): Promise<Rollout> {
    if (kind === 'cross') throw invalid('rollout needs self-attention; cross attention maps decoder queries to encoder keys (use kind=encoder or kind=decoder)');
    const {k} = this.kind(ref, kind);
    if (k.q_len !== k.k_len) throw invalid(`rollout needs square self-attention; ${kind} attention at step ${ref.step} is ${k.q_len} queries x ${k.k_len} keys`);
    return this.memo(`roll ${refKey(ref)} ${kind} ${residual} ${fusion}`, async () => {
      const layers = await this.layers(ref, kind);
      return {n: layers[0].q, data: Float32Array.from(rolloutOf(layers, residual, fusion))};
    });
  }

  async window(ref: RecordRef, kind: Kind, layer: number, head: number, rows: [number, number], cols: [number, number], weighting?: Weighting): Promise<Grid> {
    rawOnly(weighting);
    const {rec, k} = this.kind(ref, kind);
    this.checkLayerHead(k, layer, head);
    const [r0, r1] = rows;
    const [c0, c1] = cols;
    const qLen = k.q_len!;
    const kLen = k.k_len!;
    if (!(0 <= r0 && r0 < r1 && r1 <= qLen && 0 <= c0 && c0 < c1 && c1 <= kLen)) throw invalid(`rows ${r0}:${r1} / cols ${c0}:${c1} are not a non-empty range within ${qLen} x ${kLen}`);
    const nr = r1 - r0;
    const nc = c1 - c0;
    const out = new Float32Array(nr * nc);
    if (k.layout !== 'long') {
      const a = (await this.attention(ref, kind, layer)).head(head);
      for (let i = 0; i < nr; i++) out.set(a.subarray((r0 + i) * kLen + c0, (r0 + i) * kLen + c1), i * nc);
      return {rows: nr, cols: nc, data: out};
    }
    if (!k.exact) throw notFound('this long layer cannot be rebuilt exactly (no q/k stored, or a learned position bias): use its pyramid or top-k');
    // reader.exact_window: p_ij = exp(softcap(scaling * q_i . k_j) - lse_i), 0 where the mask hides key j
    const qk = (await this.qk(ref, kind, layer, head))!;
    const lseBytes = rec.chunk(kind, 'lse', layer, head);
    const lse = new DataView(lseBytes.buffer, lseBytes.byteOffset, lseBytes.byteLength);
    const info = k.layer_info?.[layer] ?? {};
    const d = qk.d;
    const scaling = info.scaling || 1 / Math.sqrt(d);
    const softcap = info.softcap || 0;
    const win = info.sliding_window || 0;
    const offset = kLen - qLen;
    for (let i = 0; i < nr; i++) {
      const r = r0 + i;
      const z = lse.getFloat32(4 * r, true);
      for (let j = 0; j < nc; j++) {
        const c = c0 + j;
        if ((info.causal && c > r + offset) || (win && r + offset - c >= win)) continue;
        let s = 0;
        for (let x = 0; x < d; x++) s += qk.queries[r * d + x] * qk.keys[c * d + x];
        s *= scaling;
        if (softcap) s = Math.tanh(s / softcap) * softcap;
        out[i * nc + j] = Math.exp(s - z);
      }
    }
    return {rows: nr, cols: nc, data: out};
  }

  async pyramid(ref: RecordRef, kind: Kind, layer: number, head: number, level = 0, agg: PyramidAgg = 'mean'): Promise<Grid> {
    const {rec, k} = this.kind(ref, kind);
    this.checkLayerHead(k, layer, head);
    if (k.layout !== 'long' || !k.pyramid_shape) throw invalid(`${kind} attention at step ${ref.step} is stored densely: it has no pyramid`);
    if (!Number.isInteger(level) || level < 0 || level > 9) throw invalid(`level must be in 0..9, got ${level}`);
    if (agg !== 'mean' && agg !== 'max') throw invalid(`agg must be mean or max, got ${agg}`);
    if (agg === 'max' && k.pyramid_max !== true) throw notFound(`${kind} attention at step ${ref.step} has no max pyramid (logged before format v5)`);
    const [fq, fk] = k.pyramid_shape;
    const chunk = agg === 'max' ? 'pyramid_max' : 'pyramid';
    const fine = await this.memo(`${chunk} ${refKey(ref)} ${kind} ${layer} ${head}`, async () => decodeCodes(await inflate(rec.chunk(kind, chunk, layer, head), fq * fk), this.lut));
    if (!level) return {rows: fq, cols: fk, data: fine};
    const bq = levelBins(fq, k.q_len!, level);
    const bk = levelBins(fk, k.k_len!, level);
    return {rows: bq, cols: bk, data: (agg === 'max' ? poolPyramidMax : poolPyramid)(fine, fq, fk, k.q_len!, k.k_len!, bq, bk)};
  }

  async topk(ref: RecordRef, kind: Kind, layer: number, head: number): Promise<TopK> {
    const {rec, k} = this.kind(ref, kind);
    this.checkLayerHead(k, layer, head);
    if (k.layout !== 'long' || !k.topk) throw invalid(`${kind} attention at step ${ref.step} is stored densely: it has no top-k`);
    const q = k.q_len!;
    const K = k.topk;
    const raw = await inflate(rec.chunk(kind, 'topk_index', layer, head), 4 * q * K);
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const index = new Uint32Array(q * K);
    for (let i = 0; i < q * K; i++) {
      index[i] = dv.getUint32(4 * i, true);
      if (index[i] >= k.k_len!) throw new Error('a top-k key index is past the end of the keys');
    }
    const values = decodeCodes(await inflate(rec.chunk(kind, 'topk_value', layer, head), q * K), this.lut);
    return {q, k: K, index, values};
  }
}

/** `{metric: [[per head] per layer]}` of one record and kind; a grid that is not layers x heads is null (plugin._metrics_of). */
function metricsOf(h: Header, kind: Kind): Record<string, (number | null)[][] | null> {
  const k = h.kinds[kind];
  const byName = h.metrics && typeof h.metrics === 'object' ? h.metrics[kind] : undefined;
  if (!k || !byName || typeof byName !== 'object') return {};
  const out: Record<string, (number | null)[][] | null> = {};
  for (const [name, grid] of Object.entries(byName)) {
    const ok = Array.isArray(grid) && grid.length === k.layers && grid.every((row) => Array.isArray(row) && row.length === k.heads);
    out[name] = ok ? grid.map((row) => row.map((v) => (typeof v === 'number' && Number.isFinite(v) ? v : null))) : null;
  }
  return out;
}
