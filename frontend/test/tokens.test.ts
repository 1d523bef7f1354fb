import {describe, expect, it} from 'vitest';
import {buildAxis, detectScheme, displayToken, looksSpecial, project, sentenceRanges, specialIndices} from '../src/tokens';

/** A random row-stochastic matrix. */
function stochastic(q: number, k: number, seed = 1): Float32Array {
  let s = seed;
  const r = () => ((s = (s * 16807) % 2147483647) / 2147483647);
  const m = new Float32Array(q * k);
  for (let i = 0; i < q; i++) {
    let sum = 0;
    for (let j = 0; j < k; j++) sum += m[i * k + j] = r();
    for (let j = 0; j < k; j++) m[i * k + j] /= sum;
  }
  return m;
}

const rowSums = (m: Float32Array, R: number, C: number) => Array.from({length: R}, (_, i) => m.subarray(i * C, (i + 1) * C).reduce((a, b) => a + b, 0));

const BERT = ['[CLS]', 'the', 'cat', '[SEP]', 'play', '##ed', 'in', 'the', 'gar', '##den', '[SEP]'];

describe('sentence-pair filters', () => {
  it('gives the BertViz slices', () => {
    expect(sentenceRanges('all', 11, 4)).toEqual({rows: [0, 11], cols: [0, 11]});
    expect(sentenceRanges('aa', 11, 4)).toEqual({rows: [0, 4], cols: [0, 4]});
    expect(sentenceRanges('bb', 11, 4)).toEqual({rows: [4, 11], cols: [4, 11]});
    expect(sentenceRanges('ab', 11, 4)).toEqual({rows: [0, 4], cols: [4, 11]});
    expect(sentenceRanges('ba', 11, 4)).toEqual({rows: [4, 11], cols: [0, 4]});
    expect(sentenceRanges('ab', 11, null)).toEqual({rows: [0, 11], cols: [0, 11]});
  });
  it('slices the matrix exactly (A → B keeps the A rows over the B columns)', () => {
    const n = BERT.length;
    const m = stochastic(n, n);
    const {rows, cols} = sentenceRanges('ab', n, 4);
    const R = buildAxis(BERT, {range: rows});
    const C = buildAxis(BERT, {range: cols});
    expect(R.labels).toEqual(['[CLS]', 'the', 'cat', '[SEP]']);
    expect(C.labels).toEqual(['play', '##ed', 'in', 'the', 'gar', '##den', '[SEP]']);
    const p = project(m, n, n, R, C);
    expect(p.length).toBe(4 * 7);
    for (let i = 0; i < 4; i++) for (let j = 0; j < 7; j++) expect(p[i * 7 + j]).toBe(m[i * n + 4 + j]);
  });
  it('returns the matrix itself when nothing is filtered', () => {
    const m = stochastic(3, 3);
    const ax = buildAxis(['a', 'b', 'c']);
    expect(ax.identity).toBe(true);
    expect(project(m, 3, 3, ax, ax)).toBe(m);
  });
});

describe('special tokens', () => {
  it('reads the header list, the per-sequence map, or falls back to the look of tokens', () => {
    expect([...specialIndices([0, 3, 99], 'input', BERT, true)]).toEqual([0, 3]);
    expect([...specialIndices({output: [0]}, 'output', ['<pad>', 'x'], false)]).toEqual([0]);
    expect([...specialIndices(null, 'input', BERT, true)]).toEqual([0, 3, 10]);
    expect([...specialIndices([1], 'output', ['<pad>', 'Das', '</s>'], false)]).toEqual([0, 2]);
    for (const t of ['[CLS]', '[SEP]', '[PAD]', '<s>', '</s>', '<pad>', '<|endoftext|>', '<|im_start|>']) expect(looksSpecial(t)).toBe(true);
    for (const t of ['the', '<', '[x]', '##s', 'Ġ<']) expect(looksSpecial(t)).toBe(false);
  });
  it('hides special tokens (rows not renormalised)', () => {
    const n = BERT.length;
    const m = stochastic(n, n, 7);
    const sp = specialIndices(null, 'input', BERT, true);
    const ax = buildAxis(BERT, {hide: sp});
    expect(ax.labels).toEqual(['the', 'cat', 'play', '##ed', 'in', 'the', 'gar', '##den']);
    const p = project(m, n, n, ax, ax);
    expect(p[0]).toBe(m[1 * n + 1]);
    expect(ax.groupOf[0]).toBe(-1);
    expect(ax.groupOf[4]).toBe(2);
  });
});

