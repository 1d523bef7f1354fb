// What a view tells the shell about itself (ViewSpec), and what the shell lends a view while it shows
// (ViewHost). The shell knows views only through these and the registry (registry.ts).
import type {Theme} from '../draw/colors';
import type {CompareMode, Selection} from '../state';
import type {DataSource, Header, IndexExample, Kind, RecordRef} from '../types';
import type {ViewBase} from './common';

/** One record the shell loaded for the selection: where it is, its header, its example (steps) and kind. */
export interface Loaded {
  ref: RecordRef;
  header: Header;
  example: IndexExample;
  kind: Kind;
}

/** Shell controls a view may use (run, tag, example, kind, step and compare are always there). */
export type Control = 'layer' | 'neuronHead' | 'topk' | 'filter' | 'tokens';

export interface ViewHost {
  readonly source: DataSource;
  /** The live selection (read it; change it through update / remember). */
  readonly sel: Selection;
  readonly theme: Theme;
  /** False once a newer render has started: draw nothing then. */
  current(): boolean;
  /** The record shown now (callbacks read it: a pane outlives the render that made it). */
  record(): Loaded | null;
  /** The panes of a layout `key`: made with `make` when the key changes, else the ones shown. */
  panes<V extends ViewBase>(key: string, make: () => V[], titles?: string[]): V[];
  /** The panes shown now (e.g. to pass a hover to the other side). */
  shown(): readonly ViewBase[];
  /** Changes the selection, writes the URL and redraws. */
  update(patch: Partial<Selection>): void;
  /** Changes the selection and the URL only (the view already shows the change). */
  remember(patch: Partial<Selection>): void;
  /** Redraws the current selection. */
  redraw(): void;
  /** What the view shows now (e.g. "exact from q/k"), appended to the tab's status line. */
  status?(text: string): void;
}

export interface ViewSpec {
  /** The URL's `view` value and the button's testid suffix (`view-<name>`). */
  readonly name: string;
  readonly label: string;
  readonly controls: readonly Control[];
  /**
   * Comparison modes it offers, first is the default. Empty: no comparison (the selector is disabled and
   * says so; the `crun` key is kept for the other views).
   */
  readonly compare: readonly CompareMode[];
  /** Loads what it needs of record `a` (and `b`, compared in `mode`) and draws it through `host.panes`. */
  show(host: ViewHost, a: Loaded, b: Loaded | null, mode: CompareMode): Promise<void>;
  /** The export file name's part after the step (default: `_L<layer>`). */
  exportName?(sel: Selection): string;
}

/** "A: run @ step", "B: run @ step" over side-by-side panes. */
export function paneTitles(a: Loaded, b: Loaded): string[] {
  return [`A: ${a.ref.run} @ ${a.ref.step}`, `B: ${b.ref.run} @ ${b.ref.step}`];
}
