// The token axes of a record under the selection's filters (sentence pair, special tokens, merging): what
// every view's data builder starts from. No HTTP, no pixels.
import type {Selection} from './state';
import {buildAxis, patchPositions, sentenceRanges, specialIndices, tokenLabels, type Axis} from './tokens';
import type {Header, Kind, KindInfo} from './types';

export interface Axes {
  rows: Axis;
  cols: Axis;
  queryTokens: string[];
  keyTokens: string[];
  /** True when query and key are the same sequence (self-attention). */
  self: boolean;
}

export function kindInfo(header: Header, kind: Kind): KindInfo {
  const k = header.kinds[kind];
  if (!k) throw new Error(`this record has no ${kind} attention`);
  return k;
}

/** Row / column axes of a kind under the selection's filters (sentence pair, special tokens, merging). */
export function buildAxes(header: Header, kind: Kind, sel: Pick<Selection, 'filter' | 'hideSpecial' | 'merge'>, merge = sel.merge): Axes {
  const info = kindInfo(header, kind);
  const queryTokens = header.sequences[info.query];
  const keyTokens = header.sequences[info.key];
  if (!queryTokens || !keyTokens) throw new Error(`record lacks the ${info.query}/${info.key} token sequences`);
  const only = Object.keys(header.sequences).length === 1;
  const qSpecial = specialIndices(header.special_tokens, info.query, queryTokens, only);
  const kSpecial = specialIndices(header.special_tokens, info.key, keyTokens, only);
  const b = header.sentence_b_start;
  const rowsR = info.query === 'input' ? sentenceRanges(sel.filter, queryTokens.length, b).rows : undefined;
  const colsR = info.key === 'input' ? sentenceRanges(sel.filter, keyTokens.length, b).cols : undefined;
  // patch tokens (a record with an image) are labelled by grid position and never merged into words
  const qNoMerge = new Set([...qSpecial, ...patchPositions(header, info.query)]);
  const kNoMerge = new Set([...kSpecial, ...patchPositions(header, info.key)]);
  const rows = buildAxis(tokenLabels(header, info.query), {range: rowsR, hide: sel.hideSpecial ? qSpecial : undefined, special: qNoMerge, merge});
  const cols = buildAxis(tokenLabels(header, info.key), {range: colsR, hide: sel.hideSpecial ? kSpecial : undefined, special: kNoMerge, merge});
  return {rows, cols, queryTokens, keyTokens, self: info.query === info.key};
}

export function sameTokens(a: Header, b: Header): boolean {
  return JSON.stringify(a.sequences) === JSON.stringify(b.sequences);
}


/** f(h) computed once per key. */
export function memo<T>(f: (h: number) => T): (h: number) => T {
  const m = new Map<number, T>();
  return (h) => {
    let v = m.get(h);
    if (v === undefined) {
      v = f(h);
      m.set(h, v);
    }
    return v;
  };
}

