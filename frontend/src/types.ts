// Shapes of the JSON the backend serves (docs/http-api.md, format version 1) and of decoded arrays.

export type Kind = 'encoder' | 'decoder' | 'cross';
export const KINDS: readonly Kind[] = ['encoder', 'decoder', 'cross'];

/** How a layer computed its scores. Records logged without a capture may leave any field out. */
export interface LayerInfo {
  scaling?: number | null;
  causal?: boolean | null;
  position_bias?: boolean | null;
  softcap?: number | null;
  sliding_window?: number | null;
  module_name?: string | null;
}

/** LayerInfo with every field decided (what the neuron view computes with), and what was assumed. */
export interface ResolvedLayerInfo {
  scaling: number;
  causal: boolean;
  position_bias: boolean;
  softcap: number | null;
  sliding_window: number | null;
  /** Fields the record did not give, filled with defaults. */
  assumed: string[];
}

export interface KindInfo {
  query: string;
  key: string;
  layers: number;
  heads: number;
  /** Query and key lengths (newer backends). */
  q_len?: number;
  k_len?: number;
  head_dim: number | null;
  has_qk: boolean;
  overview_shape: [number, number];
  layer_info: LayerInfo[];
  /** "long": not stored densely (format v3): /window, /pyramid and /topk serve it, /attention does not. */
  layout?: 'dense' | 'long';
  /** Long kinds: key/value heads (head h reads key head h / (heads / kv_heads)), the finest pooled level's
   * bins `[bq, bk]`, the K of the stored top-k, and whether exact windows can be rebuilt from q/k. */
  kv_heads?: number;
  qk_dtype?: string;
  pyramid_shape?: [number, number];
  /** Long kinds (format v5): a max pyramid is stored beside the mean one (`/pyramid?agg=max`). */
  pyramid_max?: boolean;
  topk?: number;
  exact?: boolean;
  /** The model's indices of the layers / heads logged, when only some were (`layers=` / `heads=`). */
  layer_ids?: number[];
  head_ids?: number[];
  /** The record stores each layer's value norms ‖f(x_j)‖ (format v5): value-weighted attention can be served. */
  has_value_norms?: boolean;
}

/**
 * What attention values are asked for: the stored weights α_ij, or value-weighted attention (Kobayashi et al.
 * 2020, "Attention is not only a weight": α_ij·‖f(x_j)‖, renormalised per query row; `/attention`,
 * `/overview` and `/window` with `weighting=value`; a long kind's only in `/window`).
 */
export type Weighting = 'weights' | 'value';

/**
 * How a long kind's pyramid pools a block of cells: `mean` (keys summed, queries averaged: the stored
 * pyramid) or `max` (the largest weight of the block, `/pyramid?agg=max`; kinds with `pyramid_max`).
 */
export type PyramidAgg = 'mean' | 'max';
export const WEIGHTINGS: readonly Weighting[] = ['weights', 'value'];

/** Image formats a record's image may be stored in. */
export const IMAGE_MIMES = ['image/png', 'image/webp'] as const;
export type ImageMime = (typeof IMAGE_MIMES)[number];

/**
 * The image a record's attention was computed over (format v4, optional). Tokens `patch_start` ..
 * `patch_start + rows·cols − 1` of sequence `sequence` are its patches in row-major order: patch (r, c) is
 * token `patch_start + r·cols + c` and covers pixels x ∈ [c·W/cols, (c+1)·W/cols), y ∈ [r·H/rows, (r+1)·H/rows).
 * Every other token is a non-patch token (CLS, registers, text). Its bytes: the `/image` route, or the
 * record's top-level `image` chunk.
 */
export interface ImageInfo {
  mime: ImageMime;
  width: number;
  height: number;
  /** [rows, cols] of the patch grid. */
  grid: [number, number];
  sequence: string;
  patch_start: number;
  /** Size of the stored image in bytes. */
  bytes: number;
}

/** An image as served: its bytes and mime type (not decoded: the view decodes it where there is a DOM). */
export interface ImageBytes {
  mime: string;
  bytes: Uint8Array;
}

export interface Header {
  version: number;
  tag: string;
  example: string;
  step: number;
  wall_time?: number;
  model?: string;
  sequences: Record<string, string[]>;
  sentence_b_start: number | null;
  /** Indices of special tokens in the `input` sequence, or per sequence name. */
  special_tokens?: number[] | Record<string, number[]> | null;
  kinds: Partial<Record<Kind, KindInfo>>;
  metrics?: Record<string, Record<string, number[][]>>;
  /** The input image and its patch layout (format v4; absent: a record without an image). */
  image?: ImageInfo;
}

