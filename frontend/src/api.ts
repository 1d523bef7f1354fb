// The data layer: requests to the plugin's routes (relative URLs, docs/http-api.md), binary decoding and
// an in-memory cache. Knows nothing about pixels.
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
  Limits,
  MetricsResponse,
  Overview,
  PyramidAgg,
  QK,
  RecordRef,
  Rollout,
  TagRef,
  TopK,
  Weighting,
} from './types';

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly url: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

// ---------------------------------------------------------------------------------------------------------
// Decoding

/** The 256-entry lookup table of the attention codec as float32 (what byte `c` decodes to). */
export function makeLut(values: ArrayLike<number>): Float32Array {
  if (values.length !== 256) throw new Error(`codec lut must have 256 entries, got ${values.length}`);
  return Float32Array.from(values);
}

/** uint8 codes → float32 through the codec's lut. `out` may be given to reuse memory. */
export function decodeCodes(codes: Uint8Array, lut: Float32Array, out?: Float32Array): Float32Array {
  const n = codes.length;
  const res = out ?? new Float32Array(n);
  for (let i = 0; i < n; i++) res[i] = lut[codes[i]];
  return res;
}

/** IEEE 754 binary16 bit pattern → number (normals, subnormals, signed zeros, inf, NaN). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero and subnormals: frac / 1024 * 2^-14
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

let HALF_TABLE: Float32Array | null = null;
function halfTable(): Float32Array {
  if (!HALF_TABLE) {
    HALF_TABLE = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) HALF_TABLE[i] = halfToFloat(i);
  }
  return HALF_TABLE;
}

/** Little-endian float16 values → Float32Array. `byteOffset` and `count` select part of the buffer. */
export function decodeFloat16(buf: ArrayBuffer | Uint8Array, byteOffset = 0, count?: number): Float32Array {
  const bytes = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  const n = count ?? Math.floor((bytes.length - byteOffset) / 2);
  if (byteOffset + 2 * n > bytes.length) throw new Error(`float16 buffer too short: need ${2 * n} bytes`);
  const table = halfTable();
  const out = new Float32Array(n);
  for (let i = 0, p = byteOffset; i < n; i++, p += 2) out[i] = table[bytes[p] | (bytes[p + 1] << 8)];
  return out;
}

/** Parses a shape header such as "12,7,7" and checks its rank. */
export function parseShape(value: string | null, rank: number, what = 'shape'): number[] {
  if (!value) throw new Error(`missing ${what} header`);
  const dims = value.split(',').map((s) => Number(s.trim()));
  if (dims.length !== rank || dims.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new Error(`bad ${what} header ${JSON.stringify(value)} (want ${rank} non-negative integers)`);
  }
  return dims;
}

/** Attention kept as uint8 codes; each head is decoded once, on first use (a 2048² layer stays 4 MB/head). */
export class CodedAttention implements AttentionLayer {
  private decoded: (Float32Array | undefined)[];
  constructor(
    readonly heads: number,
    readonly q: number,
    readonly k: number,
    readonly codes: Uint8Array,
    readonly lut: Float32Array,
    readonly headOffset = 0,
  ) {
    if (codes.length !== heads * q * k) {
      throw new Error(`attention has ${codes.length} bytes, shape ${heads}x${q}x${k} needs ${heads * q * k}`);
    }
    this.decoded = new Array(heads);
  }
  head(h: number): Float32Array {
    const i = h - this.headOffset;
    if (i < 0 || i >= this.heads) throw new RangeError(`head ${h} not in this layer response`);
    let d = this.decoded[i];
    if (!d) {
      const n = this.q * this.k;
      d = this.decoded[i] = decodeCodes(this.codes.subarray(i * n, (i + 1) * n), this.lut);
    }
    return d;
  }
}

/** Attention already in float32 (fixtures, difference results). */
export class FloatAttention implements AttentionLayer {
  constructor(
    readonly heads: number,
    readonly q: number,
    readonly k: number,
    readonly data: Float32Array,
    readonly headOffset = 0,
  ) {
    if (data.length !== heads * q * k) throw new Error('attention data does not match its shape');
  }
  head(h: number): Float32Array {
    const i = h - this.headOffset;
    if (i < 0 || i >= this.heads) throw new RangeError(`head ${h} not in this layer response`);
    const n = this.q * this.k;
    return this.data.subarray(i * n, (i + 1) * n);
  }
}