describe('word merging', () => {
  it('detects the tokenizer family', () => {
    expect(detectScheme(BERT)).toBe('wordpiece');
    expect(detectScheme(['The', 'Ġquick', 'Ġfox', '.'])).toBe('bpe');
    expect(detectScheme(['▁The', '▁house', 'ful'])).toBe('sentencepiece');
    expect(detectScheme(['a', 'b'])).toBe('none');
  });
  it('merges WordPiece ## continuations; special tokens stand alone', () => {
    const sp = specialIndices(null, 'input', BERT, true);
    const ax = buildAxis(BERT, {merge: true, special: sp});
    expect(ax.labels).toEqual(['[CLS]', 'the', 'cat', '[SEP]', 'played', 'in', 'the', 'garden', '[SEP]']);
  });
  it('merges GPT-2 / RoBERTa pieces at Ġ word starts', () => {
    const t = ['<s>', 'The', 'Ġquick', 'Ġjump', 'ed', 'Ġover', '.', '</s>'];
    const ax = buildAxis(t, {merge: true, special: new Set([0, 7])});
    expect(ax.labels).toEqual(['<s>', 'The', 'quick', 'jumped', 'over.', '</s>']);
  });
  it('merges SentencePiece pieces at ▁ word starts', () => {
    const t = ['▁The', '▁house', '▁is', '▁wonder', 'ful', '.', '</s>'];
    const ax = buildAxis(t, {merge: true, special: new Set([6])});
    expect(ax.labels).toEqual(['The', 'house', 'is', 'wonderful.', '</s>']);
  });
  it('sums over the keys of a word and averages over its queries: rows still sum to 1', () => {
    const n = BERT.length;
    const m = stochastic(n, n, 3);
    const sp = specialIndices(null, 'input', BERT, true);
    const ax = buildAxis(BERT, {merge: true, special: sp});
    const p = project(m, n, n, ax, ax);
    const N = ax.labels.length;
    for (const s of rowSums(p, N, N)) expect(s).toBeCloseTo(1, 5);
    // "played" (4,5) → "garden" (8,9): mean over queries 4,5 of (sum over keys 8,9)
    const gi = ax.labels.indexOf('played');
    const gj = ax.labels.indexOf('garden');
    const want = ((m[4 * n + 8] + m[4 * n + 9]) + (m[5 * n + 8] + m[5 * n + 9])) / 2;
    expect(p[gi * N + gj]).toBeCloseTo(want, 6);
    // a single-token row against merged columns: plain sum
    expect(p[1 * N + gj]).toBeCloseTo(m[1 * n + 8] + m[1 * n + 9], 6);
  });
  it('never merges a token that looks special, even when the header does not list it', () => {
    const t = ['▁The', '▁house', '▁is', '▁wonder', 'ful', '.', '</s>'];
    expect(buildAxis(t, {merge: true}).labels).toEqual(['The', 'house', 'is', 'wonderful.', '</s>']);
  });
  it('merges within a sentence filter range, and works with hiding', () => {
    const sp = specialIndices(null, 'input', BERT, true);
    const ax = buildAxis(BERT, {range: [4, 11], merge: true, hide: sp, special: sp});
    expect(ax.labels).toEqual(['played', 'in', 'the', 'garden']);
    expect(Array.from(ax.idx)).toEqual([4, 5, 6, 7, 8, 9]);
  });
  it('shows tokens without byte-level markers', () => {
    expect(displayToken('Ġquick')).toBe('quick');
    expect(displayToken('▁house')).toBe('house');
    expect(displayToken('Ġ')).toBe('␣');
    expect(displayToken('Ċ')).toBe('↵');
    expect(displayToken('<img src=x onerror=alert(1)>')).toBe('<img src=x onerror=alert(1)>');
  });
});
