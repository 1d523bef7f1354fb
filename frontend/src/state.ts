// The selection (what is shown) and its round trip through the page URL.
//
// TensorBoard keeps its legacy per-tab state in the URL hash: "#<tab>&key=value&key=value", keys and values
// URI-encoded, the tab (our "attention") being the one part without "=". Plugins loaded in an iframe own the
// keys "p.<plugin>.<key>" (that is what TensorBoard's GetURLPluginData hands back to a plugin). We write our
// keys there, in TensorBoard's own page (the parent window, same origin), keeping the tab and every other
// key as they are, so a shared link or a reload reopens the same view and TensorBoard still routes to
// #attention. Only values that differ from the defaults are written.
import {FUSIONS, KINDS, METRIC_NAMES, type Fusion, type Kind, type MetricName} from './types';
import {SENTENCE_FILTERS, type SentenceFilter} from './tokens';
import {VIEW_SPECS} from './views/registry';

export const PLUGIN_NAME = 'attention';
export const URL_PREFIX = `p.${PLUGIN_NAME}.`;

export type CompareMode = 'side' | 'diff';
export type ThumbStyle = 'auto' | 'lines' | 'heat';
/** A view's name (`VIEW_SPECS` in views/registry.ts lists them; the first is the default). */
export type ViewName = string;

export interface Selection {
  run: string;
  tag: string;
  example: string;
  /** null: the latest step. */
  step: number | null;
  kind: Kind | null;
  layer: number;
  /** Heads shown in the head view; null: all. */
  heads: number[] | null;
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
  /** Layers / heads included in the model view; null: all. */
  modelLayers: number[] | null;
  modelHeads: number[] | null;
  /** Head detail opened from the model view: [layer, head]. */
  detail: [number, number] | null;
  thumbs: ThumbStyle;
  neuronHead: number;
  /** Query token pinned in the neuron view (index into the shown rows). */
  query: number | null;
  collapsed: boolean;
  /** Heads over training: the metric shown, the two checkpoints compared (null: first / selected step). */
  metric: MetricName;
  divA: number | null;
  divB: number | null;
  logX: boolean;
  /** What clicking a head in the training view opens. */
  openIn: 'head' | 'neuron';
  /** Attention rollout: weight of the identity (residual) and how heads are fused. */
  residual: number;
  fusion: Fusion;
  /**
   * Our URL keys this file does not know, as they were: a view's own state (a view added later keeps its
   * keys here, read and written by its spec, without a change to this file).
   */
  extra: Readonly<Record<string, string>>;
}

export const DEFAULT_SELECTION: Readonly<Selection> = Object.freeze({
  run: '',
  tag: '',
  example: '',
  step: null,
  kind: null,
  layer: 0,
  heads: null,
  view: 'head',
  filter: 'all',
  hideSpecial: false,
  merge: false,
  topk: 0,
  compareRun: '',
  compareStep: null,
  compareMode: 'side',
  modelLayers: null,
  modelHeads: null,
  detail: null,
  thumbs: 'auto',
  neuronHead: 0,
  query: null,
  collapsed: false,
  metric: 'entropy',
  divA: null,
  divB: null,
  logX: false,
  openIn: 'head',
  residual: 0.5,
  fusion: 'mean',
  extra: Object.freeze({}),
}) as Selection;

export function defaultSelection(): Selection {
  return {...DEFAULT_SELECTION, extra: {}};
}

/** The keys this file reads and writes (`extra` holds the others). */
export const KNOWN_KEYS: ReadonlySet<string> = new Set(
  'run tag example step kind view layer heads filter hide merge topk crun cstep cmode mlayers mheads detail thumbs nhead q collapsed metric sa sb logx open residual fusion'.split(' '),
);
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