export function decodeAttention(
  body: ArrayBuffer,
  shapeHeader: string | null,
  lut: Float32Array,
  headOffset = 0,
): CodedAttention {
  const [h, q, k] = parseShape(shapeHeader, 3, 'X-Attention-Shape');
  return new CodedAttention(h, q, k, new Uint8Array(body), lut, headOffset);
}

export function decodeOverview(body: ArrayBuffer, shapeHeader: string | null, lut: Float32Array): Overview {
  const [layers, heads, pq, pk] = parseShape(shapeHeader, 4, 'X-Attention-Shape');
  const codes = new Uint8Array(body);
  if (codes.length !== layers * heads * pq * pk) throw new Error('overview size does not match its shape');
  return {layers, heads, pq, pk, data: decodeCodes(codes, lut)};
}

export function decodeQK(body: ArrayBuffer, shapeHeader: string | null): QK {
  const [q, k, d] = parseShape(shapeHeader, 3, 'X-QK-Shape');
  const bytes = new Uint8Array(body);
  if (bytes.length !== 2 * d * (q + k)) throw new Error(`q/k body has ${bytes.length} bytes, want ${2 * d * (q + k)}`);
  return {q, k, d, queries: decodeFloat16(bytes, 0, q * d), keys: decodeFloat16(bytes, 2 * q * d, k * d)};
}

/** /rollout body: uint8 codes of shape (1, n, n) (X-Attention-Shape), decoded through the lut. */
export function decodeRollout(body: ArrayBuffer, shapeHeader: string | null, lut: Float32Array): Rollout {
  const [one, q, k] = parseShape(shapeHeader, 3, 'X-Attention-Shape');
  if (one !== 1 || q !== k) throw new Error(`rollout shape ${shapeHeader} is not (1, n, n)`);
  const codes = new Uint8Array(body);
  if (codes.length !== q * k) throw new Error(`rollout has ${codes.length} bytes, shape 1x${q}x${k} needs ${q * k}`);
  return {n: q, data: decodeCodes(codes, lut)};
}

/** /window and /pyramid bodies: log8 codes of shape (1, rows, cols), decoded through the lut. */
export function decodeGrid(body: ArrayBuffer, shapeHeader: string | null, lut: Float32Array): Grid {
  const [one, rows, cols] = parseShape(shapeHeader, 3, 'X-Attention-Shape');
  const codes = new Uint8Array(body);
  if (one !== 1 || codes.length !== rows * cols) throw new Error(`window has ${codes.length} bytes, shape ${shapeHeader} needs ${rows * cols}`);
  return {rows, cols, data: decodeCodes(codes, lut)};
}

/** /topk body: (q × K) uint32 little-endian key indices, then (q × K) log8 codes. */
export function decodeTopK(body: ArrayBuffer, shapeHeader: string | null, lut: Float32Array, kLen = Infinity): TopK {
  const [q, k] = parseShape(shapeHeader, 2, 'X-TopK-Shape');
  const n = q * k;
  if (body.byteLength !== 5 * n) throw new Error(`top-k body has ${body.byteLength} bytes, shape ${q},${k} needs ${5 * n}`);
  const dv = new DataView(body);
  const index = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const j = dv.getUint32(4 * i, true);
    if (j >= kLen) throw new Error('a top-k key index is past the end of the keys');
    index[i] = j;
  }
  return {q, k, index, values: decodeCodes(new Uint8Array(body, 4 * n, n), lut)};
}

/** Most values one /window request may ask for (the backend's MAX_WINDOW_VALUES). */
export const MAX_WINDOW_VALUES = 4_194_304;

/**
 * Counts past which a record is refused instead of drawn: the largest models have ~128 layers and heads; a header claiming more (tampered, or a bug) would otherwise
 * allocate or loop for its claimed size and freeze the tab.
 */
