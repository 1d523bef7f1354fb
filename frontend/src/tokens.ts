// Token axes: hiding special tokens / padding, sentence-pair filters and merging subwords into words, and the
// projection of an attention matrix onto such axes.
//
// Merging (one group = one word):
//   merged[I][J] = mean over queries i in word I of ( sum over keys j in word J of A[i][j] )
// Summing over the keys of a word keeps the attention mass a query gives to that word; averaging over the
// queries of a word keeps each merged row a distribution: if every row of A sums to 1 over the kept keys,
// every merged row sums to 1 too. Hidden tokens (special tokens, padding, the other sentence) are simply
// dropped: rows are not renormalised, as BertViz's sentence filters slice without renormalising.
//
// Word boundaries by tokenizer family, detected from the tokens themselves:
//   WordPiece (BERT):            a token starting with "##" continues the previous word.
//   byte-level BPE (GPT-2/RoBERTa): a token starting with "Ġ" (space) or "Ċ" (newline) starts a word; any
//                                other token continues the previous word (so "Hello" "," → "Hello,").
//   SentencePiece (T5, Llama):   a token starting with "▁" starts a word.
// Special tokens (listed, or looking special such as </s>) always stand alone, and the token after one
// starts a new word.

import {imageOf, patchCount} from './image';
import type {Header} from './types';

export type SentenceFilter = 'all' | 'aa' | 'bb' | 'ab' | 'ba';
export const SENTENCE_FILTERS: readonly SentenceFilter[] = ['all', 'aa', 'bb', 'ab', 'ba'];
export const SENTENCE_FILTER_LABELS: Record<SentenceFilter, string> = {
  all: 'All',
  aa: 'Sentence A → Sentence A',
  bb: 'Sentence B → Sentence B',
  ab: 'Sentence A → Sentence B',
  ba: 'Sentence B → Sentence A',
};

export type Scheme = 'wordpiece' | 'bpe' | 'sentencepiece' | 'none';

const SPECIAL_RE =
  /^(\[(CLS|SEP|PAD|MASK|UNK|BOS|EOS)\]|<\/?s>|<(pad|unk|mask|cls|sep|eos|bos)>|<\|[^|<>]{1,40}\|>)$/i;

/** How a patch token is labelled: its grid coordinates (row, column), never the token's text. */
export function patchLabel(r: number, c: number): string {
  return `▦ ${r},${c}`;
}

/**
 * The tokens of sequence `seq` as the views label them: a record with an image (header.image) shows its
 * patch tokens as grid coordinates (`▦ r,c`), every other token as its text (untrusted: drawn as text).
 */
export function tokenLabels(header: Header, seq: string): string[] {
  const toks = header.sequences[seq] ?? [];
  const im = imageOf(header);
  if (!im || im.sequence !== seq) return toks;
  const out = toks.slice();
  const cols = im.grid[1];
  for (let i = 0; i < patchCount(im); i++) out[im.patch_start + i] = patchLabel(Math.floor(i / cols), i % cols);
  return out;
}

/** Positions of the patch tokens of sequence `seq` (empty without an image): never merged into words. */
export function patchPositions(header: Header, seq: string): Set<number> {
  const im = imageOf(header);
  const out = new Set<number>();
  if (im && im.sequence === seq) for (let i = 0; i < patchCount(im); i++) out.add(im.patch_start + i);
  return out;
}

/** True for tokens that look special when the header lists none: [CLS], </s>, <pad>, <|endoftext|>, ... */
export function looksSpecial(token: string): boolean {
  return SPECIAL_RE.test(token);
}

/**
 * Indices of special tokens of one sequence. The header's `special_tokens` is a list for the `input`
 * sequence (or the only sequence), or a map from sequence name to list; without an entry for this
 * sequence, tokens that look special are used.
 */
export function specialIndices(
  special: number[] | Record<string, number[]> | null | undefined,
  seqName: string,
  tokens: readonly string[],
  onlySequence: boolean,
): Set<number> {
  let list: number[] | undefined;
  if (Array.isArray(special)) {
    if (seqName === 'input' || onlySequence) list = special;
  } else if (special && typeof special === 'object') {
    list = special[seqName];
  }
  if (list) return new Set(list.filter((i) => Number.isInteger(i) && i >= 0 && i < tokens.length));
  const s = new Set<number>();
  tokens.forEach((t, i) => {
    if (looksSpecial(t)) s.add(i);
  });
  return s;
}

export function detectScheme(tokens: readonly string[], special: ReadonlySet<number> = new Set()): Scheme {
  let bpe = false;
  let sp = false;
  for (let i = 0; i < tokens.length; i++) {
    if (special.has(i)) continue;
    const t = tokens[i];
    if (t.startsWith('##')) return 'wordpiece';
    if (t.startsWith('Ġ') || t.startsWith('Ċ')) bpe = true;
    else if (t.startsWith('▁')) sp = true;
  }
  return bpe ? 'bpe' : sp ? 'sentencepiece' : 'none';
}

function startsWord(t: string, scheme: Scheme): boolean {
  switch (scheme) {
    case 'wordpiece':
      return !t.startsWith('##');
    case 'bpe':
      return t.startsWith('Ġ') || t.startsWith('Ċ');
    case 'sentencepiece':
      return t.startsWith('▁');
    default:
      return true;
  }
}

