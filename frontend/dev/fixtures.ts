// Synthetic attention records for the dev page and tests: a DataSource with no server. Deterministic.
//   bert        BERT-like sentence pair (WordPiece, [CLS]/[SEP], sentence_b_start), 6 layers × 12 heads,
//               steps 0/100/200, q/k logged at 0 and 200 only; examples "pair", "long-512", "long-2048"
//   bert-ft     the same examples, other weights (for comparisons)
//   gpt2        causal decoder (byte-level BPE "Ġ"), 4 layers × 16 heads, q/k everywhere; layer 3 has a
//               softcap and a position bias (the neuron view's note)
//   t5          encoder / decoder / cross (SentencePiece "▁"), 3 layers × 8 heads
import {CodedAttention, FloatAttention, makeLut} from '../src/api';
import {looksSpecial} from '../src/tokens';
import type {
  AttentionLayer,
  DataSource,
  Header,
  IndexExample,
  IndexResponse,
  Kind,
  KindInfo,
  LayerInfo,
  Overview,
  QK,
  RecordRef,
} from '../src/types';

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
];

function layerInfo(spec: NonNullable<ExampleSpec['kinds'][Kind]>, l: number): Required<Pick<LayerInfo, 'scaling' | 'causal' | 'position_bias' | 'softcap' | 'sliding_window'>> {
  return {scaling: 1 / Math.sqrt(spec.d), causal: spec.causal, position_bias: false, softcap: null, sliding_window: null, ...(spec.special?.(l) ?? {})};
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
      // t5 is logged without a capture: no layer_info fields (the neuron view says what it assumes)
      layer_info: Array.from({length: s.layers}, (_, l) => (run.run === 't5' ? {} : layerInfo(s, l))),
    };
  }
  // as the writer does: special tokens detected per sequence ("input" given explicitly)
  const special: Record<string, number[]> = {};
  for (const [name, toks] of Object.entries(ex.sequences)) {
    special[name] = name === 'input' && ex.special.length ? ex.special : toks.flatMap((t, i) => (looksSpecial(t) ? [i] : []));
  }
  return {
    version: 1,
    tag: 'probes',
    example: ex.example,
    step,
    wall_time: 1764070000 + step,
    model: run.run === 'gpt2' ? 'tiny-gpt2 (fixture)' : run.run === 't5' ? 't5-small (fixture)' : 'bert-mini (fixture)',
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

  private spec(ref: RecordRef): {run: RunSpec; ex: ExampleSpec} {
    const run = RUNS.find((r) => r.run === ref.run);
    const ex = run?.examples.find((e) => e.example === ref.example);
    if (!run || !ex || ref.tag !== 'probes' || !ex.steps.includes(ref.step)) throw new Error(`404: no record ${JSON.stringify(ref)}`);
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
      const r = rng(run.seed * 1000 + layer * 31 + hash(ex.example));
      const codes = new Uint8Array(ks.heads * ql * kl);
      const tmp = new Float32Array(ql * kl);
      for (let h = 0; h < ks.heads; h++) {
        tmp.fill(0);
        patternHead(ql, kl, ks.causal, h + run.seed, layer, progress, r, tmp);
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

  attention(ref: RecordRef, kind: Kind, layer: number, head?: number): Promise<AttentionLayer> {
    this.log.push(`attention ${ref.run} ${ref.step} ${kind} ${layer} ${head ?? ''}`);
    try {
      const full = this.layer(ref, kind, layer);
      if (head === undefined) return Promise.resolve(full);
      if (head < 0 || head >= full.heads) throw new Error(`400: head ${head} out of range`);
      return Promise.resolve(new FloatAttention(1, full.q, full.k, Float32Array.from(full.head(head)), head));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  overview(ref: RecordRef, kind: Kind): Promise<Overview> {
    this.log.push(`overview ${ref.run} ${ref.step} ${kind}`);
    try {
      const {ex} = this.spec(ref);
      const ks = ex.kinds[kind];
      if (!ks) throw new Error(`404: no ${kind}`);
      return Promise.resolve(
        this.memo(`O ${ref.run} ${ref.example} ${ref.step} ${kind}`, () => {
          const ql = ex.sequences[ks.query].length;
          const kl = ex.sequences[ks.key].length;
          const pq = Math.min(64, ql);
          const pk = Math.min(64, kl);
          const data = new Float32Array(ks.layers * ks.heads * pq * pk);
          for (let l = 0; l < ks.layers; l++) {
            const att = this.layer(ref, kind, l);
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
}
