// The controller: selectors, the selection <-> URL, loading what the current view needs from the data
// source, and handing it to the views. Views know nothing about HTTP; the data source nothing about pixels.
import {renderToCanvas} from './draw/canvas';
import {DARK, LIGHT, headColor, layerColor, type Theme} from './draw/colors';
import {SvgContext, type Ctx} from './draw/ctx';
import type {Host} from './host';
import {nearestStep, resolveLayerInfo} from './math';
import {buildAxes, diffHeadData, diffModelData, headData, kindInfo, modelData, rolloutData, sameTokens} from './prepare';
import {
  readSelectionFromHash,
  writeSelectionToHash,
  type CompareMode,
  type Selection,
  type ViewName,
} from './state';
import {SENTENCE_FILTER_LABELS, SENTENCE_FILTERS, type SentenceFilter} from './tokens';
import {trainingData} from './training';
import {KINDS, type DataSource, type DivergenceResponse, type ExampleRef, type Header, type IndexExample, type IndexResponse, type Kind, type RecordRef} from './types';
import {clear, el, type ViewBase} from './views/common';
import {HeadView, type HeadData} from './views/head';
import {ModelView} from './views/model';
import {NeuronView, type NeuronData} from './views/neuron';
import {RolloutView} from './views/rollout';
import {TrainingView} from './views/training';

export const SUPPORTED_FORMAT_VERSION = 1;

export interface AppOptions {
  source: DataSource;
  host: Host;
  root: HTMLElement;
}

interface Loaded {
  ref: RecordRef;
  header: Header;
  example: IndexExample;
  kind: Kind;
}

type Opt = [value: string, label: string];

function setOptions(sel: HTMLSelectElement, options: Opt[], value: string): void {
  const sig = JSON.stringify(options);
  if (sel.dataset.sig !== sig) {
    clear(sel);
    for (const [v, label] of options) sel.appendChild(el('option', {value: v, text: label}));
    sel.dataset.sig = sig;
  }
  sel.value = value;
  sel.disabled = options.length <= 1 && sel.dataset.keepEnabled !== '1';
}

function labelled(label: string, control: HTMLElement, testid?: string): HTMLElement {
  return el('label', {class: 'ctl', 'data-testid': testid}, el('span', {class: 'ctl-label', text: label}), control);
}

function findExample(index: IndexResponse, run: string, tag: string, example: string): IndexExample | undefined {
  return index.runs.find((r) => r.run === run)?.tags.find((t) => t.tag === tag)?.examples.find((e) => e.example === example);
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 60);
}

export class App {
  private sel: Selection;
  private index: IndexResponse | null = null;
  private theme: Theme;
  private readonly root: HTMLElement;
  private readonly main: HTMLElement;
  private readonly statusEl: HTMLElement;
  private readonly errorEl: HTMLElement;
  private readonly c: Record<string, HTMLSelectElement>;
  private readonly stepSlider: HTMLInputElement;
  private readonly stepLabel: HTMLElement;
  private readonly playBtn: HTMLButtonElement;
  private readonly hideSpecial: HTMLInputElement;
  private readonly merge: HTMLInputElement;
  private readonly topk: HTMLInputElement;
  private readonly viewBtns: Record<ViewName, HTMLButtonElement>;
  private readonly rows: Record<string, HTMLElement>;
  private readonly layerRow: HTMLElement;
  private readonly tokenOpts: HTMLElement[];
  private readonly compareNote: HTMLElement;
  private views: ViewBase[] = [];
  private viewKey = '';
  private gen = 0;
  private busy = false;
  private playTimer: ReturnType<typeof setInterval> | null = null;
  private current: Loaded | null = null;

