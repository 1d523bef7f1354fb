// Every view drawn without a browser: its story's fixture data through its data builder, painted by its
// drawing code into the SVG recording context. What is counted is what was drawn.
import {describe, expect, it} from 'vitest';
import {findStory, loadStory} from '../dev/stories';
import {FixtureSource} from '../dev/fixtures';
import {headColor, hexToRgb, LIGHT, layerColor} from '../src/draw/colors';
import {SvgContext} from '../src/draw/ctx';
import {KNOWN_KEYS, defaultSelection, readSelectionFromHash, viewState} from '../src/state';
import {diffHeadData, type HeadData} from '../src/views/head/data';
import {HeadPainter, headLayout} from '../src/views/head/draw';
import type {ModelData} from '../src/views/model/data';
import {ModelPainter, modelLayout} from '../src/views/model/draw';
import type {NeuronData} from '../src/views/neuron/data';
import {NeuronPainter, neuronLayout} from '../src/views/neuron/draw';
import {VIEW_SPECS, viewSpec} from '../src/views/registry';
import type {RolloutData} from '../src/views/rollout/data';
import {RolloutPainter, rolloutLayout} from '../src/views/rollout/draw';
import type {ImageData} from '../src/views/image/data';
import {ImagePainter, imageLayout} from '../src/views/image/draw';
import type {TrainingData} from '../src/views/training/data';
import {TrainingPainter, trainingLayout} from '../src/views/training/draw';
import type {HeadsData} from '../src/views/heads/data';
import {HeadsPainter, headsLayout} from '../src/views/heads/draw';

const source = new FixtureSource();
const count = (svg: SvgContext, tag: string) => svg.elements.filter((e) => e.startsWith(`<${tag} `)).length;
const texts = (svg: SvgContext) => svg.elements.filter((e) => e.startsWith('<text ')).map((e) => /<text [^>]*>(.*)<\/text>/.exec(e)![1]);

/** Weights a head-view line is drawn for: alpha = w / active heads, visible above half an 8-bit step. */
function visibleLines(d: HeadData, rows: (i: number) => boolean): number {
  let n = 0;
  for (const h of d.heads) {
    const m = d.matrix(h);
    const cols = d.keyLabels.length;
    for (let i = 0; i < d.queryLabels.length; i++) if (rows(i)) for (let j = 0; j < cols; j++) if ((Math.abs(m[i * cols + j]) / d.heads.length) * 255 >= 0.5) n++;
  }
  return n;
}

describe('registry', () => {
  it('lists each view once, with a story, and is what the URL accepts', async () => {
    const names = VIEW_SPECS.map((s) => s.name);
    expect(new Set(names).size).toBe(names.length);
    for (const s of VIEW_SPECS) {
      expect(await findStory(s.name), `story of ${s.name} (dev/stories/${s.name}.story.ts)`).not.toBeNull();
      expect((await loadStory(s.name)).spec, `the story of ${s.name} shows its spec`).toBe(s);
      expect(s.compare.every((m) => m === 'side' || m === 'diff')).toBe(true);
      expect(new Set(s.compare).size).toBe(s.compare.length);
      expect(readSelectionFromHash(`#p.attention.view=${s.name}`, VIEW_SPECS).view).toBe(s.name);
    }
    expect(await findStory('nonsense')).toBeNull();
    await expect(loadStory('nonsense')).rejects.toThrow(/no story/);
    expect(viewSpec('nonsense')).toBe(VIEW_SPECS[0]);
  });
  it('gives each URL key to one owner: the shell or one view', () => {
    const owner = new Map<string, string>([...KNOWN_KEYS].map((k) => [k, 'shell']));
    for (const s of VIEW_SPECS)
      for (const k of s.url?.keys ?? []) {
        expect(owner.get(k), `${s.name}'s key ${k}`).toBeUndefined();
        owner.set(k, s.name);
      }
  });
  it('round-trips each view’s state through its keys, defaults writing nothing', () => {
    for (const s of VIEW_SPECS) {
      if (!s.url) continue;
      const d = s.url.parse(() => undefined);
      expect(s.url.write(d), `${s.name}: defaults`).toEqual([]);
      expect(viewState(defaultSelection(VIEW_SPECS), s)).toEqual(d);
    }
  });
});

