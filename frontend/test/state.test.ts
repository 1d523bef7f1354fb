import {describe, expect, it} from 'vitest';
import {
  URL_PREFIX,
  decodeIntList,
  defaultSelection,
  encodeIntList,
  fromParams,
  parseHash,
  readSelectionFromHash,
  toParams,
  writeSelectionToHash,
  type Selection,
} from '../src/state';
import {VIEW_SPECS} from '../src/views/registry';

// the shell's keys and every view's (each view's spec declares and parses its own)
const V = VIEW_SPECS;

function full(): Selection {
  return {
    ...defaultSelection(V),
    run: 'runs/minilm & co=1',
    tag: 'probes',
    example: 'ex #3',
    step: 120,
    kind: 'cross',
    layer: 5,
    heads: [0, 1, 2, 7],
    view: 'model',
    filter: 'ab',
    hideSpecial: true,
    merge: true,
    topk: 8,
    compareRun: 'other',
    compareStep: 40,
    compareMode: 'diff',
    neuronHead: 6,
    views: {
      head: {opacity: {mode: 'row', gain: 4}},
      model: {modelLayers: [0, 2, 3], modelHeads: [11], detail: [3, 4], thumbs: 'heat'},
      neuron: {query: 9, collapsed: true},
      matrix: {viewport: {y0: 3, y1: 9, x0: 10, x1: 21}, multi: 'all', agg: 'max'},
      training: {metric: 'induction', divA: 0, divB: 140, logX: true, openIn: 'neuron'},
      rollout: {residual: 0.35, fusion: 'max'},
      image: {query: 7, agg: 'rollout', opacity: 0.45},
      heads: {metric: 'sink', sort: 'std', asc: true, filter: 'L1 >0.5', chosen: [2, 3]},
    },
  };
}

/** View `name`'s state in `s` (fields as the view's spec parses them). */
const st = (s: Selection, name: string) => s.views[name] as Record<string, unknown>;

