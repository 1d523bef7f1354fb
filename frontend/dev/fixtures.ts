// Synthetic attention records for the dev page and tests: a DataSource with no server. Deterministic.
//   bert        BERT-like sentence pair (WordPiece, [CLS]/[SEP], sentence_b_start), 6 layers × 12 heads,
//               steps 0/100/200, q/k logged at 0 and 200 only; examples "pair", "long-512", "long-2048"
//   bert-ft     the same examples, other weights (for comparisons)
//   gpt2        causal decoder (byte-level BPE "Ġ"), 4 layers × 16 heads, q/k everywhere; layer 3 has a
//               softcap and a position bias (the neuron view's note)
//   t5          encoder / decoder / cross (SentencePiece "▁"), 3 layers × 8 heads
//   induction   2-layer causal model over "<s> segment segment" at 16 log-spaced steps 0..200: a
//               previous-token head (L0 H0) forms by step ~40, an induction head (L1 H1) between ~60 and
//               ~140 (the heads-over-training view's demo), a weaker one (L1 H2) later
//   probeset    8 sequences of the induction model at steps 0..200 (the Heads view's probe set)
//   vit         ViT-like encoder over a generated 32 × 32 px image (4 × 4 patches of 8 px: token 1 + 4r + c is
//               patch (r, c)), [CLS] first and a register token last, 2 layers × 4 heads, steps 0 and 100:
//               [CLS] attends most to patch (2, 1) at step 0 and to patch (1, 2) at step 100 (planted)
// /metrics, /divergence and /rollout are computed from the fixture attention (dev/fixture-metrics.ts).
// bert and vit store value norms (format v5: `has_value_norms`, synthetic norms ‖f(x_j)‖ per layer, head and
// key), so the weighting toggle and a comparison with bert-ft (none) can be tried on the dev page.
import {CodedAttention, FloatAttention, makeLut} from '../src/api';
import {jensenShannon, rollout as computeRollout} from '../src/derived';
import {headMetrics} from './fixture-metrics';
import {TagScores} from '../src/headscores';
import {looksSpecial} from '../src/tokens';
import {encodePng} from './png';
import type {
  AttentionLayer,
  DataSource,
  DivergenceResponse,
  ExampleRef,
  Fusion,
  Header,
  HeadExamplesResponse,
  HeadScoresResponse,
  HeadTrendResponse,
  ImageBytes,
  IndexExample,
  IndexResponse,
  Kind,
  KindInfo,
  LayerInfo,
  MetricsResponse,
  Overview,
  QK,
  RecordRef,
  TagRef,
  Rollout,
  Weighting,
} from '../src/types';
import {METRIC_NAMES} from '../src/types';

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** The fixture's codec: 0 and 255 log-spaced values from 1e-4 to 1. */
export const FIXTURE_LUT: number[] = Array.from({length: 256}, (_, c) => (c === 0 ? 0 : Math.pow(10, -4 + (4 * (c - 1)) / 254)));

function encode(v: number): number {
  if (v < 0.5e-4) return 0;
  const c = Math.round(1 + ((Math.log10(Math.min(1, v)) + 4) * 254) / 4);
  return Math.max(1, Math.min(255, c));
}

const WORDS = 'the a cat dog sat on mat quick brown fox jumps over lazy river bank money deposit walked into house garden tree played music loudly quietly'.split(' ');
const PIECES = ['##s', '##ing', '##ed', '##ly', '##er'];

function bertTokens(n: number, seed: number): {tokens: string[]; b: number} {
  const r = rng(seed);
  const body = n - 3;
  const a = Math.floor(body / 2);
  const out = ['[CLS]'];
  const words = (k: number) => {
    for (let i = 0; i < k; i++) {
      if (i > 0 && r() < 0.2 && !out[out.length - 1].startsWith('##')) out.push(PIECES[Math.floor(r() * PIECES.length)]);
      else out.push(WORDS[Math.floor(r() * WORDS.length)]);
    }
  };
  words(a);
  out.push('[SEP]');
  const b = out.length;
  words(body - a);
  out.push('[SEP]');
  return {tokens: out, b};
}