describe('head view', () => {
  it('draws every visible line at rest, tokens as text, and one token on hover', async () => {
    const d = (await (await loadStory('head')).data(source)) as HeadData;
    const layout = headLayout(d, LIGHT);
    expect([layout.rows, layout.cols]).toEqual([17, 17]);
    const p = new HeadPainter(d, layout, {theme: LIGHT, colorOf: headColor, active: d.heads, topk: 0});
    const svg = new SvgContext();
    const lines = p.paint(svg);
    expect(lines).toBe(visibleLines(d, () => true));
    expect(texts(svg)).toEqual([...d.queryLabels, ...d.keyLabels]);
    // one stroked path per (head, alpha bucket): 12 colours
    expect(new Set(svg.elements.filter((e) => e.startsWith('<path')).map((e) => /stroke="([^"]+)"/.exec(e)![1])).size).toBe(12);
    const hover = new SvgContext();
    const n = p.paintHover(hover, {side: 'left', index: 3});
    expect(n).toBe(visibleLines(d, (i) => i === 3));
    expect(count(hover, 'rect')).toBeGreaterThan(0); // the row highlight and per-head bars
  });
  it('draws fewer lines with fewer heads or top-k, and B − A by sign', async () => {
    const d = (await (await loadStory('head')).data(source)) as HeadData;
    const layout = headLayout(d, LIGHT);
    const p = new HeadPainter(d, layout, {theme: LIGHT, colorOf: headColor, active: d.heads, topk: 0});
    const all = p.paint(new SvgContext());
    p.set({active: [0, 1]});
    const two = p.paint(new SvgContext());
    expect(two).toBeLessThan(all);
    p.set({topk: 1});
    expect(p.paint(new SvgContext())).toBe(2 * 17);
    const diff = diffHeadData(d, {...d, matrix: (h) => d.matrix((h + 1) % 12)});
    const svg = new SvgContext();
    new HeadPainter(diff, layout, {theme: LIGHT, colorOf: headColor, active: diff.heads, topk: 0}).paint(svg);
    const strokes = new Set(svg.elements.filter((e) => e.startsWith('<path')).map((e) => /stroke="([^"]+)"/.exec(e)![1]));
    expect([...strokes].sort()).toEqual(['#2166ac', '#d6604d']);
  });
});

describe('model view', () => {
  it('draws every thumbnail, as lines in distinct layer colours or as heatmap images', async () => {
    const d = (await (await loadStory('model')).data(source)) as ModelData;
    const layout = modelLayout(d, 1200);
    const p = new ModelPainter(d, layout, {theme: LIGHT, style: 'lines', detail: [1, 2]});
    const svg = new SvgContext();
    const r = p.paint(svg);
    expect([r.cells, r.style]).toEqual([4 * 16, 'lines']);
    expect(r.lines).toBeGreaterThan(0);
    const colours = new Set(svg.elements.filter((e) => e.startsWith('<path') && e.includes('stroke-width="1"')).map((e) => /stroke="([^"]+)"/.exec(e)![1]));
    expect(colours.size).toBe(4);
    expect(p.hit(...p.thumbXY(1, 2).map((v) => v + 5) as [number, number])).toEqual([1, 2]);
    p.set({style: 'heat'});
    const heat = new SvgContext();
    expect(p.paint(heat).style).toBe('heat');
    expect(count(heat, 'image')).toBe(64);
  });
  it('keeps layer colours apart up to 80 layers', () => {
    for (const n of [12, 24, 48, 80]) {
      const cs = Array.from({length: n}, (_, l) => hexToRgb(layerColor(l, n)));
      expect(new Set(cs.map(String)).size).toBe(n);
      let min = Infinity;
      for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) min = Math.min(min, Math.hypot(cs[i][0] - cs[j][0], cs[i][1] - cs[j][1], cs[i][2] - cs[j][2]));
      expect(min, `${n} layers`).toBeGreaterThan(20);
    }
    expect(layerColor(3, 12)).not.toBe(layerColor(3 + 10, 24));
  });
});

describe('neuron view', () => {
  it('draws q, k and the selected query: products, scores and the recomputed softmax', async () => {
    const d = (await (await loadStory('neuron')).data(source)) as NeuronData;
    expect(d.qk).not.toBeNull();
    const layout = neuronLayout(d, LIGHT, false);
    expect(layout.expanded).toBe(true);
    const p = new NeuronPainter(d, layout, LIGHT);
    const stat = new SvgContext();
    p.paintStatic(stat);
    expect(count(stat, 'image')).toBe(2); // q and k
    expect(texts(stat)).toContain('Layer 3, Head 5');
    const dyn = new SvgContext();
    const r = p.paintDynamic(dyn, 4);
    expect(r.lines).toBeGreaterThan(0);
    expect(r.maxDiff).not.toBeNull();
    expect(count(dyn, 'image')).toBe(1); // q ⊙ k
    // causal: the query at position 4 sees keys 0..4; later keys are masked (struck-through boxes)
    expect(dyn.elements.filter((e) => e.startsWith('<path') && e.includes(LIGHT.muted)).length).toBe(d.k - 5);
    const collapsed = new NeuronPainter(d, neuronLayout(d, LIGHT, true), LIGHT);
    expect(collapsed.paintDynamic(new SvgContext(), null).lines).toBeGreaterThan(r.lines);
  });
});