describe('selection ↔ URL', () => {
  it('round-trips every field through the params', () => {
    const s = full();
    expect(fromParams(new Map(toParams(s, V)), V)).toEqual(s);
    expect(fromParams(new Map(toParams(defaultSelection(V), V)), V)).toEqual(defaultSelection(V));
  });
  it('writes only what differs from the defaults', () => {
    expect(toParams({...defaultSelection(V), run: 'a'}, V)).toEqual([['run', 'a']]);
  });
  it('round-trips through a TensorBoard hash, keeping the tab and other keys', () => {
    const hash = '#attention&tagFilter=loss&' + encodeURIComponent(URL_PREFIX + 'run') + '=old';
    const next = writeSelectionToHash(hash, full(), V);
    expect(next.startsWith('attention&tagFilter=loss&p.attention.run=')).toBe(true);
    expect(next).not.toContain('=old');
    const parsed = parseHash('#' + next);
    expect(parsed.tab).toBe('attention');
    // every part has exactly one "=", as TensorBoard's parser needs
    for (const part of next.split('&').slice(1)) expect(part.split('=').length).toBe(2);
    expect(readSelectionFromHash('#' + next, V)).toEqual(full());
  });
  it('leaves a hash without our keys alone apart from adding them', () => {
    expect(writeSelectionToHash('#scalars&_smoothingWeight=0.6', defaultSelection())).toBe('scalars&_smoothingWeight=0.6');
    expect(writeSelectionToHash('', {...defaultSelection(), run: 'x'})).toBe('p.attention.run=x');
  });
  it('falls back to defaults on malformed values', () => {
    const s = readSelectionFromHash('#attention&p.attention.layer=-3&p.attention.view=evil&p.attention.kind=foo&p.attention.heads=1,x&p.attention.step=1.5&p.attention.topk=abc&p.attention.detail=1&p.attention.cmode=zzz&p.attention.filter=<b>&p.attention.q=%ZZ', V);
    expect(s).toEqual(defaultSelection(V));
  });
  it('reads the training and rollout keys, rejecting malformed ones', () => {
    const s = readSelectionFromHash('#attention&p.attention.view=rollout&p.attention.residual=0.25&p.attention.fusion=min&p.attention.metric=prev_token&p.attention.sa=-5', V);
    expect([s.view, st(s, 'rollout').residual, st(s, 'rollout').fusion, st(s, 'training').metric, st(s, 'training').divA]).toEqual(['rollout', 0.25, 'min', 'prev_token', -5]);
    for (const bad of ['1.5', '-0.1', '0.1234', 'NaN', '1e-3', '']) {
      expect(st(readSelectionFromHash(`#p.attention.residual=${encodeURIComponent(bad)}`, V), 'rollout').residual).toBe(0.5);
    }
    const t = readSelectionFromHash('#p.attention.view=training&p.attention.metric=evil&p.attention.fusion=sum&p.attention.open=x&p.attention.sb=1.5', V);
    expect([t.view, st(t, 'training').metric, st(t, 'rollout').fusion, st(t, 'training').openIn, st(t, 'training').divB]).toEqual(['training', 'entropy', 'mean', 'head', null]);
  });
  it('keeps our keys it does not know (a view’s own) as they were, and writes them back', () => {
    const s = readSelectionFromHash('#attention&p.attention.view=head&p.attention.zoom=2.5&p.attention.Bad-Key=1&p.attention.layer=1&other.key=3', V);
    expect(s.extra).toEqual({zoom: '2.5'});
    expect(s.layer).toBe(1);
    const out = writeSelectionToHash('#attention&other.key=3', {...s, extra: {...s.extra, band: '0-9'}}, V);
    expect(out).toBe('attention&other.key=3&p.attention.layer=1&p.attention.band=0-9&p.attention.zoom=2.5');
    expect(defaultSelection().extra).toEqual({});
    expect(defaultSelection().extra).not.toBe(defaultSelection().extra);
  });
  it('reads a URL written before views owned their keys, and writes back the same keys and values', () => {
    const old =
      'attention&p.attention.run=a&p.attention.tag=t&p.attention.example=0&p.attention.step=5&p.attention.kind=encoder&p.attention.view=neuron&p.attention.layer=2&p.attention.heads=0-3,7&p.attention.filter=ab&p.attention.hide=1&p.attention.merge=1&p.attention.topk=4&p.attention.crun=b&p.attention.cstep=3&p.attention.cmode=diff' +
      '&p.attention.mlayers=0-1&p.attention.mheads=2&p.attention.detail=1.2&p.attention.thumbs=lines&p.attention.nhead=3&p.attention.q=7&p.attention.collapsed=1&p.attention.metric=sink&p.attention.sa=0&p.attention.sb=9&p.attention.logx=1&p.attention.open=neuron&p.attention.residual=0.25&p.attention.fusion=min' +
      '&p.attention.gain=2&p.attention.mh=sel&p.attention.mz=0:16,8:24&p.attention.op=row&p.attention.zoom=2';
    const s = readSelectionFromHash('#' + old, V);
    expect([s.view, s.neuronHead, st(s, 'neuron').query, st(s, 'model').detail, st(s, 'matrix').viewport, st(s, 'head').opacity]).toEqual(['neuron', 3, 7, [1, 2], {y0: 0, y1: 16, x0: 8, x1: 24}, {mode: 'row', gain: 2}]);
    const pairs = (h: string) => parseHash('#' + h).pairs.map(([k, v]) => `${k}=${v}`).sort();
    expect(pairs(writeSelectionToHash('#attention', s, V))).toEqual(pairs(old));
  });
  it('encodes integer lists as ranges', () => {
    expect(encodeIntList([7, 0, 1, 2, 3, 3, 9, 10])).toBe('0-3,7,9-10');
    expect(decodeIntList('0-3,7,9-10')).toEqual([0, 1, 2, 3, 7, 9, 10]);
    expect(decodeIntList('')).toEqual([]);
    expect(decodeIntList('3-1')).toBeNull();
    expect(decodeIntList('0-99999999')).toBeNull();
  });
});