export interface IndexExample {
  example: string;
  steps: number[];
  /**
   * Parallel to `steps`: an opaque string per step that changes whenever that step is logged again (the
   * data layer keys its caches by it). Older backends leave it out: read as all ''.
   */
  revisions?: string[];
  qk_steps: number[];
  header: Header;
}

export interface IndexTag {
  tag: string;
  examples: IndexExample[];
}

export interface IndexRun {
  run: string;
  tags: IndexTag[];
}

/** A TensorBoard tag whose records the backend skipped, and why (e.g. written by a newer plugin). */
export interface Unreadable {
  run: string;
  tag: string;
  reason: string;
  newer_version: boolean;
}

export interface IndexResponse {
  version: number;
  codec: {name: string; lut: number[]};
  runs: IndexRun[];
  /** Tags whose records could not be read (absent on older backends). */
  unreadable?: Unreadable[];
  /** The backend's bounds on what a record may claim (absent on older backends: api.ts `LIMITS`). */
  limits?: Partial<Limits>;
}

/** Counts past which a record is refused instead of drawn (the backend's format.MAX_COUNTS, MAX_HEAD_DIM). */
export interface Limits {
  layers: number;
  heads: number;
  /** Tokens of a sequence (and a kind's q_len / k_len). */
  tokens: number;
  headDim: number;
  /** Either side of the pooled overview. */
  overview: number;
}

/** One layer of attention, (heads, q, k) in C order; `head(h)` gives a (q, k) row-major view. */
export interface AttentionLayer {
  readonly heads: number;
  readonly q: number;
  readonly k: number;
  /** Index of the first head held (0 unless fetched with `head`). */
  readonly headOffset: number;
  head(h: number): Float32Array;
}

/** Pooled attention of every layer and head: (layers, heads, pq, pk). */
export interface Overview {
  readonly layers: number;
  readonly heads: number;
  readonly pq: number;
  readonly pk: number;
  readonly data: Float32Array;
}

/** Queries (q, d) and keys (k, d) of one head, as float32. */
export interface QK {
  readonly q: number;
  readonly k: number;
  readonly d: number;
  readonly queries: Float32Array;
  readonly keys: Float32Array;
}

/** A (rows × cols) block of one head's attention, row-major: an exact window or a pooled level. */
export interface Grid {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float32Array;
}

/** Each query row's K largest weights, descending: key indices and weights, (q × K) row-major. */
export interface TopK {
  readonly q: number;
  readonly k: number;
  readonly index: Uint32Array;
  readonly values: Float32Array;
}

/** Address of one record: what every data request names. */
export interface RecordRef {
  run: string;
  tag: string;
  example: string;
  step: number;
}

/** Address of one example across steps (what /metrics names). */
export interface ExampleRef {
  run: string;
  tag: string;
  example: string;
}

/** Per-head metric names, in display order (docs/metrics.md). */
export const METRIC_NAMES = ['entropy', 'distance', 'sink', 'prev_token', 'induction', 'duplicate', 'diagonal', 'retrieval'] as const;
export type MetricName = (typeof METRIC_NAMES)[number];

/**
 * /metrics: every step of an example; `kinds[kind][metric][stepIndex][layer][head]`, null where the metric
 * is undefined (NaN). A step may lack a kind or a metric (e.g. not logged there): then its entry is null.
 */
export interface MetricsResponse {
  steps: number[];
  kinds: Partial<Record<Kind, Record<string, ((number | null)[][] | null)[]>>>;
}

/** /divergence: Jensen-Shannon divergence per (layer, head) between two steps, in nats, in [0, max]. */
export interface DivergenceResponse {
  js: (number | null)[][];
  unit: string;
  max: number;
  /** False when the two steps have the same shape but different tokens. */
  same_tokens?: boolean;
}

/** A layers × heads grid of JSON numbers, null where undefined. */
export type JsonGrid = (number | null)[][];

/** One metric over the examples of a tag at one step, per head: mean, population std, min, max, and n (examples where it is defined). */
export interface ScoreStats {
  mean: JsonGrid;
  std: JsonGrid;
  min: JsonGrid;
  max: JsonGrid;
  n: number[][];
}

/** Address of a tag of a run (what /headscores covers: all its examples). */
export interface TagRef {
  run: string;
  tag: string;
}

/** What names a layers × heads grid of a tag (the model's indices when only some were logged). */
export interface HeadGridInfo {
  layers: number;
  heads: number;
  layer_ids: number[] | null;
  head_ids: number[] | null;
}

