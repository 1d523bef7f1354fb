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

function full(): Selection {
  return {
    ...defaultSelection(),
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
    modelLayers: [0, 2, 3],
    modelHeads: [11],
    detail: [3, 4],
    thumbs: 'heat',
    neuronHead: 6,
    query: 9,
    collapsed: true,
    metric: 'induction',
    divA: 0,
    divB: 140,
    logX: true,
    openIn: 'neuron',
    residual: 0.35,
    fusion: 'max',
  };
}

describe('selection ↔ URL', () => {
  it('round-trips every field through the params', () => {
    const s = full();
    expect(fromParams(new Map(toParams(s)))).toEqual(s);
    expect(fromParams(new Map(toParams(defaultSelection())))).toEqual(defaultSelection());
  });
  it('writes only what differs from the defaults', () => {
    expect(toParams({...defaultSelection(), run: 'a'})).toEqual([['run', 'a']]);
  });
  it('round-trips through a TensorBoard hash, keeping the tab and other keys', () => {
    const hash = '#attention&tagFilter=loss&' + encodeURIComponent(URL_PREFIX + 'run') + '=old';
    const next = writeSelectionToHash(hash, full());
    expect(next.startsWith('attention&tagFilter=loss&p.attention.run=')).toBe(true);
    expect(next).not.toContain('=old');
    const parsed = parseHash('#' + next);
    expect(parsed.tab).toBe('attention');
    // every part has exactly one "=", as TensorBoard's parser needs
    for (const part of next.split('&').slice(1)) expect(part.split('=').length).toBe(2);
    expect(readSelectionFromHash('#' + next)).toEqual(full());
  });
  it('leaves a hash without our keys alone apart from adding them', () => {
    expect(writeSelectionToHash('#scalars&_smoothingWeight=0.6', defaultSelection())).toBe('scalars&_smoothingWeight=0.6');
    expect(writeSelectionToHash('', {...defaultSelection(), run: 'x'})).toBe('p.attention.run=x');
  });
  it('falls back to defaults on malformed values', () => {
    const s = readSelectionFromHash('#attention&p.attention.layer=-3&p.attention.view=evil&p.attention.kind=foo&p.attention.heads=1,x&p.attention.step=1.5&p.attention.topk=abc&p.attention.detail=1&p.attention.cmode=zzz&p.attention.filter=<b>&p.attention.q=%ZZ');
    expect(s).toEqual(defaultSelection());
  });
  it('reads the training and rollout keys, rejecting malformed ones', () => {
    const s = readSelectionFromHash('#attention&p.attention.view=rollout&p.attention.residual=0.25&p.attention.fusion=min&p.attention.metric=prev_token&p.attention.sa=-5');
    expect([s.view, s.residual, s.fusion, s.metric, s.divA]).toEqual(['rollout', 0.25, 'min', 'prev_token', -5]);
    for (const bad of ['1.5', '-0.1', '0.1234', 'NaN', '1e-3', '']) {
      expect(readSelectionFromHash(`#p.attention.residual=${encodeURIComponent(bad)}`).residual).toBe(0.5);
    }
    const t = readSelectionFromHash('#p.attention.view=training&p.attention.metric=evil&p.attention.fusion=sum&p.attention.open=x&p.attention.sb=1.5');
    expect([t.view, t.metric, t.fusion, t.openIn, t.divB]).toEqual(['training', 'entropy', 'mean', 'head', null]);
  });
  it('keeps our keys it does not know (a view’s own) as they were, and writes them back', () => {
    const s = readSelectionFromHash('#attention&p.attention.view=head&p.attention.zoom=2.5&p.attention.Bad-Key=1&p.attention.layer=1&other.key=3');
    expect(s.extra).toEqual({zoom: '2.5'});
    expect(s.layer).toBe(1);
    const out = writeSelectionToHash('#attention&other.key=3', {...s, extra: {...s.extra, band: '0-9'}});
    expect(out).toBe('attention&other.key=3&p.attention.layer=1&p.attention.band=0-9&p.attention.zoom=2.5');
    expect(defaultSelection().extra).toEqual({});
    expect(defaultSelection().extra).not.toBe(defaultSelection().extra);
  });
  it('encodes integer lists as ranges', () => {
    expect(encodeIntList([7, 0, 1, 2, 3, 3, 9, 10])).toBe('0-3,7,9-10');
    expect(decodeIntList('0-3,7,9-10')).toEqual([0, 1, 2, 3, 7, 9, 10]);
    expect(decodeIntList('')).toEqual([]);
    expect(decodeIntList('3-1')).toBeNull();
    expect(decodeIntList('0-99999999')).toBeNull();
  });
});
