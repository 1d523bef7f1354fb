// The selection (what is shown) and its round trip through the page URL.
//
// TensorBoard keeps its legacy per-tab state in the URL hash: "#<tab>&key=value&key=value", keys and values
// URI-encoded, the tab (our "attention") being the one part without "=". Plugins loaded in an iframe own the
// keys "p.<plugin>.<key>" (that is what TensorBoard's GetURLPluginData hands back to a plugin). We write our
// keys there, in TensorBoard's own page (the parent window, same origin), keeping the tab and every other
// key as they are, so a shared link or a reload reopens the same view and TensorBoard still routes to
// #attention. Only values that differ from the defaults are written.
import {KINDS, type Kind, type KindInfo, type Weighting} from './types';
import {SENTENCE_FILTERS, type SentenceFilter} from './tokens';

export const PLUGIN_NAME = 'attention';
export const URL_PREFIX = `p.${PLUGIN_NAME}.`;

export type CompareMode = 'side' | 'diff';
/** A view's name (`VIEW_SPECS` in views/registry.ts lists them). */
export type ViewName = string;

/** What the shell owns: the record, the layer and heads, the token filters, the view and the comparison. */
export interface Selection {
  run: string;
  tag: string;
  example: string;
  /** null: the latest step. */
  step: number | null;
  kind: Kind | null;
  layer: number;
  /** Heads shown in the head view (and the matrix view's selected small multiples); null: all. */
  heads: number[] | null;
  /** The toolbar's Head selector (the neuron and matrix views' one head). */
  neuronHead: number;
  view: ViewName;
  filter: SentenceFilter;
  hideSpecial: boolean;
  merge: boolean;
  /** Lines kept per query token and head at rest in the head view; 0: all. */
  topk: number;
  /** Second (run, step) to compare with; compareRun '' means no comparison. */
  compareRun: string;
  compareStep: number | null;
  compareMode: CompareMode;
  /**
   * Raw weights or value-weighted attention (the head, model, matrix and image views; the others ignore it).
   * Kept while a record cannot be value-weighted (that record is shown raw, the toggle disabled).
   */
  weighting: Weighting;
  /** Each view's own state by view name, as its spec's `url` reads and writes it (`viewState`). */
  views: Readonly<Record<ViewName, object>>;
  /** Our URL keys that neither the shell nor a view declares, as they were (written back unchanged). */
  extra: Readonly<Record<string, string>>;
}

/** The shell's fields a view's state may react to (`UrlState.reset`). */
export type ShellKey = Exclude<keyof Selection, 'views' | 'extra'>;

/**
 * A view's state in the URL: the keys it owns (`p.attention.<key>`), how it reads, writes and repairs them.
 * Its spec declares it (`ViewSpec.url`); this file knows views only through it (it imports no view).
 */
export interface UrlState<S extends object> {
  /** Its keys, without the prefix: no other view's and none of the shell's (KNOWN_KEYS). */
  readonly keys: readonly string[];
  /** Its state from the URL's values; a missing or malformed value gives the default. */
  parse(get: (key: string) => string | undefined): S;
  /** Its keys and values, only those that differ from the defaults (what `parse` reads back). */
  write(state: S): [string, string][];
  /** Made valid for the selected kind of the shown record (e.g. layers past its last dropped). */
  reconcile?(state: S, info: KindInfo): S;
  /** After the shell's fields `changed` (the toolbar, a view's update), e.g. a pinned token reset. */
  reset?(state: S, changed: ReadonlySet<ShellKey>): S;
}

/** A view as this file sees it: its name and, if it keeps state in the URL, its `UrlState`. */
export interface ViewUrl {
  readonly name: string;
  readonly url?: UrlState<object>;
}

export const DEFAULT_SELECTION: Readonly<Selection> = Object.freeze({
  run: '',
  tag: '',
  example: '',
  step: null,
  kind: null,
  layer: 0,
  heads: null,
  neuronHead: 0,
  view: 'head',
  filter: 'all',
  hideSpecial: false,
  merge: false,
  topk: 0,
  compareRun: '',
  compareStep: null,
  compareMode: 'side',
  weighting: 'weights',
  views: Object.freeze({}),
  extra: Object.freeze({}),
}) as Selection;

const NONE = () => undefined;

/** The default selection, with the default state of each of `views`. */
export function defaultSelection(views: readonly ViewUrl[] = []): Selection {
  return {...DEFAULT_SELECTION, views: Object.fromEntries(views.flatMap((v) => (v.url ? [[v.name, v.url.parse(NONE)]] : []))), extra: {}};
}

/** View `v`'s state in `sel` (its default when `sel` holds none). */
export function viewState<S extends object>(sel: Selection, v: {readonly name: string; readonly url?: UrlState<S>}): S {
  return (sel.views[v.name] as S | undefined) ?? ((v.url?.parse(NONE) ?? {}) as S);
}