/** /headscores: each metric aggregated per head over the tag's examples at one step (docs/http-api.md). */
export interface HeadScoresResponse extends HeadGridInfo {
  run: string;
  tag: string;
  kind: Kind;
  kinds: Kind[];
  step: number;
  steps: number[];
  /** Examples aggregated, and those left out (another layers × heads grid). */
  examples: number;
  skipped: string[];
  metrics: Record<string, ScoreStats>;
}

/** /headtrend: each metric's mean and std per head at every step (null: not available at that step). */
export interface HeadTrendResponse extends HeadGridInfo {
  run: string;
  tag: string;
  kind: Kind;
  kinds: Kind[];
  steps: number[];
  examples: number[];
  metrics: Record<string, {mean: (JsonGrid | null)[]; std: (JsonGrid | null)[]}>;
}

/** /headexamples: the examples where one head scores highest on a metric at a step, highest first. */
export interface HeadExamplesResponse {
  run: string;
  tag: string;
  kind: Kind;
  metric: string;
  layer: number;
  head: number;
  step: number;
  /** Examples where the metric is defined for that head. */
  n: number;
  examples: {example: string; score: number}[];
}

export type Fusion = 'mean' | 'max' | 'min';
export const FUSIONS: readonly Fusion[] = ['mean', 'max', 'min'];

/** Attention rollout of one step: (n × n) row-major, rows sum to 1. */
export interface Rollout {
  readonly n: number;
  readonly data: Float32Array;
}

/** The data layer the views' controller talks to; HttpSource (api.ts) and the dev fixtures implement it. */
export interface DataSource {
  /**
   * The weightings it can serve (absent: raw weights only, e.g. the notebook page, which has no backend to
   * value-weight with). `weighting` below is 'weights' unless this lists 'value' and the kind has value norms.
   */
  readonly weightings?: readonly Weighting[];
  index(force?: boolean): Promise<IndexResponse>;
  header(ref: RecordRef): Promise<Header>;
  attention(ref: RecordRef, kind: Kind, layer: number, head?: number, weighting?: Weighting): Promise<AttentionLayer>;
  /** A long kind's overview is raw weights only: never ask it for 'value' (the backend answers 400). */
  overview(ref: RecordRef, kind: Kind, weighting?: Weighting): Promise<Overview>;
  /** Resolves null when q/k were not logged at that step (HTTP 404). */
  qk(ref: RecordRef, kind: Kind, layer: number, head: number): Promise<QK | null>;
  /** Per-head metrics of every step (kind given: only that kind); cached while the example's steps stay. */
  metrics(ex: ExampleRef, kind?: Kind): Promise<MetricsResponse>;
  /** JS divergence per head between two steps of one example. */
  divergence(ex: ExampleRef, kind: Kind, stepA: number, stepB: number): Promise<DivergenceResponse>;
  /** Attention rollout (Abnar & Zuidema 2020) of one step. */
  rollout(ref: RecordRef, kind: Kind, residual: number, fusion: Fusion): Promise<Rollout>;
  /**
   * One head over query rows [r0, r1) and key columns [c0, c1): exact from q/k for a long kind, the stored
   * values for a dense one (at most 4,194,304 values). Optional: a source without it serves dense kinds
   * through `attention`.
   */
  window?(ref: RecordRef, kind: Kind, layer: number, head: number, rows: [number, number], cols: [number, number], weighting?: Weighting): Promise<Grid>;
  /**
   * Pooled attention of one head of a long kind (level 0: `pyramid_shape`); raw weights only. `agg` mean
   * (default): keys summed, queries averaged; max: each cell the largest weight of its block (kinds with
   * `pyramid_max` only).
   */
  pyramid?(ref: RecordRef, kind: Kind, layer: number, head: number, level?: number, agg?: PyramidAgg): Promise<Grid>;
  /** The stored top-k of one head of a long kind (raw weights only). */
  topk?(ref: RecordRef, kind: Kind, layer: number, head: number): Promise<TopK>;
  /** The record's image (`header.image`); rejects (404) when it has none, (4xx) when it is corrupt. */
  image?(ref: RecordRef): Promise<ImageBytes>;
  /** Per-head metrics aggregated over a tag's examples at one step (from the records' headers). */
  headScores?(t: TagRef, step: number, kind: Kind): Promise<HeadScoresResponse>;
  /** Per-head means and spreads of every metric at every step of a tag. */
  headTrend?(t: TagRef, kind: Kind): Promise<HeadTrendResponse>;
  /** The examples where head (layer, head) scores highest on `metric` at `step`. */
  headExamples?(t: TagRef, step: number, kind: Kind, metric: string, layer: number, head: number, limit: number): Promise<HeadExamplesResponse>;
}
