// What a view tells the shell about itself (ViewSpec: label, controls, comparison modes, its URL state,
// whether it applies to a record, how it loads and draws), and what the shell lends a view while it shows
// (ViewHost). The shell knows views only through these and the registry (registry.ts).
import type {Theme} from '../draw/colors';
import type {CompareMode, Selection, UrlState} from '../state';
import type {DataSource, Header, IndexExample, Kind, KindInfo, RecordRef, Weighting} from '../types';
import type {ViewBase} from './common';

/** One record the shell loaded for the selection: where it is, its header, its example (steps) and kind. */
export interface Loaded {
  ref: RecordRef;
  header: Header;
  example: IndexExample;
  kind: Kind;
}

/**
 * Shell controls a view may use (run, tag, example, kind, step and compare are always there). `weighting`:
 * the view fetches with `host.weighting` (raw or value-weighted attention) and says what it shows
 * (`weightingLabel`).
 */
export type Control = 'layer' | 'neuronHead' | 'topk' | 'filter' | 'tokens' | 'weighting';

/** What the shell lends a view while it shows; `S`: the view's own state (its spec's `url`). */
export interface ViewHost<S extends object = object> {
  readonly source: DataSource;
  /** The live selection (read it; change it through update / remember). */
  readonly sel: Selection;
  /** The view's own live state (its spec's `url`; change it through update / remember). */
  readonly state: S;
  readonly theme: Theme;
  /**
   * The weighting to fetch with (`attention`, `overview`, `window`): 'value' only for a view that uses the
   * toggle, when it says value-weighted and record A's kind has value norms (then a compared B has them too:
   * the shell shows a B without them as a message instead). A long layer's pooled data stay raw
   * (weighting.ts `pooledWeighting`).
   */
  readonly weighting: Weighting;
  /** False once a newer render has started: draw nothing then. */
  current(): boolean;
  /** The record shown now (callbacks read it: a pane outlives the render that made it). */
  record(): Loaded | null;
  /** The panes of a layout `key`: made with `make` when the key changes, else the ones shown. */
  panes<V extends ViewBase>(key: string, make: () => V[], titles?: string[]): V[];
  /** The panes shown now (e.g. to pass a hover to the other side). */
  shown(): readonly ViewBase[];
  /** Changes the selection (and the view's own state), writes the URL and redraws. */
  update(patch: Partial<Selection>, state?: Partial<S>): void;
  /** Changes the selection (and the view's own state) and the URL only (the view already shows it). */
  remember(patch: Partial<Selection>, state?: Partial<S>): void;
  /**
   * Shows view `view` with `patch` and some of that view's URL keys set (a string) or cleared (null): views
   * know each other only by their URL keys (README, URL).
   */
  open(view: string, patch: Partial<Selection>, keys: Readonly<Record<string, string | null>>): void;
  /** Redraws the current selection. */
  redraw(): void;
  /** What the view shows now (e.g. "exact from q/k"), appended to the tab's status line. */
  status?(text: string): void;
}

export interface ViewSpec<S extends object = object> {
  /** The URL's `view` value and the button's testid suffix (`view-<name>`). */
  readonly name: string;
  readonly label: string;
  readonly controls: readonly Control[];
  /**
   * Comparison modes it offers, first is the default. Empty: no comparison (the selector is disabled and
   * says so; the `crun` key is kept for the other views).
   */
  readonly compare: readonly CompareMode[];
  /** Its own state in the URL: keys, parse, write, reconcile, reset (none: it keeps nothing there). */
  readonly url?: UrlState<S>;
  /**
   * Why it cannot show `kind` of a record with this header, or null (absent: it shows every record). The
   * toolbar disables its button with the reason; selected anyway (a URL, a kind change), the shell shows
   * the reason as the error instead of calling `show`.
   */
  unavailable?(header: Header, kind: Kind): string | null;
  /** Loads what it needs of record `a` (and `b`, compared in `mode`) and draws it through `host.panes`. */
  show(host: ViewHost<S>, a: Loaded, b: Loaded | null, mode: CompareMode): Promise<void>;
  /**
   * What its weighting toggle gives for a kind like `info` (`w`: `host.weighting`), e.g. what a long layer
   * keeps raw: shown next to the status line while it lists the `weighting` control.
   */
  weightingLabel?(info: KindInfo, w: Weighting, state: S): string;
  /** The export file name's part after the step (default: `_L<layer>`). */
  exportName?(sel: Selection, state: S): string;
}

/** A spec with its state type checked against its `url` and `show` (the registry holds them untyped). */
export function defineView<S extends object>(spec: ViewSpec<S>): ViewSpec<S> {
  return spec;
}

/** Why view `spec` cannot show `kind` of a record with `header` (null: it can, or nothing is selected). */
export function whyUnavailable(spec: Pick<ViewSpec, 'unavailable'>, header: Header | undefined, kind: Kind | null): string | null {
  return header && kind && header.kinds[kind] ? (spec.unavailable?.(header, kind) ?? null) : null;
}

/** "A: run @ step", "B: run @ step" over side-by-side panes. */
export function paneTitles(a: Loaded, b: Loaded): string[] {
  return [`A: ${a.ref.run} @ ${a.ref.step}`, `B: ${b.ref.run} @ ${b.ref.step}`];
}