const PAIR_TOKENS = ['[CLS]', 'the', 'cat', 'sat', 'on', 'the', 'mat', '[SEP]', 'the', 'dog', 'play', '##ed', 'in', 'the', 'gar', '##den', '[SEP]'];
const GPT_TOKENS = ['The', 'Ġquick', 'Ġbrown', 'Ġfox', 'Ġjump', 'ed', 'Ġover', 'Ġthe', 'Ġlazy', 'Ġdog', '.', 'ĠIt', 'Ġwas', 'Ġnot', 'Ġamused', '.'];
const T5_ENC = ['▁translate', '▁English', '▁to', '▁German', ':', '▁The', '▁house', '▁is', '▁wonder', 'ful', '.', '</s>'];
const T5_DEC = ['<pad>', '▁Das', '▁Haus', '▁ist', '▁wunder', 'bar', '.', '</s>'];
const INDUCTION_SEGMENT = ['t17', 't42', 't5', 't33', 't8', 't61', 't29', 't14', 't50', 't3', 't38', 't22'];
const INDUCTION_TOKENS = ['<s>', ...INDUCTION_SEGMENT, ...INDUCTION_SEGMENT];

/** About `count` distinct steps from 0 to `total`, dense early (as the induction demo logs them). */
function logSpacedSteps(total: number, count: number): number[] {
  const steps = new Set([0, total]);
  for (let i = 1; i < count; i++) steps.add(Math.round(Math.expm1((Math.log1p(total) * i) / (count - 1))));
  return [...steps].filter((s) => s >= 0 && s <= total).sort((a, b) => a - b);
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/**
 * One head of the induction run at `step` (causal rows): a mixture of uniform, sink, self, previous-token
 * and induction (the successor of the earlier occurrence of the query's token) components whose weights
 * move over training, with a little multiplicative noise.
 */
function inductionHead(tokens: readonly string[], layer: number, head: number, step: number, r: () => number, out: Float32Array): void {
  const n = tokens.length;
  const w = {uniform: 1, sink: 0, self: 0, prev: 0, ind: 0};
  const key = `${layer}.${head}`;
  if (key === '0.0') w.prev = 6 * sigmoid((step - 30) / 6);
  else if (key === '0.1') w.sink = 1 + 4 * sigmoid((step - 15) / 8);
  else if (key === '0.2') w.self = 2 + 2 * sigmoid((step - 50) / 20);
  else if (key === '1.1') {
    w.ind = 14 * sigmoid((step - 100) / 11);
    w.sink = 1.5 * (1 - sigmoid((step - 100) / 11));
  } else if (key === '1.2') w.ind = 3 * sigmoid((step - 150) / 10);
  else if (key === '1.3') w.sink = 3;
  for (let i = 0; i < n; i++) {
    const row = i * n;
    const lim = i + 1;
    let targets: number[] = [];
    for (let j = 0; j < i; j++) if (tokens[j] === tokens[i]) targets.push(j + 1);
    targets = targets.filter((t) => t <= i);
    for (let j = 0; j < lim; j++) out[row + j] = (w.uniform / lim) * (0.7 + 0.6 * r());
    out[row] += w.sink;
    out[row + i] += w.self;
    if (i >= 1) out[row + i - 1] += w.prev;
    else out[row] += w.prev;
    if (targets.length) for (const t of targets) out[row + t] += w.ind / targets.length;
    else out[row] += w.ind * 0.5; // no earlier occurrence: park on <s>
    let s = 0;
    for (let j = 0; j < lim; j++) s += out[row + j];
    for (let j = 0; j < lim; j++) out[row + j] /= s;
  }
}

interface ExampleSpec {
  example: string;
  sequences: Record<string, string[]>;
  sentence_b_start: number | null;
  special: number[];
  kinds: Partial<Record<Kind, {layers: number; heads: number; d: number; causal: boolean; query: string; key: string; special?: (l: number) => Partial<LayerInfo>}>>;
  steps: number[];
  qkSteps: number[];
  /** Attention from q/k (consistent neuron view) instead of patterns. */
  fromQK: boolean;
  /** Heads that form over training (the induction run) instead of patterns. */
  induction?: boolean;
  /** An image over the input's tokens: its patch grid (from token 1), and the patch [CLS] attends to most. */
  image?: {grid: [number, number]; patch: number; plant: (progress: number) => [number, number]};
}

/** The vit fixture's image: 32 × 32 px, greys, each 8 px patch its own shade (lighter right and down), checkered. */
export const VIT_PNG = encodePng(32, 32, (x, y) => {
  const v = 70 + 24 * Math.floor(x / 8) + 12 * Math.floor(y / 8) + ((x + y) % 2) * 14;
  return [v, v, v + 10];
});
const VIT_TOKENS = ['[CLS]', ...Array.from({length: 16}, () => '<img>'), '[REG]'];

/**
 * [CLS]'s row of a vit head: 0.55 on the planted patch, 0.1 on itself, the rest spread evenly over the
 * other keys (so B − A across the two steps is +0.5 on one patch, −0.5 on another).
 */
function plantClsRow(out: Float32Array, k: number, patchStart: number, cols: number, [r, c]: [number, number]): void {
  const target = patchStart + r * cols + c;
  for (let j = 0; j < k; j++) out[j] = 0.35 / (k - 2);
  out[0] = 0.1;
  out[target] = 0.55;
}

interface RunSpec {
  run: string;
  seed: number;
  examples: ExampleSpec[];
}

function bertExamples(): ExampleSpec[] {
  const kinds = {encoder: {layers: 6, heads: 12, d: 32, causal: false, query: 'input', key: 'input'}};
  const long = (n: number) => {
    const t = bertTokens(n, n);
    return {example: `long-${n}`, sequences: {input: t.tokens}, sentence_b_start: t.b, special: [0, t.b - 1, n - 1], kinds, steps: [0, 100, 200], qkSteps: [200], fromQK: false};
  };
  return [
    {example: 'pair', sequences: {input: PAIR_TOKENS}, sentence_b_start: 8, special: [0, 7, 16], kinds, steps: [0, 100, 200], qkSteps: [0, 200], fromQK: true},
    long(512),
    long(2048),
  ];
}

export const RUNS: RunSpec[] = [
  {run: 'bert', seed: 1, examples: bertExamples()},
  {run: 'bert-ft', seed: 2, examples: bertExamples()},
  {
    run: 'gpt2',
    seed: 3,
    examples: [
      {
        example: '0',
        sequences: {input: GPT_TOKENS},
        sentence_b_start: null,
        special: [],
        kinds: {
          decoder: {layers: 4, heads: 16, d: 16, causal: true, query: 'input', key: 'input', special: (l) => (l === 3 ? {softcap: 50, position_bias: true} : {})},
        },
        steps: [0, 50, 100],
        qkSteps: [0, 50, 100],
        fromQK: true,
      },
    ],
  },
  {
    run: 'induction',
    seed: 5,
    examples: [
      {
        example: '0',
        sequences: {input: INDUCTION_TOKENS},
        sentence_b_start: null,
        special: [0],
        kinds: {decoder: {layers: 2, heads: 4, d: 16, causal: true, query: 'input', key: 'input'}},
        steps: logSpacedSteps(200, 16),
        qkSteps: [],
        fromQK: false,
        induction: true,
      },
    ],
  },
  {
    // a probe set for the Heads view: 8 sequences of the induction model (each its own segment repeated)
    run: 'probeset',
    seed: 7,
    examples: Array.from({length: 8}, (_, i) => {
      const seg = Array.from({length: 6 + (i % 3)}, (_, j) => INDUCTION_SEGMENT[(j * (i + 1) + i) % INDUCTION_SEGMENT.length] + (j >= INDUCTION_SEGMENT.length ? String(j) : ''));
      const segment = [...new Set(seg)];
      return {
        example: String(i),
        sequences: {input: ['<s>', ...segment, ...segment]},
        sentence_b_start: null,
        special: [0],
        kinds: {decoder: {layers: 2, heads: 4, d: 16, causal: true, query: 'input', key: 'input'}},
        steps: [0, 50, 100, 150, 200],
        qkSteps: [],
        fromQK: false,
        induction: true,
      };
    }),
  },
  {
    run: 't5',
    seed: 4,
    examples: [
      {
        example: '0',
        sequences: {input: T5_ENC, target: T5_DEC},
        sentence_b_start: null,
        special: [],
        kinds: {
          encoder: {layers: 3, heads: 8, d: 16, causal: false, query: 'input', key: 'input'},
          decoder: {layers: 3, heads: 8, d: 16, causal: true, query: 'target', key: 'target'},
          cross: {layers: 3, heads: 8, d: 16, causal: false, query: 'target', key: 'input'},
        },
        steps: [10],
        qkSteps: [10],
        fromQK: true,
      },
    ],
  },
  {
    run: 'vit',
    seed: 6,
    examples: [
      {
        example: '0',
        sequences: {input: VIT_TOKENS},
        sentence_b_start: null,
        special: [0, 17],
        kinds: {encoder: {layers: 2, heads: 4, d: 16, causal: false, query: 'input', key: 'input'}},
        steps: [0, 100],
        qkSteps: [],
        fromQK: false,
        image: {grid: [4, 4], patch: 8, plant: (progress) => (progress < 0.5 ? [2, 1] : [1, 2])},
      },
    ],
  },
];

function layerInfo(spec: NonNullable<ExampleSpec['kinds'][Kind]>, l: number): Required<Pick<LayerInfo, 'scaling' | 'causal' | 'position_bias' | 'softcap' | 'sliding_window'>> {
  return {scaling: 1 / Math.sqrt(spec.d), causal: spec.causal, position_bias: false, softcap: null, sliding_window: null, ...(spec.special?.(l) ?? {})};
}

/** The runs stored with value norms (format v5). */
function hasNorms(run: RunSpec): boolean {
  return run.run === 'bert' || run.run === 'vit';
}

/** Synthetic value norms ‖f(x_j)‖ of one head: 0.25..2, key 0 (the [CLS] / first token, a sink) small. */
function valueNorms(run: RunSpec, layer: number, head: number, k: number): Float32Array {
  const out = new Float32Array(k);
  const r = rng(run.seed * 4099 + layer * 97 + head * 13);
  for (let j = 0; j < k; j++) out[j] = j === 0 ? 0.25 : 0.25 + 1.75 * r();
  return out;
}

function headerOf(run: RunSpec, ex: ExampleSpec, step: number): Header {
  const kinds: Partial<Record<Kind, KindInfo>> = {};
  for (const [k, s] of Object.entries(ex.kinds) as [Kind, NonNullable<ExampleSpec['kinds'][Kind]>][]) {
    const ql = ex.sequences[s.query].length;
    const kl = ex.sequences[s.key].length;
    kinds[k] = {
      query: s.query,
      key: s.key,
      layers: s.layers,
      heads: s.heads,
      head_dim: s.d,
      has_qk: ex.qkSteps.length > 0,
      overview_shape: [Math.min(64, ql), Math.min(64, kl)],
      ...(hasNorms(run) ? {has_value_norms: true} : {}),
      // t5 is logged without a capture: no layer_info fields (the neuron view says what it assumes)
      layer_info: Array.from({length: s.layers}, (_, l) => (run.run === 't5' ? {} : layerInfo(s, l))),
    };
  }
  // as the writer does: special tokens detected per sequence ("input" given explicitly)
  const special: Record<string, number[]> = {};
  for (const [name, toks] of Object.entries(ex.sequences)) {
    special[name] = name === 'input' && ex.special.length ? ex.special : toks.flatMap((t, i) => (looksSpecial(t) ? [i] : []));
  }
  const image = ex.image
    ? {image: {mime: 'image/png' as const, width: ex.image.grid[1] * ex.image.patch, height: ex.image.grid[0] * ex.image.patch, grid: ex.image.grid, sequence: 'input', patch_start: 1, bytes: VIT_PNG.length}}
    : {};
  return {
    ...image,
    version: ex.image ? 4 : 1,
    tag: 'probes',
    example: ex.example,
    step,
    wall_time: 1764070000 + step,
    model: run.run === 'gpt2' ? 'tiny-gpt2 (fixture)' : run.run === 't5' ? 't5-small (fixture)' : run.run === 'induction' || run.run === 'probeset' ? 'induction-2l4h (fixture)' : run.run === 'vit' ? 'vit-tiny (fixture)' : 'bert-mini (fixture)',
    sequences: ex.sequences,
    sentence_b_start: ex.sentence_b_start,
    special_tokens: special,
    kinds,
  };
}

/** Pattern attention for long inputs: a mixture of a few targets per query plus a little uniform mass. */
function patternHead(n: number, m: number, causal: boolean, head: number, layer: number, progress: number, r: () => number, out: Float32Array): void {
  const kind = (head + layer * 3) % 6;
  const eps = 0.02 + 0.1 * (1 - progress);
  for (let i = 0; i < n; i++) {
    const lim = causal ? Math.min(m, i + 1) : m;
    const base = eps / lim;
    const row = i * m;
    for (let j = 0; j < lim; j++) out[row + j] = base;
    const targets: [number, number][] = [];
    switch (kind) {
      case 0:
        targets.push([Math.max(0, i - 1), 0.8], [i, 0.2]);
        break;
      case 1:
        targets.push([Math.min(lim - 1, i + 1), 0.8], [0, 0.2]);
        break;
      case 2:
        targets.push([0, 0.6], [lim - 1, 0.4]);
        break;
      case 3:
        targets.push([i % lim, 0.5], [Math.floor(r() * lim), 0.3], [Math.floor(r() * lim), 0.2]);
        break;
      case 4:
        for (let t = 0; t < 6; t++) targets.push([Math.max(0, Math.min(lim - 1, i - 3 + t)), 1 / 6]);
        break;
      default:
        targets.push([Math.floor((i * 7 + head) % lim), 0.7], [0, 0.3]);
    }
    for (const [j, w] of targets) out[row + j] += (1 - eps) * w;
  }
}

function softmaxRows(scores: Float32Array, q: number, k: number, causal: boolean): void {
  for (let i = 0; i < q; i++) {
    let mx = -Infinity;
    for (let j = 0; j < k; j++) if (!(causal && j > i)) mx = Math.max(mx, scores[i * k + j]);
    let s = 0;
    for (let j = 0; j < k; j++) {
      const e = causal && j > i ? 0 : Math.exp(scores[i * k + j] - mx);
      scores[i * k + j] = e;
      s += e;
    }
    for (let j = 0; j < k; j++) scores[i * k + j] /= s;
  }
}

/** Per-head q/k with structure: query i leans toward the key of a head-specific target token. */
function makeQK(ql: number, kl: number, d: number, head: number, layer: number, progress: number, seed: number): {queries: Float32Array; keys: Float32Array} {
  const r = rng(seed);
  const g = () => {
    const u = Math.max(1e-9, r());
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  };
  const keys = new Float32Array(kl * d);
  for (let i = 0; i < keys.length; i++) keys[i] = g();
  const queries = new Float32Array(ql * d);
  const strength = 1 + 3 * progress;
  const kind = (head + layer) % 4;
  for (let i = 0; i < ql; i++) {
    const t = kind === 0 ? Math.max(0, Math.min(kl - 1, i - 1)) : kind === 1 ? 0 : kind === 2 ? Math.min(kl - 1, i) : Math.min(kl - 1, i + 1);
    for (let x = 0; x < d; x++) queries[i * d + x] = strength * keys[t * d + x] * 0.6 + g() * 0.8;
  }
  return {queries, keys};
}

function toHalfRoundTrip(a: Float32Array): Float32Array {
  // fixtures mimic float16 storage precision
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = Math.fround(Math.round(a[i] * 1024) / 1024);
  return out;
}

export class FixtureSource implements DataSource {
  /** As the backend: value-weighted attention for the runs with value norms (`has_value_norms`). */
  readonly weightings: readonly Weighting[] = ['weights', 'value'];
  private lut = makeLut(FIXTURE_LUT);
  private cache = new Map<string, unknown>();
  /** Requests made (route keys), for tests. */
  readonly log: string[] = [];

  index(): Promise<IndexResponse> {
    const runs = RUNS.map((run) => ({
      run: run.run,
      tags: [
        {
          tag: 'probes',
          examples: run.examples.map(
            (ex): IndexExample => ({example: ex.example, steps: ex.steps, qk_steps: ex.qkSteps, header: headerOf(run, ex, ex.steps[ex.steps.length - 1])}),
          ),
        },
      ],
    }));
    return Promise.resolve({version: 1, codec: {name: 'log8', lut: FIXTURE_LUT}, runs});
  }

  private spec(ref: RecordRef, checkStep = true): {run: RunSpec; ex: ExampleSpec} {
    const run = RUNS.find((r) => r.run === ref.run);
    const ex = run?.examples.find((e) => e.example === ref.example);
    if (!run || !ex || ref.tag !== 'probes' || (checkStep && !ex.steps.includes(ref.step))) throw new Error(`404: no record ${JSON.stringify(ref)}`);
    return {run, ex};
  }

  header(ref: RecordRef): Promise<Header> {
    this.log.push(`header ${ref.run} ${ref.step}`);
    try {
      const {run, ex} = this.spec(ref);
      return Promise.resolve(headerOf(run, ex, ref.step));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private memo<T>(key: string, f: () => T, keep = 24): T {
    if (this.cache.has(key)) return this.cache.get(key) as T;
    const v = f();
    this.cache.set(key, v);
    if (this.cache.size > keep) this.cache.delete(this.cache.keys().next().value as string);
    return v;
  }

  private layer(ref: RecordRef, kind: Kind, layer: number): AttentionLayer {
    const {run, ex} = this.spec(ref);
    const ks = ex.kinds[kind];
    if (!ks) throw new Error(`404: no ${kind}`);
    if (layer < 0 || layer >= ks.layers) throw new Error(`400: layer ${layer} out of range`);
    const ql = ex.sequences[ks.query].length;
    const kl = ex.sequences[ks.key].length;
    const progress = ex.steps.indexOf(ref.step) / Math.max(1, ex.steps.length - 1);
    return this.memo(`L ${ref.run} ${ref.example} ${ref.step} ${kind} ${layer}`, () => {
      if (ex.fromQK) {
        const data = new Float32Array(ks.heads * ql * kl);
        for (let h = 0; h < ks.heads; h++) {
          const {queries, keys} = this.qkArrays(run, ex, ref.step, kind, layer, h, progress);
          const s = data.subarray(h * ql * kl, (h + 1) * ql * kl);
          const sc = 1 / Math.sqrt(ks.d);
          for (let i = 0; i < ql; i++) for (let j = 0; j < kl; j++) {
            let dot = 0;
            for (let x = 0; x < ks.d; x++) dot += queries[i * ks.d + x] * keys[j * ks.d + x];
            s[i * kl + j] = dot * sc;
          }
          softmaxRows(s, ql, kl, ks.causal);
        }
        // quantise through the codec like the real backend
        const codes = new Uint8Array(data.length);
        for (let i = 0; i < data.length; i++) codes[i] = encode(data[i]);
        return new CodedAttention(ks.heads, ql, kl, codes, this.lut);
      }
      const r = rng(run.seed * 1000 + layer * 31 + hash(ex.example) + (ex.induction ? ref.step * 7 : 0));
      const codes = new Uint8Array(ks.heads * ql * kl);
      const tmp = new Float32Array(ql * kl);
      for (let h = 0; h < ks.heads; h++) {
        tmp.fill(0);
        if (ex.induction) inductionHead(ex.sequences[ks.query], layer, h, ref.step, r, tmp);
        else patternHead(ql, kl, ks.causal, h + run.seed, layer, progress, r, tmp);
        if (ex.image) plantClsRow(tmp.subarray(0, kl), kl, 1, ex.image.grid[1], ex.image.plant(progress));
        const off = h * ql * kl;
        for (let i = 0; i < tmp.length; i++) codes[off + i] = encode(tmp[i]);
      }
      return new CodedAttention(ks.heads, ql, kl, codes, this.lut);
    }, 6);
  }

  private qkArrays(run: RunSpec, ex: ExampleSpec, step: number, kind: Kind, layer: number, head: number, progress: number): {queries: Float32Array; keys: Float32Array} {
    const ks = ex.kinds[kind]!;
    const ql = ex.sequences[ks.query].length;
    const kl = ex.sequences[ks.key].length;
    const seed = run.seed * 7919 + layer * 131 + head * 17 + hash(kind + ex.example);
    const {queries, keys} = makeQK(ql, kl, ks.d, head + run.seed, layer, progress, seed);
    return {queries: toHalfRoundTrip(queries), keys: toHalfRoundTrip(keys)};
  }

  /** A layer value-weighted (α_ij·‖f(x_j)‖, rows renormalised, through the codec as served); 404 without norms. */
  private weighted(ref: RecordRef, kind: Kind, layer: number, weighting: Weighting | undefined): AttentionLayer {
    const full = this.layer(ref, kind, layer);
    if (weighting !== 'value') return full;
    const {run} = this.spec(ref);
    if (!hasNorms(run)) throw new Error(`404: ${ref.run} stores no value norms`);
    return this.memo(`V ${ref.run} ${ref.example} ${ref.step} ${kind} ${layer}`, () => {
      const {heads, q, k} = full;
      const data = new Float32Array(heads * q * k);
      for (let h = 0; h < heads; h++) {
        const a = full.head(h);
        const norms = valueNorms(run, layer, h, k);
        for (let i = 0; i < q; i++) {
          const o = (h * q + i) * k;
          let sum = 0;
          for (let j = 0; j < k; j++) sum += (data[o + j] = a[i * k + j] * norms[j]);
          for (let j = 0; j < k; j++) data[o + j] = sum > 0 ? this.lut[encode(data[o + j] / sum)] : 0;
        }
      }
      return new FloatAttention(heads, q, k, data);
    }, 6);
  }

  attention(ref: RecordRef, kind: Kind, layer: number, head?: number, weighting?: Weighting): Promise<AttentionLayer> {
    this.log.push(`attention ${ref.run} ${ref.step} ${kind} ${layer} ${head ?? ''}${weighting === 'value' ? ' value' : ''}`);
    try {
      const full = this.weighted(ref, kind, layer, weighting);
      if (head === undefined) return Promise.resolve(full);
      if (head < 0 || head >= full.heads) throw new Error(`400: head ${head} out of range`);
      return Promise.resolve(new FloatAttention(1, full.q, full.k, Float32Array.from(full.head(head)), head));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  overview(ref: RecordRef, kind: Kind, weighting?: Weighting): Promise<Overview> {
    this.log.push(`overview ${ref.run} ${ref.step} ${kind}${weighting === 'value' ? ' value' : ''}`);
    try {
      const {ex} = this.spec(ref);
      const ks = ex.kinds[kind];
      if (!ks) throw new Error(`404: no ${kind}`);
      return Promise.resolve(
        this.memo(`O ${ref.run} ${ref.example} ${ref.step} ${kind} ${weighting ?? ''}`, () => {
          const ql = ex.sequences[ks.query].length;
          const kl = ex.sequences[ks.key].length;
          const pq = Math.min(64, ql);
          const pk = Math.min(64, kl);
          const data = new Float32Array(ks.layers * ks.heads * pq * pk);
          for (let l = 0; l < ks.layers; l++) {
            const att = this.weighted(ref, kind, l, weighting);
            for (let h = 0; h < ks.heads; h++) {
              const m = att.head(h);
              const o = (l * ks.heads + h) * pq * pk;
              const cnt = new Float32Array(pq);
              for (let i = 0; i < ql; i++) {
                const bi = Math.floor((i * pq) / ql);
                cnt[bi]++;
                for (let j = 0; j < kl; j++) data[o + bi * pk + Math.floor((j * pk) / kl)] += m[i * kl + j];
              }
              for (let bi = 0; bi < pq; bi++) for (let bj = 0; bj < pk; bj++) data[o + bi * pk + bj] /= Math.max(1, cnt[bi]);
            }
          }
          // through the codec, as served
          for (let i = 0; i < data.length; i++) data[i] = this.lut[encode(data[i])];
          return {layers: ks.layers, heads: ks.heads, pq, pk, data};
        }, 6),
      );
    } catch (e) {
      return Promise.reject(e);
    }
  }

  qk(ref: RecordRef, kind: Kind, layer: number, head: number): Promise<QK | null> {
    this.log.push(`qk ${ref.run} ${ref.step} ${kind} ${layer} ${head}`);
    try {
      const {run, ex} = this.spec(ref);
      const ks = ex.kinds[kind];
      if (!ks) throw new Error(`404: no ${kind}`);
      if (!ex.qkSteps.includes(ref.step)) return Promise.resolve(null);
      const progress = ex.steps.indexOf(ref.step) / Math.max(1, ex.steps.length - 1);
      const {queries, keys} = this.qkArrays(run, ex, ref.step, kind, layer, head, progress);
      return Promise.resolve({q: ex.sequences[ks.query].length, k: ex.sequences[ks.key].length, d: ks.d, queries, keys});
    } catch (e) {
      return Promise.reject(e);
    }
  }

  image(ref: RecordRef): Promise<ImageBytes> {
    this.log.push(`image ${ref.run} ${ref.step}`);
    try {
      const {ex} = this.spec(ref);
      if (!ex.image) throw new Error(`404: step ${ref.step} of ${ref.run}/${ref.example} has no image`);
      return Promise.resolve({mime: 'image/png', bytes: VIT_PNG});
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private derived = new Map<string, unknown>();

  private derive<T>(key: string, f: () => T): T {
    if (!this.derived.has(key)) this.derived.set(key, f());
    return this.derived.get(key) as T;
  }

  metrics(x: ExampleRef, kind?: Kind): Promise<MetricsResponse> {
    this.log.push(`metrics ${x.run} ${x.example} ${kind ?? ''}`);
    try {
      const {ex} = this.spec({...x, step: NaN}, false);
      const kinds: MetricsResponse['kinds'] = {};
      for (const k of Object.keys(ex.kinds) as Kind[]) {
        if (kind && k !== kind) continue;
        const ks = ex.kinds[k]!;
        kinds[k] = this.derive(`M ${x.run} ${x.example} ${k}`, () => {
          const tokens = ks.query === ks.key ? ex.sequences[ks.query] : null;
          const byMetric: Record<string, ((number | null)[][] | null)[]> = Object.fromEntries(METRIC_NAMES.map((m) => [m, []]));
          for (const step of ex.steps) {
            const perLayer = Array.from({length: ks.layers}, (_, l) => headMetrics(this.layer({...x, step}, k, l), tokens, ks.causal));
            for (const m of METRIC_NAMES) byMetric[m].push(perLayer.map((pm) => pm[m].map((v) => (Number.isFinite(v) ? v : null))));
          }
          return byMetric;
        });
      }
      if (kind && !kinds[kind]) throw new Error(`404: no ${kind}`);
      return Promise.resolve({steps: ex.steps.slice(), kinds});
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The head scores of a tag, from every example's metrics (as the writer stores them in each header). */
  private async scores(t: TagRef, kind: Kind): Promise<TagScores> {
    const run = RUNS.find((r) => r.run === t.run);
    if (!run || t.tag !== 'probes') throw new Error(`404: no tag ${JSON.stringify(t)}`);
    const key = `S ${t.run} ${kind}`;
    if (!this.derived.has(key)) {
      const headers: Header[] = [];
      for (const ex of run.examples) {
        if (!ex.kinds[kind]) continue;
        const m = await this.metrics({run: t.run, tag: t.tag, example: ex.example}, kind);
        ex.steps.forEach((step, i) => {
          const grids = Object.fromEntries(Object.entries(m.kinds[kind] ?? {}).map(([n, per]) => [n, per[i] ?? []])) as Record<string, number[][]>;
          headers.push({...headerOf(run, ex, step), metrics: {[kind]: grids}});
        });
      }
      this.derived.set(key, new TagScores(t, headers, kind));
    }
    return this.derived.get(key) as TagScores;
  }

  async headScores(t: TagRef, step: number, kind: Kind): Promise<HeadScoresResponse> {
    this.log.push(`headscores ${t.run} ${step} ${kind}`);
    return (await this.scores(t, kind)).at(step);
  }

  async headTrend(t: TagRef, kind: Kind): Promise<HeadTrendResponse> {
    this.log.push(`headtrend ${t.run} ${kind}`);
    return (await this.scores(t, kind)).trend();
  }

  async headExamples(t: TagRef, step: number, kind: Kind, metric: string, layer: number, head: number, limit: number): Promise<HeadExamplesResponse> {
    this.log.push(`headexamples ${t.run} ${step} ${kind} ${metric} ${layer} ${head}`);
    return (await this.scores(t, kind)).top(step, metric, layer, head, limit);
  }

  divergence(x: ExampleRef, kind: Kind, stepA: number, stepB: number): Promise<DivergenceResponse> {
    this.log.push(`divergence ${x.run} ${x.example} ${kind} ${stepA} ${stepB}`);
    try {
      const {ex} = this.spec({...x, step: stepA});
      this.spec({...x, step: stepB});
      const ks = ex.kinds[kind];
      if (!ks) throw new Error(`404: no ${kind}`);
      const js = this.derive(`D ${x.run} ${x.example} ${kind} ${stepA} ${stepB}`, () =>
        Array.from({length: ks.layers}, (_, l) => jensenShannon(this.layer({...x, step: stepA}, kind, l), this.layer({...x, step: stepB}, kind, l)).map((v) => (Number.isFinite(v) ? v : null))),
      );
      return Promise.resolve({js, unit: 'nats', max: Math.LN2});
    } catch (e) {
      return Promise.reject(e);
    }
  }

  rollout(ref: RecordRef, kind: Kind, residual: number, fusion: Fusion): Promise<Rollout> {
    this.log.push(`rollout ${ref.run} ${ref.step} ${kind} ${residual} ${fusion}`);
    try {
      const {ex} = this.spec(ref);
      const ks = ex.kinds[kind];
      if (!ks) throw new Error(`404: no ${kind}`);
      if (ks.query !== ks.key) throw new Error('400: rollout needs self-attention');
      const n = ex.sequences[ks.query].length;
      if (n > 1024) throw new Error(`fixture: the dev page does not compute the rollout of ${n} tokens in the browser (the server does)`);
      const r = this.derive(`R ${ref.run} ${ref.example} ${ref.step} ${kind} ${residual} ${fusion}`, () => {
        const R = computeRollout(Array.from({length: ks.layers}, (_, l) => this.layer(ref, kind, l)), residual, fusion);
        const data = new Float32Array(R.length);
        for (let i = 0; i < R.length; i++) data[i] = this.lut[encode(R[i])]; // through the codec, as served
        return {n, data};
      });
      return Promise.resolve(r);
    } catch (e) {
      return Promise.reject(e);
    }
  }
}