  constructor(private o: AppOptions) {
    this.root = o.root;
    this.sel = readSelectionFromHash(o.host.readHash());
    this.theme = o.host.isDark() ? DARK : LIGHT;
    const sel = (testid: string, title: string) => el('select', {'data-testid': testid, title});
    this.c = {
      run: sel('run-select', 'Run'),
      tag: sel('tag-select', 'Tag'),
      example: sel('example-select', 'Example'),
      kind: sel('kind-select', 'Attention kind'),
      layer: sel('layer-select', 'Layer'),
      head: sel('neuron-head-select', 'Head (neuron view)'),
      filter: sel('filter-select', 'Sentence-pair filter'),
      crun: sel('compare-run', 'Compare with a second run'),
      cstep: sel('compare-step', 'Step of the second run'),
      cmode: sel('compare-mode', 'How to compare'),
    };
    this.c.crun.dataset.keepEnabled = '1';
    this.stepSlider = el('input', {type: 'range', min: 0, max: 0, step: 1, value: 0, 'data-testid': 'step-slider', title: 'Checkpoint (step)'});
    this.stepLabel = el('span', {class: 'step-label', 'data-testid': 'step-label'});
    this.playBtn = el('button', {type: 'button', class: 'play', 'data-testid': 'play', title: 'Play through the steps', text: '▶'});
    this.hideSpecial = el('input', {type: 'checkbox', 'data-testid': 'hide-special'});
    this.merge = el('input', {type: 'checkbox', 'data-testid': 'merge-words'});
    this.topk = el('input', {type: 'number', min: 0, max: 4096, step: 1, value: 0, class: 'topk', 'data-testid': 'topk', title: 'Lines kept per query token and head at rest (0: all)'});
    const vb = (v: ViewName, label: string) => el('button', {type: 'button', class: 'view-btn', 'data-testid': `view-${v}`, 'data-view': v, text: label});
    this.viewBtns = {
      head: vb('head', 'Head view'),
      model: vb('model', 'Model view'),
      neuron: vb('neuron', 'Neuron view'),
      training: vb('training', 'Heads over training'),
      rollout: vb('rollout', 'Rollout'),
    };
    this.compareNote = el('span', {class: 'hint', 'data-testid': 'compare-unsupported', text: 'Comparison is not available in this view.'});
    const exportPng = el('button', {type: 'button', 'data-testid': 'export-png', text: 'PNG', title: 'Export the current view as PNG'});
    const exportSvg = el('button', {type: 'button', 'data-testid': 'export-svg', text: 'SVG', title: 'Export the current view as SVG'});
    this.statusEl = el('div', {class: 'status', 'data-testid': 'status'});
    this.errorEl = el('div', {class: 'error', 'data-testid': 'error', role: 'alert'});
    this.errorEl.hidden = true;
    this.layerRow = labelled('Layer', this.c.layer);
    this.rows = {
      filter: labelled('Attention', this.c.filter),
      head: labelled('Head', this.c.head),
      topk: labelled('Top-k', this.topk),
      cstep: labelled('step', this.c.cstep),
      cmode: labelled('mode', this.c.cmode),
    };
    this.tokenOpts = [
      el('label', {class: 'ctl check'}, this.hideSpecial, el('span', {text: 'hide special tokens'})),
      el('label', {class: 'ctl check'}, this.merge, el('span', {text: 'merge subwords into words'})),
    ];
    const bar = el(
      'div',
      {class: 'controls', 'data-testid': 'controls'},
      el(
        'div',
        {class: 'row'},
        labelled('Run', this.c.run),
        labelled('Tag', this.c.tag),
        labelled('Example', this.c.example),
        labelled('Kind', this.c.kind),
        this.layerRow,
        this.rows.head,
        el('div', {class: 'views', role: 'tablist'}, this.viewBtns.head, this.viewBtns.model, this.viewBtns.neuron, this.viewBtns.training, this.viewBtns.rollout),
      ),
      el(
        'div',
        {class: 'row'},
        el('span', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'Step'}), this.playBtn, this.stepSlider, this.stepLabel),
        labelled('Compare with', this.c.crun),
        this.rows.cstep,
        this.rows.cmode,
        this.compareNote,
      ),
      el(
        'div',
        {class: 'row'},
        this.rows.filter,
        ...this.tokenOpts,
        this.rows.topk,
        el('span', {class: 'ctl export'}, el('span', {class: 'ctl-label', text: 'Export'}), exportPng, exportSvg),
      ),
    );
    this.main = el('div', {class: 'main', 'data-testid': 'main'});
    clear(this.root);
    this.root.classList.add('attention-app');
    this.root.appendChild(bar);
    this.root.appendChild(this.errorEl);
    this.root.appendChild(this.statusEl);
    this.root.appendChild(this.main);
    this.applyTheme();

    // wiring
    this.c.run.addEventListener('change', () => this.update({run: this.c.run.value, step: null, compareRun: ''}));
    this.c.tag.addEventListener('change', () => this.update({tag: this.c.tag.value, step: null}));
    this.c.example.addEventListener('change', () => this.update({example: this.c.example.value, step: null, query: null}));
    this.c.kind.addEventListener('change', () => this.update({kind: this.c.kind.value as Kind, detail: null, query: null}));
    this.c.layer.addEventListener('change', () => this.update({layer: Number(this.c.layer.value)}));
    this.c.head.addEventListener('change', () => this.update({neuronHead: Number(this.c.head.value)}));
    this.c.filter.addEventListener('change', () => this.update({filter: this.c.filter.value as SentenceFilter, query: null}));
    this.c.crun.addEventListener('change', () => this.update({compareRun: this.c.crun.value, compareStep: null}));
    this.c.cstep.addEventListener('change', () => this.update({compareStep: this.c.cstep.value === '' ? null : Number(this.c.cstep.value)}));
    this.c.cmode.addEventListener('change', () => this.update({compareMode: this.c.cmode.value as CompareMode}));
    this.hideSpecial.addEventListener('change', () => this.update({hideSpecial: this.hideSpecial.checked, query: null}));
    this.merge.addEventListener('change', () => this.update({merge: this.merge.checked, query: null}));
    this.topk.addEventListener('change', () => {
      const k = Math.max(0, Math.floor(Number(this.topk.value) || 0));
      this.sel.topk = k;
      this.writeUrl();
      for (const v of this.views) if (v instanceof HeadView) v.setTopk(k);
    });
    this.stepSlider.addEventListener('input', () => {
      const steps = this.current?.example.steps ?? [];
      const s = steps[Number(this.stepSlider.value)];
      if (s !== undefined) this.update({step: s === steps[steps.length - 1] ? null : s});
    });
    this.playBtn.addEventListener('click', () => this.togglePlay());
    for (const [v, b] of Object.entries(this.viewBtns)) b.addEventListener('click', () => this.update({view: v as ViewName}));
    exportPng.addEventListener('click', () => this.exportView('png'));
    exportSvg.addEventListener('click', () => this.exportView('svg'));
    o.host.onThemeChange((dark) => {
      this.theme = dark ? DARK : LIGHT;
      this.applyTheme();
      for (const v of this.views) v.setTheme(this.theme);
    });
    o.host.onHashChange(() => {
      const next = readSelectionFromHash(o.host.readHash());
      if (JSON.stringify(next) !== JSON.stringify(this.sel)) {
        this.sel = next;
        this.reconcile();
        this.renderControls();
        void this.renderView();
      }
    });
    document.addEventListener('keydown', (e) => this.onKey(e));
    o.host.onDataReloaded(() => {
      this.root.dataset.reloads = String(Number(this.root.dataset.reloads ?? 0) + 1);
      void this.reloadIndex();
    });
  }

  /** Current selection (a copy). */
  selection(): Selection {
    return {...this.sel};
  }

  async start(): Promise<void> {
    this.root.dataset.state = 'loading';
    try {
      this.index = await this.o.source.index();
    } catch (e) {
      this.fail(e);
      return;
    }
    if (this.index.version > SUPPORTED_FORMAT_VERSION) {
      this.fail(new Error(`The data is in format version ${this.index.version}; this plugin reads up to ${SUPPORTED_FORMAT_VERSION}. Upgrade tensorboard-plugin-attention.`));
      return;
    }
    this.reconcile();
    this.writeUrl();
    this.renderControls();
    await this.renderView();
  }

  private hasData(): boolean {
    return !!this.index?.runs.some((r) => r.tags.some((t) => t.examples.length));
  }

  /** Left/right arrows step through checkpoints (when no form field has the focus). */
  private onKey(e: KeyboardEvent): void {
    const t = e.target as HTMLElement | null;
    if (e.altKey || e.ctrlKey || e.metaKey || (t && /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(t.tagName))) return;
    if (e.key !== 'ArrowLeft' && e.key !== 'ArrowRight') return;
    const steps = this.current?.example.steps ?? [];
    const i = steps.indexOf(this.sel.step ?? steps[steps.length - 1]);
    const j = i + (e.key === 'ArrowRight' ? 1 : -1);
    if (i < 0 || j < 0 || j >= steps.length) return;
    e.preventDefault();
    this.update({step: j === steps.length - 1 ? null : steps[j]});
  }

  private async reloadIndex(): Promise<void> {
    let idx: IndexResponse;
    try {
      idx = await this.o.source.index(true);
    } catch {
      return;
    }
    const changed = JSON.stringify(idx.runs) !== JSON.stringify(this.index?.runs);
    this.index = idx;
    if (!changed) return;
    this.reconcile();
    this.renderControls();
    await this.renderView();
  }

  private applyTheme(): void {
    this.root.classList.toggle('dark', this.theme.dark);
    document.body.classList.toggle('dark', this.theme.dark);
  }

  private fail(e: unknown): void {
    this.root.dataset.state = 'error';
    this.errorEl.hidden = false;
    this.errorEl.textContent = e instanceof Error ? e.message : String(e);
  }

  private update(patch: Partial<Selection>): void {
    Object.assign(this.sel, patch);
    this.reconcile();
    this.writeUrl();
    this.renderControls();
    void this.renderView();
  }

  private writeUrl(): void {
    this.o.host.writeHash(writeSelectionToHash(this.o.host.readHash(), this.sel));
  }

  /** Makes the selection valid for the index (unknown run/tag/example/step/kind fall back to the first). */
  private reconcile(): void {
    const idx = this.index;
    if (!idx) return;
    const s = this.sel;
    const runs = idx.runs.filter((r) => r.tags.some((t) => t.examples.length));
    const run = runs.find((r) => r.run === s.run) ?? runs[0];
    if (!run) return;
    s.run = run.run;
    const tags = run.tags.filter((t) => t.examples.length);
    const tag = tags.find((t) => t.tag === s.tag) ?? tags[0];
    s.tag = tag.tag;
    const ex = tag.examples.find((e) => e.example === s.example) ?? tag.examples[0];
    s.example = ex.example;
    if (s.step !== null && !ex.steps.includes(s.step)) s.step = null;
    const kinds = KINDS.filter((k) => ex.header.kinds[k]);
    if (!s.kind || !kinds.includes(s.kind)) s.kind = kinds[0] ?? null;
    const info = s.kind ? ex.header.kinds[s.kind] : undefined;
    if (info) {
      s.layer = Math.min(Math.max(0, s.layer), info.layers - 1);
      s.neuronHead = Math.min(Math.max(0, s.neuronHead), info.heads - 1);
      if (s.heads) {
        s.heads = s.heads.filter((h) => h < info.heads);
        if (!s.heads.length) s.heads = null;
      }
      if (s.detail && (s.detail[0] >= info.layers || s.detail[1] >= info.heads)) s.detail = null;
      if (s.modelLayers) s.modelLayers = s.modelLayers.filter((l) => l < info.layers);
      if (s.modelHeads) s.modelHeads = s.modelHeads.filter((h) => h < info.heads);
      if (s.modelLayers && !s.modelLayers.length) s.modelLayers = null;
      if (s.modelHeads && !s.modelHeads.length) s.modelHeads = null;
    }
    if (ex.header.sentence_b_start == null) s.filter = 'all';
    if (s.compareRun) {
      const cex = findExample(idx, s.compareRun, s.tag, s.example);
      if (!cex) s.compareRun = '';
      else if (s.compareStep !== null && !cex.steps.includes(s.compareStep)) s.compareStep = null;
    }
    if (!s.compareRun) s.compareStep = null;
  }

  private renderControls(): void {
    const idx = this.index;
    if (!idx) return;
    const s = this.sel;
    const run = idx.runs.find((r) => r.run === s.run);
    const tag = run?.tags.find((t) => t.tag === s.tag);
    const ex = tag?.examples.find((e) => e.example === s.example);
    setOptions(this.c.run, idx.runs.map((r) => [r.run, r.run]), s.run);
    setOptions(this.c.tag, (run?.tags ?? []).map((t) => [t.tag, t.tag]), s.tag);
    setOptions(this.c.example, (tag?.examples ?? []).map((e) => [e.example, e.example]), s.example);
    const header = ex?.header;
    const kinds = header ? KINDS.filter((k) => header.kinds[k]) : [];
    setOptions(this.c.kind, kinds.map((k) => [k, k]), s.kind ?? '');
    const info = header && s.kind ? header.kinds[s.kind] : undefined;
    const nums = (n: number): Opt[] => Array.from({length: n}, (_, i) => [String(i), String(i)]);
    setOptions(this.c.layer, nums(info?.layers ?? 0), String(s.layer));
    setOptions(this.c.head, nums(info?.heads ?? 0), String(s.neuronHead));
    this.rows.head.hidden = s.view !== 'neuron';
    const perStep = s.view === 'training' || s.view === 'rollout';
    this.layerRow.hidden = s.view === 'model' || perStep;
    this.rows.topk.hidden = s.view !== 'head';
    const hasPair = header?.sentence_b_start != null;
    setOptions(this.c.filter, SENTENCE_FILTERS.map((f) => [f, SENTENCE_FILTER_LABELS[f]]), s.filter);
    this.rows.filter.hidden = !hasPair || s.view === 'training';
    for (const t of this.tokenOpts) t.hidden = s.view === 'training';
    this.hideSpecial.checked = s.hideSpecial;
    this.merge.checked = s.merge;
    this.topk.value = String(s.topk);
    const steps = ex?.steps ?? [];
    this.stepSlider.max = String(Math.max(0, steps.length - 1));
    const step = s.step ?? steps[steps.length - 1];
    this.stepSlider.value = String(Math.max(0, steps.indexOf(step)));
    this.stepSlider.disabled = steps.length <= 1;
    this.playBtn.disabled = steps.length <= 1;
    this.stepLabel.textContent = steps.length ? `${step} (${steps.indexOf(step) + 1}/${steps.length})` : '';
    // comparison: runs holding the same tag and example
    const cruns: Opt[] = [['', '(none)']];
    for (const r of idx.runs) if (findExample(idx, r.run, s.tag, s.example)) cruns.push([r.run, r.run]);
    setOptions(this.c.crun, cruns, s.compareRun);
    const cex = s.compareRun ? findExample(idx, s.compareRun, s.tag, s.example) : undefined;
    const csteps = cex?.steps ?? [];
    setOptions(this.c.cstep, [['', `latest${csteps.length ? ` (${csteps[csteps.length - 1]})` : ''}`], ...csteps.map((x): Opt => [String(x), String(x)])], s.compareStep === null ? '' : String(s.compareStep));
    this.c.cstep.disabled = !s.compareRun;
    const modes: Opt[] = [['side', 'side by side']];
    if (s.view !== 'neuron') modes.push(['diff', 'difference B − A']);
    setOptions(this.c.cmode, modes, s.view === 'neuron' ? 'side' : s.compareMode);
    this.c.cmode.disabled = !s.compareRun || modes.length < 2;
    this.rows.cstep.hidden = this.rows.cmode.hidden = !s.compareRun || perStep;
    this.c.crun.disabled = perStep;
    this.compareNote.hidden = !perStep;
    for (const [v, b] of Object.entries(this.viewBtns)) {
      const on = v === s.view;
      b.classList.toggle('on', on);
      b.setAttribute('aria-selected', on ? 'true' : 'false');
    }
    this.root.dataset.view = s.view;
  }

  private exampleOf(run: string): IndexExample {
    const ex = findExample(this.index!, run, this.sel.tag, this.sel.example);
    if (!ex) throw new Error(`run ${run} has no example ${this.sel.example} of tag ${this.sel.tag}`);
    return ex;
  }

  private async load(run: string, step: number | null): Promise<Loaded> {
    const example = this.exampleOf(run);
    const st = step ?? example.steps[example.steps.length - 1];
    const ref: RecordRef = {run, tag: this.sel.tag, example: this.sel.example, step: st};
    const header = example.header.step === st ? example.header : await this.o.source.header(ref);
    const kind = this.sel.kind;
    if (!kind || !header.kinds[kind]) throw new Error(`step ${st} of run ${run} has no ${kind ?? ''} attention`);
    return {ref, header, example, kind};
  }

  private ensureViews(key: string, make: () => ViewBase[]): ViewBase[] {
    if (key !== this.viewKey) {
      for (const v of this.views) v.dispose();
      clear(this.main);
      this.views = make();
      this.viewKey = key;
      const wrap = el('div', {class: this.views.length > 1 ? 'panes side' : 'panes'});
      this.views.forEach((v, i) => {
        const pane = el('div', {class: 'pane', 'data-testid': `pane-${i}`});
        if (this.views.length > 1) pane.appendChild(el('div', {class: 'pane-title', 'data-testid': `pane-title-${i}`}));
        pane.appendChild(v.el);
        wrap.appendChild(pane);
      });
      this.main.appendChild(wrap);
    }
    return this.views;
  }

  private setPaneTitles(titles: string[]): void {
    this.main.querySelectorAll('.pane-title').forEach((t, i) => (t.textContent = titles[i] ?? ''));
  }

  private async renderView(): Promise<void> {
    if (!this.index) return;
    const my = ++this.gen;
    if (!this.hasData()) {
      for (const v of this.views) v.dispose();
      this.views = [];
      this.viewKey = '';
      clear(this.main);
      this.main.appendChild(
        el('div', {class: 'empty', 'data-testid': 'empty'}, 'No attention data in this logdir yet. Log some with tensorboard_plugin_attention.log_attention (or AttentionCallback during training); this tab refreshes when TensorBoard reloads.'),
      );
      this.root.dataset.state = 'empty';
      return;
    }
    this.busy = true;
    this.root.dataset.state = 'loading';
    try {
      const a = await this.load(this.sel.run, this.sel.step);
      const single = this.sel.view === 'training' || this.sel.view === 'rollout'; // no comparison there
      const b = this.sel.compareRun && !single ? await this.load(this.sel.compareRun, this.sel.compareStep) : null;
      if (my !== this.gen) return;
      this.current = a;
      this.renderControls();
      const info = kindInfo(a.header, a.kind);
      this.statusEl.textContent = [
        `${a.ref.run} · ${a.ref.tag} · example ${a.ref.example} · step ${a.ref.step}`,
        a.header.model ?? '',
        `${a.kind}: ${info.layers} layers × ${info.heads} heads`,
        `${a.header.sequences[info.query]?.length ?? 0} query × ${a.header.sequences[info.key]?.length ?? 0} key tokens`,
        b ? `vs ${b.ref.run} step ${b.ref.step}` : '',
      ]
        .filter(Boolean)
        .join('  ·  ');
      const diff = !!b && this.sel.compareMode === 'diff' && this.sel.view !== 'neuron';
      if (this.sel.view === 'head') await this.showHead(my, a, b, diff);
      else if (this.sel.view === 'model') await this.showModel(my, a, b, diff);
      else if (this.sel.view === 'training') await this.showTraining(my, a);
      else if (this.sel.view === 'rollout') await this.showRollout(my, a);
      else await this.showNeuron(my, a, b);
      if (my !== this.gen) return;
      this.errorEl.hidden = true;
      this.root.dataset.state = 'ready';
    } catch (e) {
      if (my === this.gen) this.fail(e);
    } finally {
      if (my === this.gen) this.busy = false;
    }
  }

  // ---------------------------------------------------------------------------------------------------
  // Head view

  private async headDataFor(x: Loaded, layer: number, head?: number): Promise<HeadData> {
    const att = await this.o.source.attention(x.ref, x.kind, layer, head);
    const axes = buildAxes(x.header, x.kind, this.sel);
    return headData(att, axes, kindInfo(x.header, x.kind).heads);
  }

  private makeHeadView(testid: string, swatches = true): HeadView {
    return new HeadView({
      theme: this.theme,
      colorOf: headColor,
      active: this.sel.heads,
      topk: this.sel.topk,
      swatches,
      testid,
      onActiveChange: (active) => {
        this.sel.heads = active;
        this.writeUrl();
        for (const v of this.views) if (v instanceof HeadView) v.setActive(active);
      },
      onHover: (side, i) => {
        for (const v of this.views) if (v instanceof HeadView && v.el.dataset.testid !== testid) v.setHover(side, i);
      },
    });
  }

  private async showHead(my: number, a: Loaded, b: Loaded | null, diff: boolean): Promise<void> {
    const layer = this.sel.layer;
    const da = await this.headDataFor(a, layer);
    const db = b ? await this.headDataFor(b, layer) : null;
    if (my !== this.gen) return;
    if (db && diff) {
      if (!sameTokens(a.header, b!.header)) throw new Error('Cannot show B − A: the two records have different tokens.');
      const views = this.ensureViews('head-diff', () => [this.makeHeadView('head-view')]) as HeadView[];
      views[0].setActive(this.sel.heads);
      views[0].setData(diffHeadData(da, db));
      return;
    }
    if (db) {
      const views = this.ensureViews('head-side', () => [this.makeHeadView('head-view'), this.makeHeadView('head-view-b')]) as HeadView[];
      this.setPaneTitles([`A: ${a.ref.run} @ ${a.ref.step}`, `B: ${b!.ref.run} @ ${b!.ref.step}`]);
      views[0].setActive(this.sel.heads);
      views[1].setActive(this.sel.heads);
      views[0].setData(da);
      views[1].setData(db);
      return;
    }
    const views = this.ensureViews('head', () => [this.makeHeadView('head-view')]) as HeadView[];
    views[0].setActive(this.sel.heads);
    views[0].setTopk(this.sel.topk);
    views[0].setData(da);
  }

  // ---------------------------------------------------------------------------------------------------
  // Model view

  private makeModelView(): ModelView {
    return new ModelView({
      theme: this.theme,
      style: this.sel.thumbs,
      detail: this.sel.detail,
      onDetail: (d) => {
        this.sel.detail = d;
        this.writeUrl();
        void this.renderView();
      },
      onInclude: (layers, heads) => this.update({modelLayers: layers, modelHeads: heads}),
      onStyle: (s) => {
        this.sel.thumbs = s;
        this.writeUrl();
        for (const v of this.views) if (v instanceof ModelView) v.setStyle(s);
      },
    });
  }

  private async showModel(my: number, a: Loaded, b: Loaded | null, diff: boolean): Promise<void> {
    const s = this.sel;
    const axesA = buildAxes(a.header, a.kind, s);
    const ma = modelData(await this.o.source.overview(a.ref, a.kind), axesA, s.modelLayers, s.modelHeads);
    const mb = b ? modelData(await this.o.source.overview(b.ref, b.kind), buildAxes(b.header, b.kind, s), s.modelLayers, s.modelHeads) : null;
    const info = kindInfo(a.header, a.kind);
    // the head detail of the clicked thumbnail: a head view of that layer and head
    const detailFor = async (x: Loaded): Promise<HeadData | null> => (s.detail ? this.headDataFor(x, s.detail[0], s.detail[1]) : null);
    let details: (HeadData | null)[];
    if (mb && diff) {
      const [d1, d2] = await Promise.all([detailFor(a), detailFor(b!)]);
      details = [d1 && d2 ? diffHeadData(d1, d2) : null];
    } else {
      details = await Promise.all([detailFor(a), ...(b ? [detailFor(b)] : [])]);
    }
    if (my !== this.gen) return;
    const datas = mb && diff ? [diffModelData(ma, mb)] : mb ? [ma, mb] : [ma];
    const key = `model-${datas.length}`;
    const views = this.ensureViews(key, () => datas.map(() => this.makeModelView())) as ModelView[];
    if (mb && !diff) this.setPaneTitles([`A: ${a.ref.run} @ ${a.ref.step}`, `B: ${b!.ref.run} @ ${b!.ref.step}`]);
    views.forEach((v, i) => {
      v.setStyle(s.thumbs);
      v.setInclude(info.layers, info.heads, s.modelLayers, s.modelHeads);
      const dd = details[i];
      if (dd && s.detail) {
        const detailColor = dd.signed ? headColor : () => layerColor(s.detail![0]);
        const hv = new HeadView({theme: this.theme, colorOf: detailColor, active: null, topk: s.topk, swatches: false, testid: `model-detail-head-${i}`});
        v.setDetail(s.detail, hv.el); // attach first: a tall detail virtualises against its scrolling panel
        hv.setData(dd);
      } else v.setDetail(null, null);
      v.setData(datas[i]);
    });
  }

  // ---------------------------------------------------------------------------------------------------
  // Neuron view

  private async neuronData(x: Loaded): Promise<NeuronData> {
    const s = this.sel;
    const info = kindInfo(x.header, x.kind);
    const layer = s.layer;
    const head = s.neuronHead;
    const axes = buildAxes(x.header, x.kind, s, false);
    const att = await this.o.source.attention(x.ref, x.kind, layer, head);
    const logged = info.has_qk && x.example.qk_steps.includes(x.ref.step);
    const qk = logged ? await this.o.source.qk(x.ref, x.kind, layer, head) : null;
    let missing: NeuronData['missing'];
    if (!qk) {
      const near = nearestStep(x.example.qk_steps, x.ref.step);
      missing = {
        message: x.example.qk_steps.length
          ? `Queries and keys were not logged at step ${x.ref.step} of ${x.ref.run}.`
          : `Queries and keys were not logged for this example of ${x.ref.run}: only the attention lines can be shown.`,
        nearestStep: near,
      };
    }
    const notes: string[] = [];
    if (s.merge) notes.push('Word merging does not apply to the neuron view: it shows the model’s own tokens.');
    const li = resolveLayerInfo(info.layer_info?.[layer], qk?.d ?? info.head_dim ?? 64, x.kind === 'decoder');
    return {
      layer,
      head,
      nHeads: info.heads,
      queryLabels: axes.rows.labels,
      keyLabels: axes.cols.labels,
      rowIdx: axes.rows.idx,
      colIdx: axes.cols.idx,
      attention: att.head(head),
      q: att.q,
      k: att.k,
      qk,
      info: li,
      selfAttention: axes.self,
      missing,
      notes,
    };
  }

  private makeNeuronView(): NeuronView {
    return new NeuronView({
      theme: this.theme,
      collapsed: this.sel.collapsed,
      query: this.sel.query,
      onPin: (r) => {
        this.sel.query = r;
        this.writeUrl();
      },
      onCollapsed: (c) => {
        this.sel.collapsed = c;
        this.writeUrl();
      },
      onGoToStep: (step) => {
        const ex = this.current?.example;
        this.update({step: ex && step === ex.steps[ex.steps.length - 1] ? null : step});
      },
    });
  }

  private async showNeuron(my: number, a: Loaded, b: Loaded | null): Promise<void> {
    const na = await this.neuronData(a);
    const nb = b ? await this.neuronData(b) : null;
    if (my !== this.gen) return;
    const datas = nb ? [na, nb] : [na];
    const views = this.ensureViews(`neuron-${datas.length}`, () => datas.map(() => this.makeNeuronView())) as NeuronView[];
    if (nb) this.setPaneTitles([`A: ${a.ref.run} @ ${a.ref.step}`, `B: ${b!.ref.run} @ ${b!.ref.step}`]);
    views.forEach((v, i) => v.setData(datas[i]));
  }

  // ---------------------------------------------------------------------------------------------------
  // Heads over training

  private exampleRef(): ExampleRef {
    return {run: this.sel.run, tag: this.sel.tag, example: this.sel.example};
  }

  /** Opens the head (or neuron) view of one head at a step (from the training view). */
  private openHead(layer: number, head: number, step: number, view: 'head' | 'neuron'): void {
    const steps = this.current?.example.steps ?? [];
    const st = steps.includes(step) ? (step === steps[steps.length - 1] ? null : step) : this.sel.step;
    const patch: Partial<Selection> = {view, layer, heads: [head], step: st, query: null, detail: null};
    patch.neuronHead = head; // both views (README: heads=[h], nhead=h): switching to the neuron view keeps the head
    this.update(patch);
  }

  private makeTrainingView(): TrainingView {
    return new TrainingView({
      theme: this.theme,
      openIn: this.sel.openIn,
      logX: this.sel.logX,
      onMetric: (m) => this.update({metric: m}),
      onOpenIn: (v) => {
        this.sel.openIn = v;
        this.writeUrl();
      },
      onLogX: (on) => {
        this.sel.logX = on;
        this.writeUrl();
      },
      onDivSteps: (a, b) => {
        const steps = this.current?.example.steps ?? [];
        this.update({divA: a === steps[0] ? null : a, divB: b === (this.current?.ref.step ?? NaN) ? null : b});
      },
      onOpen: (l, h, step, view) => this.openHead(l, h, step, view),
    });
  }

  private async showTraining(my: number, a: Loaded): Promise<void> {
    const s = this.sel;
    const ex = this.exampleRef();
    const metrics = await this.o.source.metrics(ex, a.kind);
    const steps = a.example.steps;
    const stepA = s.divA !== null && steps.includes(s.divA) ? s.divA : steps[0];
    const stepB = s.divB !== null && steps.includes(s.divB) ? s.divB : a.ref.step;
    let divergence: DivergenceResponse | null = null;
    let divMessage: string | undefined;
    if (steps.length < 2) divMessage = 'Only one checkpoint: nothing to compare yet.';
    else if (stepA === stepB) divMessage = `Both checkpoints are step ${stepA}: choose two different steps.`;
    else {
      try {
        divergence = await this.o.source.divergence(ex, a.kind, stepA, stepB);
        if (divergence.same_tokens === false) divMessage = `The tokens differ between steps ${stepA} and ${stepB}: position i is not the same token in both.`;
      } catch (e) {
        divMessage = `Divergence unavailable: ${e instanceof Error ? e.message : String(e)}`;
      }
    }
    if (my !== this.gen) return;
    const selected: [number, number] | null = s.heads && s.heads.length === 1 ? [s.layer, s.heads[0]] : null;
    const data = trainingData({metrics, kind: a.kind, metric: s.metric, step: a.ref.step, selected, divSteps: steps.length ? [stepA, stepB] : null, divergence, divMessage});
    const views = this.ensureViews('training', () => [this.makeTrainingView()]) as TrainingView[];
    views[0].setData(data);
  }

  // ---------------------------------------------------------------------------------------------------
  // Attention rollout

  private makeRolloutView(): RolloutView {
    return new RolloutView({
      theme: this.theme,
      residual: this.sel.residual,
      fusion: this.sel.fusion,
      onResidual: (r) => this.update({residual: r}),
      onFusion: (f) => this.update({fusion: f}),
    });
  }

  private async showRollout(my: number, a: Loaded): Promise<void> {
    const s = this.sel;
    const axes = buildAxes(a.header, a.kind, s);
    if (!axes.self) throw new Error('Attention rollout needs self-attention (one sequence for queries and keys): choose the encoder or decoder kind.');
    const r = await this.o.source.rollout(a.ref, a.kind, s.residual, s.fusion);
    if (my !== this.gen) return;
    const data = rolloutData(r, axes, s.residual, s.fusion);
    if (a.kind === 'decoder' && a.header.kinds.cross) data.notes.push('Decoder self-attention only: what flows in through cross-attention from the encoder is not part of this rollout.');
    const views = this.ensureViews('rollout', () => [this.makeRolloutView()]) as RolloutView[];
    views[0].setData(data);
  }

  // ---------------------------------------------------------------------------------------------------
  // Step playback and export

  private togglePlay(): void {
    if (this.playTimer) {
      clearInterval(this.playTimer);
      this.playTimer = null;
      this.playBtn.textContent = '▶';
      this.root.dataset.playing = '';
      return;
    }
    const steps = this.current?.example.steps ?? [];
    if (steps.length < 2) return;
    const cur = this.sel.step ?? steps[steps.length - 1];
    if (cur === steps[steps.length - 1]) this.update({step: steps[0]});
    this.playBtn.textContent = '⏸';
    this.root.dataset.playing = '1';
    this.playTimer = setInterval(() => {
      if (this.busy) return;
      const st = this.current?.example.steps ?? [];
      const i = st.indexOf(this.sel.step ?? st[st.length - 1]);
      if (i < 0 || i >= st.length - 1) {
        this.togglePlay();
        return;
      }
      this.update({step: i + 1 === st.length - 1 ? null : st[i + 1]});
    }, 900);
  }

  /** Paints every pane side by side (what the export buttons save). */
  exportDrawing(): {width: number; height: number; draw: (ctx: Ctx) => void} {
    const gap = 24;
    const sizes = this.views.map((v) => v.exportSize());
    const width = sizes.reduce((w, s) => w + s.width, 0) + gap * Math.max(0, sizes.length - 1);
    const height = Math.max(1, ...sizes.map((s) => s.height));
    const draw = (ctx: Ctx) => {
      let x = 0;
      this.views.forEach((v, i) => {
        ctx.save();
        ctx.translate(x, 0);
        v.paint(ctx);
        ctx.restore();
        x += sizes[i].width + gap;
      });
    };
    return {width, height, draw};
  }

  private exportView(format: 'png' | 'svg'): void {
    const s = this.sel;
    const what = s.view === 'training' ? `_${s.metric}` : s.view === 'rollout' ? `_r${s.residual}_${s.fusion}` : `_L${s.layer}`;
    const name = safeName(`attention_${s.view}_${s.run}_${this.current?.ref.step ?? ''}${what}`) + '.' + format;
    const {width, height, draw} = this.exportDrawing();
    if (format === 'svg') {
      const svg = new SvgContext();
      draw(svg);
      this.download(new Blob([svg.toSvg(width, height, this.theme.bg)], {type: 'image/svg+xml'}), name);
      return;
    }
    const canvas = renderToCanvas(width, height, this.theme.bg, draw);
    if (!canvas) {
      this.fail(new Error('This view is too tall for a PNG; export it as SVG, or use top-k / filters to shorten it.'));
      return;
    }
    canvas.toBlob((blob) => blob && this.download(blob, name), 'image/png');
  }

  private download(blob: Blob, name: string): void {
    const url = URL.createObjectURL(blob);
    const a = el('a', {href: url, download: name});
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    this.root.dataset.lastExport = `${name}:${blob.size}`;
  }
}