export const LIMITS: Readonly<Limits> = Object.freeze({layers: 1024, heads: 1024, tokens: 1 << 21, headDim: 1 << 14, overview: 4096}); // as format.MAX_COUNTS, MAX_HEAD_DIM

/**
 * The bounds `/index` serves (`limits`, from the backend's one definition), each field that is a positive
 * whole number; a field absent or malformed (an older backend serves none) keeps `LIMITS`'.
 */
export function limitsOf(index: Pick<IndexResponse, 'limits'> | null | undefined): Limits {
  const out = {...LIMITS};
  const served = index?.limits;
  if (served && typeof served === 'object') {
    for (const k of Object.keys(LIMITS) as (keyof Limits)[]) {
      const v = served[k];
      if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) out[k] = v;
    }
  }
  return out;
}

const countOk = (v: unknown, max: number, min = 1): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;

/** Why a record's header is not drawn (counts past `limits`, or malformed), or null when it is fine. */
export function headerProblem(h: Header, limits: Readonly<Limits> = LIMITS): string | null {
  if (!h || typeof h !== 'object' || !h.kinds || typeof h.kinds !== 'object' || !h.sequences || typeof h.sequences !== 'object') return 'its header is malformed.';
  for (const [name, toks] of Object.entries(h.sequences)) {
    if (!Array.isArray(toks)) return `its sequence ${JSON.stringify(name)} is not a token list.`;
    if (toks.length > limits.tokens) return `it claims ${toks.length} ${name} tokens (at most ${limits.tokens} are drawn).`;
  }
  for (const [kind, k] of Object.entries(h.kinds)) {
    if (!k) continue;
    if (!countOk(k.layers, limits.layers)) return `its ${kind} attention claims ${String(k.layers)} layers (at most ${limits.layers}).`;
    if (!countOk(k.heads, limits.heads)) return `its ${kind} attention claims ${String(k.heads)} heads (at most ${limits.heads}).`;
    if (k.head_dim != null && !countOk(k.head_dim, limits.headDim)) return `its ${kind} attention claims a head size of ${String(k.head_dim)} (at most ${limits.headDim}).`;
    const ov = k.overview_shape;
    if (ov != null && (!Array.isArray(ov) || ov.length !== 2 || !ov.every((x) => countOk(x, limits.overview, 0)))) return `its ${kind} overview shape ${JSON.stringify(ov)} is out of bounds.`;
    for (const [side, seq] of [['query', k.query], ['key', k.key]] as const) {
      const n = side === 'query' ? k.q_len : k.k_len;
      if (n != null && !countOk(n, limits.tokens, 0)) return `its ${kind} attention claims ${String(n)} ${side} tokens (at most ${limits.tokens}).`;
      if (typeof seq !== 'string' || !Array.isArray(h.sequences[seq])) return `its ${kind} attention names no ${side} sequence.`;
    }
  }
  return null;
}

/** Checks the shape of a /headscores response (values are checked where they are read). */
export function checkHeadScores(v: unknown): HeadScoresResponse {
  const m = v as HeadScoresResponse;
  if (!m || !Array.isArray(m.steps) || !m.metrics || typeof m.metrics !== 'object' || !Number.isInteger(m.layers) || !Number.isInteger(m.heads)) throw new Error('malformed /headscores response');
  return m;
}

/** Checks the shape of a /headtrend response. */
export function checkHeadTrend(v: unknown): HeadTrendResponse {
  const m = v as HeadTrendResponse;
  if (!m || !Array.isArray(m.steps) || !m.metrics || typeof m.metrics !== 'object') throw new Error('malformed /headtrend response');
  return m;
}

/** Checks the shape of a /metrics response (values are checked where they are read). */
export function checkMetrics(v: unknown): MetricsResponse {
  const m = v as MetricsResponse;
  if (!m || !Array.isArray(m.steps) || !m.kinds || typeof m.kinds !== 'object') throw new Error('malformed /metrics response');
  return m;
}

export function checkDivergence(v: unknown): DivergenceResponse {
  const d = v as DivergenceResponse;
  if (!d || !Array.isArray(d.js)) throw new Error('malformed /divergence response');
  return d;
}

