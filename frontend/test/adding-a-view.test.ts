// What adding a view takes (frontend/README.md, "Adding a view"), shown with a throwaway view that exists
// only in this test: its spec (what its folder's spec.ts would export), registered by the one line the
// registry would get (`[...VIEW_SPECS, dummySpec]`), with a URL key of its own, a reconcile, a reset and a
// reason it cannot apply. Nothing of the shell (state.ts, app.ts, toolbar.ts) changes for it: the shell's
// functions below are the ones app.ts and toolbar.ts call with VIEW_SPECS.
import {describe, expect, it} from 'vitest';
import {findStory} from '../dev/stories';
import {
  KNOWN_KEYS,
  defaultSelection,
  parseIntStrict,
  readSelectionFromHash,
  reconcileViews,
  resetViews,
  setViewKeys,
  viewState,
  writeSelectionToHash,
  type UrlState,
} from '../src/state';
import type {Header, KindInfo} from '../src/types';
import {VIEW_SPECS} from '../src/views/registry';
import {defineView, whyUnavailable} from '../src/views/spec';

/** The throwaway view's own state: one band of layers (`dz`, default 0). */
interface DummyState {
  band: number;
}

const dummyUrl: UrlState<DummyState> = {
  keys: ['dz'],
  parse: (get) => ({band: parseIntStrict(get('dz')) ?? 0}),
  write: (s) => (s.band ? [['dz', String(s.band)]] : []),
  reconcile: (s, info) => ({band: Math.min(s.band, info.layers - 1)}),
  reset: (s, changed) => (changed.has('example') ? {band: 0} : s),
};

const dummySpec = defineView<DummyState>({
  name: 'dummy',
  label: 'Dummy',
  controls: ['layer'],
  compare: [],
  url: dummyUrl,
  unavailable: (_, kind) => (kind === 'cross' ? 'The dummy view needs self-attention.' : null),
  exportName: (sel, s) => `_L${sel.layer}_b${s.band}`,
  async show() {},
});

/** The registry with the one line added. */
const VIEWS = [...VIEW_SPECS, dummySpec];

const info = {layers: 4, heads: 2} as KindInfo;
const header = {kinds: {encoder: info, cross: info}} as unknown as Header;

describe('adding a view: its folder, one registry line, its story', () => {
  it('owns its URL key: read, written only when not the default, unknown to the shell without the line', () => {
    const s = readSelectionFromHash('#attention&p.attention.view=dummy&p.attention.dz=3&p.attention.layer=2', VIEWS);
    expect([s.view, s.layer, viewState(s, dummySpec)]).toEqual(['dummy', 2, {band: 3}]);
    expect(s.extra).toEqual({});
    expect(writeSelectionToHash('#attention', s, VIEWS)).toBe('attention&p.attention.view=dummy&p.attention.layer=2&p.attention.dz=3');
    expect(writeSelectionToHash('#attention', defaultSelection(VIEWS), VIEWS)).toBe('attention');
    expect(viewState(readSelectionFromHash('#p.attention.dz=x', VIEWS), dummySpec)).toEqual({band: 0});
    // without its registry line the URL does not name it and its key is kept as an unknown one
    const without = readSelectionFromHash('#p.attention.view=dummy&p.attention.dz=3', VIEW_SPECS);
    expect([without.view, without.extra]).toEqual(['head', {dz: '3'}]);
    // its key is its own: neither the shell's nor another view's
    expect(KNOWN_KEYS.has('dz')).toBe(false);
    expect(VIEW_SPECS.some((v) => v.url?.keys.includes('dz'))).toBe(false);
  });
  it('is reconciled with the record, reset by the shell fields it names, and set by other views by key', () => {
    const s = readSelectionFromHash('#p.attention.view=dummy&p.attention.dz=9&p.attention.q=4', VIEWS);
    reconcileViews(s, VIEWS, info);
    expect(viewState(s, dummySpec)).toEqual({band: 3});
    resetViews(s, VIEWS, new Set(['layer']));
    expect(viewState(s, dummySpec)).toEqual({band: 3});
    resetViews(s, VIEWS, new Set(['example']));
    expect(viewState(s, dummySpec)).toEqual({band: 0});
    // the neuron view's own reset still applies alongside (its pinned query goes with the example)
    expect((s.views.neuron as {query: number | null}).query).toBeNull();
    setViewKeys(s, VIEWS, {dz: '2', q: '5'});
    expect(viewState(s, dummySpec)).toEqual({band: 2});
    expect((s.views.neuron as {query: number | null}).query).toBe(5);
    expect(dummySpec.exportName!(s, viewState(s, dummySpec))).toBe('_L0_b2');
  });
  it('says why it cannot show a record (its button is disabled with that reason)', () => {
    expect(whyUnavailable(dummySpec, header, 'cross')).toBe('The dummy view needs self-attention.');
    expect(whyUnavailable(dummySpec, header, 'encoder')).toBeNull();
    expect(whyUnavailable(dummySpec, header, 'decoder')).toBeNull(); // a kind the record lacks: nothing to say
  });
  it('needs its story: test/views.test.ts fails for a registered view without dev/stories/<name>.story.ts', async () => {
    expect(await findStory('dummy')).toBeNull();
    for (const v of VIEW_SPECS) expect(await findStory(v.name)).not.toBeNull();
  });
});