/** A token as shown: BPE/SentencePiece space markers become spaces, then trimmed; never empty. */
export function displayToken(t: string): string {
  const s = t.replace(/[Ġ▁]/g, ' ').replace(/Ċ/g, '↵').trim();
  return s.length ? s : t.length ? '␣' : '∅';
}

function wordLabel(parts: string[], scheme: Scheme): string {
  if (scheme === 'wordpiece') return parts.map((p, i) => (i > 0 && p.startsWith('##') ? p.slice(2) : p)).join('');
  return displayToken(parts.join(''));
}

/** The rows or columns of a view: groups of original token indices, in order. */
export interface Axis {
  /** Number of original tokens. */
  readonly length: number;
  /** Label of each group. */
  readonly labels: string[];
  /** CSR layout: group g holds idx[starts[g] .. starts[g+1]). */
  readonly starts: Int32Array;
  readonly idx: Int32Array;
  /** Group of each original index, -1 if hidden. */
  readonly groupOf: Int32Array;
  /** True when the axis is exactly 0..length-1, one token per group. */
  readonly identity: boolean;
  /** True when some group holds more than one token. */
  readonly merged: boolean;
}

export interface AxisOptions {
  /** Half-open range of original indices to keep (sentence filter). */
  range?: [number, number];
  /** Original indices to hide. */
  hide?: ReadonlySet<number>;
  /** Merge subwords into words. */
  merge?: boolean;
  /** Indices that are special (never merged). Defaults to `hide`. */
  special?: ReadonlySet<number>;
}

export function buildAxis(tokens: readonly string[], opts: AxisOptions = {}): Axis {
  const n = tokens.length;
  const [lo, hi] = opts.range ?? [0, n];
  const a = Math.max(0, Math.min(n, lo));
  const b = Math.max(a, Math.min(n, hi));
  const hide = opts.hide ?? new Set<number>();
  const special = opts.special ?? hide;
  const scheme = opts.merge ? detectScheme(tokens, special) : 'none';
  const groups: number[][] = [];
  const labels: string[] = [];
  let prevSpecial = true;
  for (let i = a; i < b; i++) {
    const isSpecial = special.has(i);
    if (hide.has(i)) {
      prevSpecial = true;
      continue;
    }
    const t = tokens[i];
    const cont = scheme !== 'none' && !isSpecial && !prevSpecial && groups.length > 0 && !startsWord(t, scheme) && !looksSpecial(t);
    if (cont) groups[groups.length - 1].push(i);
    else groups.push([i]);
    prevSpecial = isSpecial;
  }
  const starts = new Int32Array(groups.length + 1);
  const idx = new Int32Array(groups.reduce((s, g) => s + g.length, 0));
  const groupOf = new Int32Array(n).fill(-1);
  let p = 0;
  let merged = false;
  groups.forEach((g, gi) => {
    starts[gi] = p;
    for (const i of g) {
      idx[p++] = i;
      groupOf[i] = gi;
    }
    if (g.length > 1) merged = true;
    labels.push(g.length > 1 ? wordLabel(g.map((i) => tokens[i]), scheme) : displayToken(tokens[g[0]]));
  });
  starts[groups.length] = p;
  const identity = groups.length === n && !merged;
  return {length: n, labels, starts, idx, groupOf, identity, merged};
}

export function axisSize(ax: Axis): number {
  return ax.labels.length;
}

/**
 * Projects a (q, k) row-major matrix onto row and column axes (see the top of this file). Returns `m`
 * itself when both axes are identities.
 */
export function project(m: Float32Array, q: number, k: number, rows: Axis, cols: Axis): Float32Array {
  if (rows.length !== q || cols.length !== k) throw new Error(`axes ${rows.length}x${cols.length} do not fit ${q}x${k}`);
  if (rows.identity && cols.identity) return m;
  const R = rows.labels.length;
  const C = cols.labels.length;
  const out = new Float32Array(R * C);
  const colsMerged = cols.merged;
  for (let g = 0; g < R; g++) {
    const s0 = rows.starts[g];
    const s1 = rows.starts[g + 1];
    const o = g * C;
    for (let s = s0; s < s1; s++) {
      const base = rows.idx[s] * k;
      if (!colsMerged) {
        for (let c = 0; c < C; c++) out[o + c] += m[base + cols.idx[c]];
      } else {
        for (let c = 0; c < C; c++) {
          let acc = 0;
          for (let t = cols.starts[c]; t < cols.starts[c + 1]; t++) acc += m[base + cols.idx[t]];
          out[o + c] += acc;
        }
      }
    }
    const cnt = s1 - s0;
    if (cnt > 1) for (let c = 0; c < C; c++) out[o + c] /= cnt;
  }
  return out;
}

/** Row and column index ranges a sentence-pair filter keeps, for a sequence of length n. */
export function sentenceRanges(
  filter: SentenceFilter,
  n: number,
  bStart: number | null,
): {rows: [number, number]; cols: [number, number]} {
  if (bStart == null || filter === 'all') return {rows: [0, n], cols: [0, n]};
  const b = Math.max(0, Math.min(n, bStart));
  const A: [number, number] = [0, b];
  const B: [number, number] = [b, n];
  switch (filter) {
    case 'aa':
      return {rows: A, cols: A};
    case 'bb':
      return {rows: B, cols: B};
    case 'ab':
      return {rows: A, cols: B};
    case 'ba':
      return {rows: B, cols: A};
  }
}