/** The keys the shell reads and writes (views declare theirs; `extra` holds the others). */
export const KNOWN_KEYS: ReadonlySet<string> = new Set('run tag example step kind view layer heads filter hide merge topk crun cstep cmode nhead weighting'.split(' '));
const EXTRA_KEY = /^[a-z][a-z0-9_]{0,31}$/;
const MAX_EXTRA = 32;

// ---------------------------------------------------------------------------------------------------------
// Integer lists as compact ranges: [0,1,2,3,7] <-> "0-3,7".

export function encodeIntList(xs: readonly number[]): string {
  const s = [...new Set(xs)].filter((x) => Number.isInteger(x) && x >= 0).sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < s.length; ) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j] + 1) j++;
    parts.push(j > i ? `${s[i]}-${s[j]}` : `${s[i]}`);
    i = j + 1;
  }
  return parts.join(',');
}

export function decodeIntList(v: string, max = 1 << 16): number[] | null {
  if (v === '') return [];
  const out: number[] = [];
  for (const part of v.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) return null;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a || b >= max) return null;
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

/** A whole number of at least `min` (no sign, fraction or exponent), else undefined. */
export function parseIntStrict(v: string | undefined, min = 0): number | undefined {
  if (v === undefined || !/^-?\d+$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= min ? n : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Selection <-> key/value pairs (without prefix). `views`: the registered views (their URL state).

/** Our keys and values of `sel`: the shell's, each view's (its spec writes them), then `extra`'s. */
export function toParams(sel: Selection, views: readonly ViewUrl[] = []): [string, string][] {
  const d = DEFAULT_SELECTION;
  const out: [string, string][] = [];
  const put = (k: string, v: string) => out.push([k, v]);
  if (sel.run) put('run', sel.run);
  if (sel.tag) put('tag', sel.tag);
  if (sel.example) put('example', sel.example);
  if (sel.step !== null) put('step', String(sel.step));
  if (sel.kind) put('kind', sel.kind);
  if (sel.view !== d.view) put('view', sel.view);
  if (sel.layer !== d.layer) put('layer', String(sel.layer));
  if (sel.heads) put('heads', encodeIntList(sel.heads));
  if (sel.filter !== d.filter) put('filter', sel.filter);
  if (sel.hideSpecial) put('hide', '1');
  if (sel.merge) put('merge', '1');
  if (sel.topk !== d.topk) put('topk', String(sel.topk));
  if (sel.compareRun) {
    put('crun', sel.compareRun);
    if (sel.compareStep !== null) put('cstep', String(sel.compareStep));
    if (sel.compareMode !== d.compareMode) put('cmode', sel.compareMode);
  }
  if (sel.neuronHead !== d.neuronHead) put('nhead', String(sel.neuronHead));
  if (sel.weighting !== d.weighting) put('weighting', sel.weighting);
  const declared = new Set(KNOWN_KEYS);
  for (const v of views) {
    if (!v.url) continue;
    for (const k of v.url.keys) declared.add(k);
    const st = sel.views[v.name];
    if (st) for (const [k, x] of v.url.write(st)) if (v.url.keys.includes(k)) put(k, x);
  }
  for (const [k, v] of Object.entries(sel.extra ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) if (!declared.has(k) && EXTRA_KEY.test(k)) put(k, v);
  return out;
}

/** Reads a selection from key/value pairs; missing or malformed values fall back to the defaults. */
export function fromParams(params: ReadonlyMap<string, string>, views: readonly ViewUrl[] = []): Selection {
  const s = defaultSelection();
  const g = (k: string) => params.get(k);
  s.run = g('run') ?? '';
  s.tag = g('tag') ?? '';
  s.example = g('example') ?? '';
  s.step = parseIntStrict(g('step'), -(2 ** 53)) ?? null;
  const kind = g('kind');
  s.kind = kind && (KINDS as readonly string[]).includes(kind) ? (kind as Kind) : null;
  const view = g('view');
  if (view && views.some((v) => v.name === view)) s.view = view;
  s.layer = parseIntStrict(g('layer')) ?? 0;
  const heads = g('heads');
  if (heads !== undefined) s.heads = decodeIntList(heads);
  const filter = g('filter');
  if (filter && (SENTENCE_FILTERS as readonly string[]).includes(filter)) s.filter = filter as SentenceFilter;
  s.hideSpecial = g('hide') === '1';
  s.merge = g('merge') === '1';
  s.topk = parseIntStrict(g('topk')) ?? 0;
  s.compareRun = g('crun') ?? '';
  if (s.compareRun) {
    s.compareStep = parseIntStrict(g('cstep'), -(2 ** 53)) ?? null;
    const cm = g('cmode');
    if (cm === 'side' || cm === 'diff') s.compareMode = cm;
  }
  s.neuronHead = parseIntStrict(g('nhead')) ?? 0;
  if (g('weighting') === 'value') s.weighting = 'value';
  const declared = new Set(KNOWN_KEYS);
  const states: Record<string, object> = {};
  for (const v of views) {
    if (!v.url) continue;
    const keys = v.url.keys;
    for (const k of keys) declared.add(k);
    states[v.name] = v.url.parse((k) => (keys.includes(k) ? g(k) : undefined));
  }
  s.views = states;
  const extra: Record<string, string> = {};
  for (const [k, v] of params) {
    if (declared.has(k) || !EXTRA_KEY.test(k) || v.length > 1000 || Object.keys(extra).length >= MAX_EXTRA) continue;
    extra[k] = v;
  }
  s.extra = extra;
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// TensorBoard-compatible hash handling

export interface ParsedHash {
  /** The part without "=" (TensorBoard's active tab), or null. */
  tab: string | null;
  pairs: [string, string][];
}

/** Parses "#tab&k=v&..." the way TensorBoard's tf_storage does (a part with one "=" is a pair). */
export function parseHash(hash: string): ParsedHash {
  const h = hash.startsWith('#') ? hash.slice(1) : hash;
  let tab: string | null = null;
  const pairs: [string, string][] = [];
  if (!h) return {tab, pairs};
  for (const part of h.split('&')) {
    const kv = part.split('=');
    try {
      if (kv.length === 1) {
        if (part) tab = decodeURIComponent(part);
      } else if (kv.length === 2) {
        pairs.push([decodeURIComponent(kv[0]), decodeURIComponent(kv[1])]);
      }
    } catch {
      /* malformed escape: TensorBoard would throw; we skip the part */
    }
  }
  return {tab, pairs};
}

export function buildHash(parsed: ParsedHash): string {
  const body = parsed.pairs.map(([k, v]) => encodeURIComponent(k) + '=' + encodeURIComponent(v)).join('&');
  const tab = parsed.tab ?? '';
  if (!body) return tab;
  return tab ? `${tab}&${body}` : body;
}

/** Our keys out of a hash, prefix removed. */
export function readSelectionFromHash(hash: string, views: readonly ViewUrl[] = [], prefix = URL_PREFIX): Selection {
  const m = new Map<string, string>();
  for (const [k, v] of parseHash(hash).pairs) if (k.startsWith(prefix)) m.set(k.slice(prefix.length), v);
  return fromParams(m, views);
}

/** A new hash with our keys replaced by `sel`'s; the tab and all other keys are kept in order. */
export function writeSelectionToHash(hash: string, sel: Selection, views: readonly ViewUrl[] = [], prefix = URL_PREFIX): string {
  const parsed = parseHash(hash);
  const others = parsed.pairs.filter(([k]) => !k.startsWith(prefix));
  const ours = toParams(sel, views).map(([k, v]) => [prefix + k, v] as [string, string]);
  return buildHash({tab: parsed.tab, pairs: [...others, ...ours]});
}

export function sameSelection(a: Selection, b: Selection, views: readonly ViewUrl[] = []): boolean {
  return JSON.stringify(toParams(a, views)) === JSON.stringify(toParams(b, views));
}

/** Each view's state made valid for the selected kind of the shown record (its spec's `reconcile`). */
export function reconcileViews(sel: Selection, views: readonly ViewUrl[], info: KindInfo): void {
  sel.views = {...sel.views, ...Object.fromEntries(views.flatMap((v) => (v.url?.reconcile ? [[v.name, v.url.reconcile(viewState(sel, v), info)]] : [])))};
}

/** Each view's state after the shell's fields `changed` (its spec's `reset`, e.g. a pinned token dropped). */
export function resetViews(sel: Selection, views: readonly ViewUrl[], changed: ReadonlySet<ShellKey>): void {
  if (!changed.size) return;
  sel.views = {...sel.views, ...Object.fromEntries(views.flatMap((v) => (v.url?.reset ? [[v.name, v.url.reset(viewState(sel, v), changed)]] : [])))};
}

/** Sets (a string) or clears (null) URL keys of whichever views own them: how one view changes another's. */
export function setViewKeys(sel: Selection, views: readonly ViewUrl[], keys: Readonly<Record<string, string | null>>): void {
  for (const v of views) if (v.url?.keys.some((k) => k in keys)) sel.views = {...sel.views, [v.name]: withKeys(v, viewState(sel, v), keys)};
}

/**
 * View `v`'s state with some of its URL keys set (a string) or cleared (null), as `parse` reads them: how
 * one view changes another's state (the URL's keys are the only names views share).
 */
export function withKeys<S extends object>(v: {readonly url?: UrlState<S>}, state: S, keys: Readonly<Record<string, string | null>>): S {
  if (!v.url) return state;
  const m = new Map(v.url.write(state));
  for (const [k, x] of Object.entries(keys)) if (v.url.keys.includes(k)) x === null ? m.delete(k) : m.set(k, x);
  return v.url.parse((k) => m.get(k));
}