describe('heads over training', () => {
  it('draws the grid, the focused trajectory over every step and the divergence map', async () => {
    const d = (await (await loadStory('training')).data(source)) as TrainingData;
    const p = new TrainingPainter(d, trainingLayout(d, 1400, false), LIGHT);
    expect(p.paintHeat(new SvgContext(), d.focus)).toBe(d.layers * d.heads);
    expect(p.paintChart(new SvgContext(), d.focus, false)).toBe(d.steps.length);
    expect(p.paintDivMap(new SvgContext())).toBe(d.layers * d.heads);
    expect(d.focus).toEqual([1, 1]); // the induction head
    expect(p.describe([1, 1])).toMatch(/^L1 H1 · induction 0\.\d+ at step 200$/);
    const all = new SvgContext();
    p.paint(all, d.focus, false, true);
    expect(count(all, 'image')).toBe(2 + 2); // two heatmaps and their legends
  });
});

describe('heads view', () => {
  it('draws the layers × heads grid of the mean and the chosen head over steps', async () => {
    const d = (await (await loadStory('heads')).data(source)) as HeadsData;
    const p = new HeadsPainter(d, headsLayout(d), LIGHT);
    expect(p.paintHeat(new SvgContext())).toBe(d.layers * d.heads);
    expect(p.paintTrend(new SvgContext())).toBe(d.steps.length);
    expect(d.chosen).toEqual([1, 1]); // the induction head, top by mean at the last step
    expect(d.top.length).toBe(8);
    expect(p.describe([1, 1])).toMatch(/^L1 H1 · induction 0\.\d+ ± 0\.\d+ \(n = 8\) at step 200$/);
    const all = new SvgContext();
    p.paint(all);
    expect(count(all, 'image')).toBe(2); // the heatmap and its legend
  });
});

describe('rollout view', () => {
  it('draws every cell, the last query’s bars at rest and a hovered row', async () => {
    const d = (await (await loadStory('rollout')).data(source)) as RolloutData;
    const p = new RolloutPainter(d, rolloutLayout(d, 1000), LIGHT);
    const svg = new SvgContext();
    expect(p.paintBase(svg, null)).toBe(17 * 17);
    expect(texts(svg)).toEqual(expect.arrayContaining(d.rowLabels));
    const bars = new SvgContext();
    expect(p.paintBars(bars, 16, '#000')).toBe(17);
    const over = new SvgContext();
    p.paintOverlay(over, 3, 5);
    expect(count(over, 'rect')).toBeGreaterThan(1);
    expect(p.describe(3, 5)).toMatch(/^R\[3, 5\]/);
    expect(p.describe(null, -1)).toContain(d.rowLabels[16]);
  });
});

describe('image view', () => {
  it('draws the image, every patch with weight over its own pixels, the legend, and the query’s strongest patch', async () => {
    const d = (await (await loadStory('image')).data(source)) as ImageData;
    expect(d.image.grid).toEqual([4, 4]);
    expect([d.query, d.queryLabel, d.queryPatch]).toEqual([0, '[CLS]', null]);
    expect(d.queries.map((q) => q.label)).toEqual(['[CLS]', '[REG]']);
    const L = imageLayout(d, 600);
    const p = new ImagePainter(d, L, LIGHT, 0.7);
    const svg = new SvgContext();
    const n = p.paintAll(svg, null, [1, 2]);
    expect(n).toBe(16); // the fixture's rows give every patch some weight
    expect(p.describe(null)).toMatch(/strongest patch ▦ 1,2/);
    expect(p.describe([1, 2])).toMatch(/^▦ 1,2 \(token 7\): attention 0\.\d+ from query 0 “\[CLS\]”/);
    expect(p.hit(L.x + 2.5 * (L.width / 4), L.y + 1.5 * (L.height / 4))).toEqual([1, 2]);
    expect(count(svg, 'image')).toBeGreaterThan(0); // the legend bar
  });
});