/** A residual weight as the backend parses it: plain decimal, at most 3 places, clamped to [0, 1]. */
export function formatResidual(r: number): string {
  const v = Math.round(Math.min(1, Math.max(0, Number.isFinite(r) ? r : 0.5)) * 1000) / 1000;
  return String(v);
}

// ---------------------------------------------------------------------------------------------------------
// Cache

/**
 * LRU of promises, bounded by an estimate of the bytes each result holds. Failed requests are dropped. An
 * entry may carry a tag (what it was loaded from), for `retain`.
 */
export class LruCache<V, T = unknown> {
  private map = new Map<string, {value: Promise<V>; bytes: number; tag?: T}>();
  private total = 0;
  constructor(
    readonly maxBytes: number,
    private sizeOf: (v: V) => number,
  ) {}
  get size(): number {
    return this.map.size;
  }
  get bytes(): number {
    return this.total;
  }
  get(key: string, load: () => Promise<V>, tag?: T): Promise<V> {
    const hit = this.map.get(key);
    if (hit) {
      this.map.delete(key);
      this.map.set(key, hit);
      return hit.value;
    }
    const entry = {value: load(), bytes: 0, tag};
    this.map.set(key, entry);
    entry.value.then(
      (v) => {
        if (this.map.get(key) !== entry) return;
        entry.bytes = this.sizeOf(v);
        this.total += entry.bytes;
        this.evict(key);
      },
      () => {
        if (this.map.get(key) === entry) this.map.delete(key);
      },
    );
    return entry.value;
  }
  clear(): void {
    this.map.clear();
    this.total = 0;
  }
  /** Drops every entry whose tag fails `keep` (pending ones too: they will not be stored). */
  retain(keep: (tag: T | undefined, key: string) => boolean): void {
    for (const [k, e] of [...this.map]) {
      if (keep(e.tag, k)) continue;
      this.map.delete(k);
      this.total -= e.bytes;
    }
  }
  private evict(keep: string): void {
    for (const [k, e] of this.map) {
      if (this.total <= this.maxBytes) break;
      if (k === keep) continue;
      this.map.delete(k);
      this.total -= e.bytes;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// HTTP

type FetchFn = (input: string, init?: RequestInit) => Promise<Response>;

function refParams(ref: RecordRef): Record<string, string> {
  return {run: ref.run, tag: ref.tag, example: ref.example, step: String(ref.step)};
}

/** One record's identity (not its content: a re-logged step keeps its id and gets a new revision). */
function recordId(run: string, tag: string, example: string, step: number): string {
  return JSON.stringify([run, tag, example, step]);
}

/** One example's identity (what /metrics covers: all its steps). */
function exampleId(ex: ExampleRef): string {
  return JSON.stringify([ex.run, ex.tag, ex.example]);
}

/** One tag's identity (what /headscores and /headtrend cover: all its examples and steps). */
function tagId(t: TagRef): string {
  return JSON.stringify([t.run, t.tag, null]);
}

/**
 * record id → revision for every step of an index (revisions absent, as from older backends: ''), and
 * example id → its steps with their revisions (what /metrics was computed from).
 */
export function revisionsOf(idx: IndexResponse): Map<string, string> {
  const out = new Map<string, string>();
  for (const r of idx.runs)
    for (const t of r.tags)
      for (const e of t.examples) {
        const revs = e.steps.map((_, i) => (Array.isArray(e.revisions) && typeof e.revisions[i] === 'string' ? e.revisions[i] : ''));
        e.steps.forEach((st, i) => out.set(recordId(r.run, t.tag, e.example, st), revs[i]));
        out.set(exampleId({run: r.run, tag: t.tag, example: e.example}), JSON.stringify([e.steps, revs]));
      }
  // a tag's examples and every revision of theirs (what the head scores were computed from)
  for (const r of idx.runs) for (const t of r.tags) out.set(tagId({run: r.run, tag: t.tag}), t.examples.map((e) => out.get(exampleId({run: r.run, tag: t.tag, example: e.example}))).join('|') + `#${t.examples.map((e) => e.example).join('\u0000')}`);
  return out;
}

/** The records a cached result was computed from, with their revisions then. */
type Deps = [id: string, rev: string][];

/** `weighting=value` for value-weighted attention; raw weights (the default) add nothing, as before. */
function weightingParams(w: Weighting | undefined): Record<string, string> {
  return w === 'value' ? {weighting: 'value'} : {};
}

/** Talks to data/plugin/attention/* through URLs relative to `base` (the module's own URL). */
export class HttpSource implements DataSource {
  /** The backend value-weights `/attention`, `/overview` and `/window` (a kind with value norms). */
  readonly weightings: readonly Weighting[] = ['weights', 'value'];
  private lut: Float32Array | null = null;
  private indexPromise: Promise<IndexResponse> | null = null;
  /**
   * Decoded results keyed by request and by the revisions of the records they came from: a step logged
   * again gets a new revision in /index, so its old arrays are neither served nor kept.
   */
  private cache = new LruCache<unknown, Deps>(512 * 1024 * 1024, sizeOfResult);
  private revs = new Map<string, string>();

  constructor(
    private base: URL,
    private fetchFn: FetchFn = (u, i) => fetch(u, i),
  ) {}

  url(route: string, params: Record<string, string> = {}): string {
    const u = new URL(route, this.base);
    for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
    return u.toString();
  }

  private async request(route: string, params: Record<string, string>): Promise<Response> {
    const url = this.url(route, params);
    let res: Response;
    try {
      res = await this.fetchFn(url, {credentials: 'same-origin'});
    } catch (e) {
      throw new ApiError(`network error: ${(e as Error).message}`, 0, url);
    }
    if (!res.ok) {
      let msg = `${res.status} ${res.statusText}`;
      try {
        const body = await res.json();
        if (body && typeof body.error === 'string') msg = body.error;
      } catch {
        /* not JSON */
      }
      throw new ApiError(msg, res.status, url);
    }
    return res;
  }

  index(force = false): Promise<IndexResponse> {
    if (!this.indexPromise || force) {
      const p = this.request('./index', {}).then(async (r) => {
        const idx = (await r.json()) as IndexResponse;
        if (!idx || !Array.isArray(idx.runs) || !idx.codec) throw new Error('malformed /index response');
        this.lut = makeLut(idx.codec.lut);
        if (this.indexPromise === p) this.setRevisions(revisionsOf(idx));
        return idx;
      });
      p.catch(() => {
        if (this.indexPromise === p) this.indexPromise = null;
      });
      // a step can be logged again (the latest write wins): cached results are keyed by revision
      this.indexPromise = p;
    }
    return this.indexPromise;
  }

  /** Takes an index's revisions and drops every cached result of a record that changed or is gone. */
  private setRevisions(revs: Map<string, string>): void {
    this.revs = revs;
    this.cache.retain((deps) => !!deps && deps.every(([id, rev]) => (revs.get(id) ?? '') === rev));
  }

  private deps(...refs: RecordRef[]): Deps {
    return refs.map((r) => {
      const id = recordId(r.run, r.tag, r.example, r.step);
      return [id, this.revs.get(id) ?? ''];
    });
  }

  private async getLut(): Promise<Float32Array> {
    if (!this.lut) await this.index();
    return this.lut!;
  }

  header(ref: RecordRef): Promise<Header> {
    const params = refParams(ref);
    return this.cached('header', params, this.deps(ref), async () => (await this.request('./header', params)).json()) as Promise<Header>;
  }

  attention(ref: RecordRef, kind: Kind, layer: number, head?: number, weighting?: Weighting): Promise<AttentionLayer> {
    const params: Record<string, string> = {...refParams(ref), kind, layer: String(layer)};
    if (head !== undefined) params.head = String(head);
    Object.assign(params, weightingParams(weighting)); // in the cache key too (params make it)
    return this.cached('attention', params, this.deps(ref), async () => {
      const lut = await this.getLut();
      const res = await this.request('./attention', params);
      return decodeAttention(await res.arrayBuffer(), res.headers.get('X-Attention-Shape'), lut, head ?? 0);
    }) as Promise<AttentionLayer>;
  }

  overview(ref: RecordRef, kind: Kind, weighting?: Weighting): Promise<Overview> {
    const params = {...refParams(ref), kind, ...weightingParams(weighting)};
    return this.cached('overview', params, this.deps(ref), async () => {
      const lut = await this.getLut();
      const res = await this.request('./overview', params);
      return decodeOverview(await res.arrayBuffer(), res.headers.get('X-Attention-Shape'), lut);
    }) as Promise<Overview>;
  }

  qk(ref: RecordRef, kind: Kind, layer: number, head: number): Promise<QK | null> {
    const params = {...refParams(ref), kind, layer: String(layer), head: String(head)};
    return this.cached('qk', params, this.deps(ref), async () => {
      try {
        const res = await this.request('./qk', params);
        return decodeQK(await res.arrayBuffer(), res.headers.get('X-QK-Shape'));
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) return null;
        throw e;
      }
    }) as Promise<QK | null>;
  }

  metrics(ex: ExampleRef, kind?: Kind): Promise<MetricsResponse> {
    const params: Record<string, string> = {run: ex.run, tag: ex.tag, example: ex.example};
    if (kind) params.kind = kind;
    // covers every step: kept while the example's steps and their revisions stay as they are
    const id = exampleId(ex);
    return this.cached('metrics', params, [[id, this.revs.get(id) ?? '']], async () => checkMetrics(await (await this.request('./metrics', params)).json())) as Promise<MetricsResponse>;
  }

  private tagDeps(t: TagRef): Deps {
    const id = tagId(t);
    return [[id, this.revs.get(id) ?? '']];
  }

  headScores(t: TagRef, step: number, kind: Kind): Promise<HeadScoresResponse> {
    const params = {run: t.run, tag: t.tag, step: String(step), kind};
    return this.cached('headscores', params, this.tagDeps(t), async () => checkHeadScores(await (await this.request('./headscores', params)).json())) as Promise<HeadScoresResponse>;
  }

  headTrend(t: TagRef, kind: Kind): Promise<HeadTrendResponse> {
    const params = {run: t.run, tag: t.tag, kind};
    return this.cached('headtrend', params, this.tagDeps(t), async () => checkHeadTrend(await (await this.request('./headtrend', params)).json())) as Promise<HeadTrendResponse>;
  }

  headExamples(t: TagRef, step: number, kind: Kind, metric: string, layer: number, head: number, limit: number): Promise<HeadExamplesResponse> {
    const params = {run: t.run, tag: t.tag, step: String(step), kind, metric, layer: String(layer), head: String(head), limit: String(limit)};
    return this.cached('headexamples', params, this.tagDeps(t), async () => {
      const body = await (await this.request('./headexamples', params)).json();
      if (!body || !Array.isArray(body.examples)) throw new Error('malformed /headexamples response');
      return body;
    }) as Promise<HeadExamplesResponse>;
  }

  divergence(ex: ExampleRef, kind: Kind, stepA: number, stepB: number): Promise<DivergenceResponse> {
    const params = {run: ex.run, tag: ex.tag, example: ex.example, kind, step_a: String(stepA), step_b: String(stepB)};
    const at = (step: number): RecordRef => ({...ex, step});
    return this.cached('divergence', params, this.deps(at(stepA), at(stepB)), async () => checkDivergence(await (await this.request('./divergence', params)).json())) as Promise<DivergenceResponse>;
  }

  rollout(ref: RecordRef, kind: Kind, residual: number, fusion: Fusion): Promise<Rollout> {
    const params = {...refParams(ref), kind, residual: formatResidual(residual), fusion};
    return this.cached('rollout', params, this.deps(ref), async () => {
      const lut = await this.getLut();
      const res = await this.request('./rollout', params);
      return decodeRollout(await res.arrayBuffer(), res.headers.get('X-Attention-Shape'), lut);
    }) as Promise<Rollout>;
  }

  window(ref: RecordRef, kind: Kind, layer: number, head: number, rows: [number, number], cols: [number, number], weighting?: Weighting): Promise<Grid> {
    const params = {...refParams(ref), kind, layer: String(layer), head: String(head), rows: `${rows[0]}:${rows[1]}`, cols: `${cols[0]}:${cols[1]}`, ...weightingParams(weighting)};
    return this.cached('window', params, this.deps(ref), async () => {
      const lut = await this.getLut();
      const res = await this.request('./window', params);
      return decodeGrid(await res.arrayBuffer(), res.headers.get('X-Attention-Shape'), lut);
    }) as Promise<Grid>;
  }

  pyramid(ref: RecordRef, kind: Kind, layer: number, head: number, level = 0, agg: PyramidAgg = 'mean'): Promise<Grid> {
    const params: Record<string, string> = {...refParams(ref), kind, layer: String(layer), head: String(head)};
    if (level) params.level = String(level);
    // only max is sent: a backend from before format v5 knows no agg (mean is its only pyramid)
    if (agg === 'max') params.agg = 'max';
    return this.cached('pyramid', params, this.deps(ref), async () => {
      const lut = await this.getLut();
      const res = await this.request('./pyramid', params);
      return decodeGrid(await res.arrayBuffer(), res.headers.get('X-Attention-Shape'), lut);
    }) as Promise<Grid>;
  }

  topk(ref: RecordRef, kind: Kind, layer: number, head: number): Promise<TopK> {
    const params = {...refParams(ref), kind, layer: String(layer), head: String(head)};
    return this.cached('topk', params, this.deps(ref), async () => {
      const lut = await this.getLut();
      const res = await this.request('./topk', params);
      return decodeTopK(await res.arrayBuffer(), res.headers.get('X-TopK-Shape'), lut);
    }) as Promise<TopK>;
  }

  /** The record's image bytes (`/image`); the error carries the route's message (a 404 answers text). */
  image(ref: RecordRef): Promise<ImageBytes> {
    const params = refParams(ref);
    return this.cached('image', params, this.deps(ref), async () => {
      const url = this.url('./image', params);
      let res: Response;
      try {
        res = await this.fetchFn(url, {credentials: 'same-origin'});
      } catch (e) {
        throw new ApiError(`network error: ${(e as Error).message}`, 0, url);
      }
      if (!res.ok) throw new ApiError(await errorText(res), res.status, url);
      const mime = (res.headers.get('Content-Type') ?? '').split(';')[0].trim().toLowerCase();
      return {mime, bytes: new Uint8Array(await res.arrayBuffer())};
    }) as Promise<ImageBytes>;
  }

  private cached(route: string, params: Record<string, string>, deps: Deps, load: () => Promise<unknown>): Promise<unknown> {
    const key = route + '?' + new URLSearchParams(params).toString() + '#' + deps.map(([, rev]) => rev).join(',');
    return this.cache.get(key, load, deps);
  }
}

/** A failed response's message: its JSON `error`, else its text (at most 300 characters), else the status. */
async function errorText(res: Response): Promise<string> {
  let body = '';
  try {
    body = await res.text();
  } catch {
    /* no body */
  }
  try {
    const j = JSON.parse(body);
    if (j && typeof j.error === 'string') return j.error;
  } catch {
    /* not JSON */
  }
  body = body.trim();
  return body ? body.slice(0, 300) : `${res.status} ${res.statusText}`;
}

function sizeOfResult(v: unknown): number {
  if (v instanceof CodedAttention) return v.codes.length * 5; // codes + decoded float32 per head
  if (v && typeof v === 'object' && 'kinds' in v && 'steps' in v) return 2 * JSON.stringify(v).length; // /metrics
  if (v && typeof v === 'object' && (v as Partial<ImageBytes>).bytes instanceof Uint8Array) return (v as ImageBytes).bytes.byteLength;
  if (v && typeof v === 'object') {
    const o = v as Partial<Overview & QK>;
    if (o.data instanceof Float32Array) return o.data.byteLength;
    const t = v as Partial<TopK>;
    if (t.index instanceof Uint32Array && t.values instanceof Float32Array) return t.index.byteLength + t.values.byteLength;
    if (o.queries instanceof Float32Array && o.keys instanceof Float32Array) {
      return o.queries.byteLength + o.keys.byteLength;
    }
  }
  return 4096;
}