function parseIntStrict(v: string | undefined, min = 0): number | undefined {
  if (v === undefined || !/^-?\d+$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= min ? n : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Selection <-> key/value pairs (without prefix)

export function toParams(sel: Selection): [string, string][] {
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
  if (sel.modelLayers) put('mlayers', encodeIntList(sel.modelLayers));
  if (sel.modelHeads) put('mheads', encodeIntList(sel.modelHeads));
  if (sel.detail) put('detail', `${sel.detail[0]}.${sel.detail[1]}`);
  if (sel.thumbs !== d.thumbs) put('thumbs', sel.thumbs);
  if (sel.neuronHead !== d.neuronHead) put('nhead', String(sel.neuronHead));
  if (sel.query !== null) put('q', String(sel.query));
  if (sel.collapsed) put('collapsed', '1');
  if (sel.metric !== d.metric) put('metric', sel.metric);
  if (sel.divA !== null) put('sa', String(sel.divA));
  if (sel.divB !== null) put('sb', String(sel.divB));
  if (sel.logX) put('logx', '1');
  if (sel.openIn !== d.openIn) put('open', sel.openIn);
  if (sel.residual !== d.residual) put('residual', String(sel.residual));
  if (sel.fusion !== d.fusion) put('fusion', sel.fusion);
  for (const [k, v] of Object.entries(sel.extra ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) if (!KNOWN_KEYS.has(k) && EXTRA_KEY.test(k)) put(k, v);
  return out;
}

/** Reads a selection from key/value pairs; missing or malformed values fall back to the defaults. */
export function fromParams(params: ReadonlyMap<string, string>): Selection {
  const s = defaultSelection();
  const g = (k: string) => params.get(k);
  s.run = g('run') ?? '';
  s.tag = g('tag') ?? '';
  s.example = g('example') ?? '';
  s.step = parseIntStrict(g('step'), -(2 ** 53)) ?? null;
  const kind = g('kind');
  s.kind = kind && (KINDS as readonly string[]).includes(kind) ? (kind as Kind) : null;
  const view = g('view');
  if (view && VIEW_SPECS.some((v) => v.name === view)) s.view = view;
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
  const ml = g('mlayers');
  if (ml !== undefined) s.modelLayers = decodeIntList(ml);
  const mh = g('mheads');
  if (mh !== undefined) s.modelHeads = decodeIntList(mh);
  const det = /^(\d+)\.(\d+)$/.exec(g('detail') ?? '');
  if (det) s.detail = [Number(det[1]), Number(det[2])];
  const th = g('thumbs');
  if (th === 'lines' || th === 'heat' || th === 'auto') s.thumbs = th;
  s.neuronHead = parseIntStrict(g('nhead')) ?? 0;
  s.query = parseIntStrict(g('q')) ?? null;
  s.collapsed = g('collapsed') === '1';
  const metric = g('metric');
  if (metric && (METRIC_NAMES as readonly string[]).includes(metric)) s.metric = metric as MetricName;
  s.divA = parseIntStrict(g('sa'), -(2 ** 53)) ?? null;
  s.divB = parseIntStrict(g('sb'), -(2 ** 53)) ?? null;
  s.logX = g('logx') === '1';
  if (g('open') === 'neuron') s.openIn = 'neuron';
  const res = g('residual');
  if (res !== undefined && /^(?:0(?:\.\d{1,3})?|1(?:\.0{1,3})?|\.\d{1,3})$/.test(res)) s.residual = Number(res);
  const fusion = g('fusion');
  if (fusion && (FUSIONS as readonly string[]).includes(fusion)) s.fusion = fusion as Fusion;
  const extra: Record<string, string> = {};
  for (const [k, v] of params) {
    if (KNOWN_KEYS.has(k) || !EXTRA_KEY.test(k) || v.length > 1000 || Object.keys(extra).length >= MAX_EXTRA) continue;
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
export function readSelectionFromHash(hash: string, prefix = URL_PREFIX): Selection {
  const m = new Map<string, string>();
  for (const [k, v] of parseHash(hash).pairs) if (k.startsWith(prefix)) m.set(k.slice(prefix.length), v);
  return fromParams(m);
}

/** A new hash with our keys replaced by `sel`'s; the tab and all other keys are kept in order. */
export function writeSelectionToHash(hash: string, sel: Selection, prefix = URL_PREFIX): string {
  const parsed = parseHash(hash);
  const others = parsed.pairs.filter(([k]) => !k.startsWith(prefix));
  const ours = toParams(sel).map(([k, v]) => [prefix + k, v] as [string, string]);
  return buildHash({tab: parsed.tab, pairs: [...others, ...ours]});
}

export function sameSelection(a: Selection, b: Selection): boolean {
  return JSON.stringify(toParams(a)) === JSON.stringify(toParams(b));
}
