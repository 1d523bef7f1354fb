// What a story is (one view, alone, on one fixture record), and the little it needs to run outside the
// app: the fixture record as the shell would load it, and a ViewHost that lays the view's panes into a
// plain element. No server, no toolbar.
import {LIGHT, type Theme} from '../../src/draw/colors';
import {resolveStep} from '../../src/math';
import {defaultSelection, viewState, withKeys, type Selection} from '../../src/state';
import type {DataSource, Kind} from '../../src/types';
import {clear, el, type ViewBase} from '../../src/views/common';
import type {Loaded, ViewHost, ViewSpec} from '../../src/views/spec';

export interface Story<D> {
  spec: ViewSpec;
  /** The fixture record (dev/fixtures.ts) and the selection the story shows. */
  run: string;
  example: string;
  kind: Kind;
  step?: number;
  sel?: Partial<Selection>;
  /** The view's own state (its spec's `url`), over the defaults. */
  state?: Record<string, unknown>;
  /** The view's data built from the fixture, without a DOM (what the view tests draw). */
  data(source: DataSource): Promise<D>;
}

/** A fixture record as the shell loads it (the latest step unless `step`). */
export async function fixtureRecord(source: DataSource, run: string, example: string, kind: Kind, step?: number): Promise<Loaded> {
  const idx = await source.index();
  const ex = idx.runs.find((r) => r.run === run)?.tags[0]?.examples.find((e) => e.example === example);
  if (!ex) throw new Error(`no fixture ${run}/${example}`);
  const st = resolveStep(ex.steps, step ?? null)!;
  const ref = {run, tag: idx.runs.find((r) => r.run === run)!.tags[0].tag, example, step: st};
  const header = ex.header.step === st ? ex.header : await source.header(ref);
  return {ref, header, example: ex, kind};
}

export function storySelection<D>(s: Story<D>): Selection {
  const sel: Selection = {...defaultSelection(), run: s.run, example: s.example, kind: s.kind, ...s.sel};
  return {...sel, views: {[s.spec.name]: {...viewState(sel, s.spec), ...s.state}}};
}

/** Renders a story's view into `root` through its spec, as the app would, with nothing else around it. */
export async function mountStory<D>(s: Story<D>, source: DataSource, root: HTMLElement, theme: Theme = LIGHT): Promise<ViewBase[]> {
  const sel = storySelection(s);
  let views: ViewBase[] = [];
  let key = '';
  let rec: Loaded | null = null;
  const remember = (patch: Partial<Selection>, state?: object) => {
    Object.assign(sel, patch);
    if (state) sel.views = {...sel.views, [s.spec.name]: {...viewState(sel, s.spec), ...state}};
  };
  const draw = async () => {
    rec = await fixtureRecord(source, s.run, s.example, s.kind, sel.step ?? s.step);
    await s.spec.show(host, rec, null, s.spec.compare[0] ?? 'side');
  };
  const host: ViewHost = {
    source,
    sel,
    get state() {
      return viewState(sel, s.spec);
    },
    theme,
    // the fixtures serve raw weights only (FixtureSource lists no `weightings`)
    weighting: 'weights',
    current: () => true,
    record: () => rec,
    panes<V extends ViewBase>(k: string, make: () => V[]): V[] {
      if (k !== key) {
        views.forEach((v) => v.dispose());
        clear(root);
        views = make();
        key = k;
        for (const v of views) root.appendChild(el('div', {class: 'panes'}, el('div', {class: 'pane'}, v.el)));
      }
      return views as V[];
    },
    shown: () => views,
    update(patch, state) {
      remember(patch, state);
      void draw();
    },
    remember: (patch, state) => remember(patch, state),
    // another view: the story shows one; its own keys are applied
    open: (_, patch, keys) => {
      Object.assign(sel, {...patch, view: sel.view});
      sel.views = {...sel.views, [s.spec.name]: withKeys(s.spec, viewState(sel, s.spec), keys)};
      void draw();
    },
    redraw: () => void draw(),
  };
  await draw();
  return views;
}
