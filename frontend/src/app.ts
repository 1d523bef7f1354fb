// The shell: loads the index and the selected records, keeps the selection valid and in the URL, lays out
// the panes, says what cannot be shown, plays through steps and exports (the toolbar is toolbar.ts). It
// knows views only through the registry (views/registry.ts): each view's spec says its label, controls,
// comparison modes, its own URL state, whether it applies to a record, and how it loads and draws. Views know nothing about HTTP; the data source no pixels.
import {headerProblem, limitsOf} from './api';
import {kindInfo} from './axes';
import {renderToCanvas} from './draw/canvas';
import {DARK, LIGHT, type Theme} from './draw/colors';
import {SvgContext, type Ctx} from './draw/ctx';
import type {Host} from './host';
import {latestStep, resolveStep, stepKey} from './math';
import {readSelectionFromHash, reconcileViews, resetViews, setViewKeys, viewState, writeSelectionToHash, type CompareMode, type Selection, type ShellKey} from './state';
import {FindBox} from './find';
import {findExample, Toolbar} from './toolbar';
import {KINDS, type DataSource, type Header, type IndexExample, type IndexResponse, type RecordRef, type Weighting} from './types';
import {compareOutcome, effectiveWeighting, valueWeightingProblem, WEIGHTING_LABELS} from './weighting';
import {clear, el, type ViewBase} from './views/common';
import {VIEW_SPECS, viewSpec} from './views/registry';
import {whyUnavailable, type Loaded, type ViewHost, type ViewSpec} from './views/spec';

/** The /index `version` (the HTTP API's, docs/http-api.md) this frontend reads. */
export const SUPPORTED_API_VERSION = 1;
const UPGRADE = 'pip install -U tensorboard-plugin-attention';

export interface AppOptions {
  source: DataSource;
  host: Host;
  root: HTMLElement;
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
  /** The record part of the status line and the shown view's part (what it draws from). */
  private readonly statusRecord: HTMLElement;
  private readonly statusView: HTMLElement;
  /** What the shown view's weighting gives (its spec's `weightingLabel`), at the start of the status line. */
  private readonly weightingEl: HTMLElement;
  /** Why the compared record B is shown as a message beside A (no value norms), or null. */
  private bMessage: {title: string; text: string} | null = null;
  private readonly find: FindBox;
  private readonly noticeEl: HTMLElement;
  private readonly errorEl: HTMLElement;
  private readonly toolbar: Toolbar;
  private views: ViewBase[] = [];
  private viewKey = '';
  private gen = 0;
  private busy = false;
  private reloading: Promise<void> | null = null;
  private playTimer: ReturnType<typeof setInterval> | null = null;
  private current: Loaded | null = null;

  constructor(private o: AppOptions) {
    this.root = o.root;
    this.sel = readSelectionFromHash(o.host.readHash(), VIEW_SPECS);
    this.theme = o.host.isDark() ? DARK : LIGHT;
    this.toolbar = new Toolbar({
      change: (patch) => this.update(patch),
      topk: (k) => {
        this.sel.topk = k;
        this.writeUrl();
        for (const v of this.views) v.setTopk?.(k);
      },
      play: () => this.togglePlay(),
      export: (f) => this.exportView(f),
    });
    this.statusRecord = el('span', {'data-testid': 'status-record'});
    this.statusView = el('span', {class: 'status-view', 'data-testid': 'status-view'});
    this.weightingEl = el('span', {class: 'weighting-badge', 'data-testid': 'weighting-label'});
    this.weightingEl.hidden = true;
    this.statusEl = el('div', {class: 'status', 'data-testid': 'status'}, this.weightingEl, this.statusRecord, this.statusView);
    this.find = new FindBox((pos) => {
      for (const v of this.views) v.reveal?.(pos);
    });
    this.noticeEl = el('div', {class: 'status notice', 'data-testid': 'unreadable-notice'});
    this.noticeEl.hidden = true;
    this.errorEl = el('div', {class: 'error', 'data-testid': 'error', role: 'alert'});
    this.errorEl.hidden = true;
    this.main = el('div', {class: 'main', 'data-testid': 'main'});
    clear(this.root);
    this.root.classList.add('attention-app');
    this.root.append(this.toolbar.el, this.find.el, this.errorEl, this.noticeEl, this.statusEl, this.main);
    this.applyTheme();

    o.host.onThemeChange((dark) => {
      this.theme = dark ? DARK : LIGHT;
      this.applyTheme();
      for (const v of this.views) v.setTheme(this.theme);
    });
    o.host.onHashChange(() => {
      const next = readSelectionFromHash(o.host.readHash(), VIEW_SPECS);
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
    o.host.onPoll?.(() => {
      this.root.dataset.polls = String(Number(this.root.dataset.polls ?? 0) + 1);
      return this.reloadIndex();
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
    if (this.index.version > SUPPORTED_API_VERSION) {
      this.fail(new Error(`The backend serves API version ${this.index.version}; this page reads up to ${SUPPORTED_API_VERSION}. Reload the page, or upgrade tensorboard-plugin-attention (${UPGRADE}).`));
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

  /** The steps of the shown example (empty before one is loaded). */
  private steps(): number[] {
    return this.current?.example.steps ?? [];
  }

  /** Left/right arrows step through checkpoints (when no form field has the focus). */
  private onKey(e: KeyboardEvent): void {
    const t = e.target as HTMLElement | null;
    if (e.altKey || e.ctrlKey || e.metaKey || (t && /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(t.tagName))) return;
    if (e.key !== 'ArrowLeft' && e.key !== 'ArrowRight') return;
    const steps = this.steps();
    const i = steps.indexOf(resolveStep(steps, this.sel.step) ?? NaN);
    const j = i + (e.key === 'ArrowRight' ? 1 : -1);
    if (i < 0 || j < 0 || j >= steps.length) return;
    e.preventDefault();
    this.update({step: stepKey(steps, steps[j])});
  }

  /** Refetches /index (one request at a time) and redraws if anything in it changed. */
  private reloadIndex(): Promise<void> {
    this.reloading ??= this.doReloadIndex().finally(() => (this.reloading = null));
    return this.reloading;
  }

  private async doReloadIndex(): Promise<void> {
    let idx: IndexResponse;
    try {
      idx = await this.o.source.index(true);
    } catch {
      return;
    }
    const before = this.index;
    const shownBefore = this.shownSignature();
    const changed = JSON.stringify([idx.runs, idx.unreadable]) !== JSON.stringify([before?.runs, before?.unreadable]);
    this.index = idx;
    if (!changed) return;
    this.reconcile();
    this.renderControls();
    this.renderNotice();
    // redraw only when what is shown changed (other runs logging must not reset a hover or a pin)
    if (this.shownSignature() !== shownBefore || this.root.dataset.state !== 'ready') await this.renderView();
  }

  /** What the drawing depends on in the index: the selected example of both runs, and the selection. */
  private shownSignature(): string {
    const idx = this.index;
    if (!idx) return '';
    const s = this.sel;
    return JSON.stringify([s, findExample(idx, s.run, s.tag, s.example) ?? null, s.compareRun ? (findExample(idx, s.compareRun, s.tag, s.example) ?? null) : null]);
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

  /** What a view's render may do: the live selection, theme and its own state; `current` bound to render `gen`. */
  private hostFor<S extends object>(spec: ViewSpec<S>, gen: number): ViewHost<S> {
    const app = this; // the getters read the live selection, state and theme
    return {
      source: this.o.source,
      get sel() {
        return app.sel;
      },
      get state() {
        return viewState(app.sel, spec);
      },
      get theme() {
        return app.theme;
      },
      get weighting() {
        return app.weightingOf(spec);
      },
      current: () => gen === this.gen,
      record: () => this.current,
      panes: (key, make, titles) => this.panes(key, make, titles),
      shown: () => this.views,
      update: (patch, state) => this.update(patch, spec, state),
      remember: (patch, state) => {
        this.apply(patch, spec, state);
        this.writeUrl();
      },
      open: (view, patch, keys) => {
        setViewKeys(this.sel, VIEW_SPECS, keys);
        this.update({...patch, view});
      },
      redraw: () => void this.renderView(),
      status: (text) => {
        this.statusView.textContent = text ? `  ·  ${text}` : '';
      },
    };
  }

  /** Applies a patch of the shell's fields and of `spec`'s own state (no reset, no redraw). */
  private apply<S extends object>(patch: Partial<Selection>, spec?: ViewSpec<S>, state?: Partial<S>): void {
    Object.assign(this.sel, patch);
    if (spec && state) this.sel.views = {...this.sel.views, [spec.name]: {...viewState(this.sel, spec), ...state}};
  }

  /** Changes the selection (each view's state reset as its spec says for the shell fields changed) and redraws. */
  private update<S extends object>(patch: Partial<Selection>, spec?: ViewSpec<S>, state?: Partial<S>): void {
    const changed = new Set((Object.keys(patch) as ShellKey[]).filter((k) => JSON.stringify(patch[k]) !== JSON.stringify(this.sel[k])));
    this.apply(patch, spec, state);
    resetViews(this.sel, VIEW_SPECS, changed);
    this.reconcile();
    this.writeUrl();
    this.renderControls();
    void this.renderView();
  }

  private writeUrl(): void {
    this.o.host.writeHash(writeSelectionToHash(this.o.host.readHash(), this.sel, VIEW_SPECS));
  }

  /** Makes the selection valid for the index (unknown run/tag/example/step/kind fall back to the first). */
  private reconcile(): void {
    const idx = this.index;
    if (!idx) return;
    const s = this.sel;
    s.view = viewSpec(s.view).name;
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
      reconcileViews(s, VIEW_SPECS, info);
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
    if (!this.index) return;
    const spec = viewSpec(this.sel.view);
    const why = valueWeightingProblem(this.o.source, this.shownHeader(), this.sel.kind);
    this.toolbar.render(this.index, this.sel, spec, this.compareMode(spec), {value: why ? 'weights' : this.sel.weighting, disabled: why});
    this.root.dataset.view = spec.name;
  }

  /** The header of the selected record: the loaded one when it is the selection's, else the index's (its latest step). */
  private shownHeader(): Header | undefined {
    const c = this.current;
    const s = this.sel;
    if (c && c.ref.run === s.run && c.ref.tag === s.tag && c.ref.example === s.example && (s.step === null || c.ref.step === s.step)) return c.header;
    return this.index ? findExample(this.index, s.run, s.tag, s.example)?.header : undefined;
  }

  /**
   * The weighting view `spec` fetches the shown record with: 'value' when it uses the toggle, the toggle says
   * so, the source can and record A's kind has value norms; else 'weights'.
   */
  private weightingOf(spec: Pick<ViewSpec, 'controls'>): Weighting {
    const a = this.current;
    return effectiveWeighting(this.sel.weighting, spec.controls.includes('weighting'), this.o.source, a?.header, a?.kind ?? null);
  }

  /** The status line's weighting badge for the shown view and record (hidden for raw weights as asked). */
  private renderWeighting(spec: ViewSpec, a: Loaded): void {
    const w = this.weightingOf(spec);
    const uses = spec.controls.includes('weighting');
    let text = '';
    if (uses && w === 'value') text = spec.weightingLabel?.(kindInfo(a.header, a.kind), w, viewState(this.sel, spec)) ?? WEIGHTING_LABELS.value;
    else if (uses && this.sel.weighting === 'value') {
      // asked for but not possible here: say why it is raw
      const why = valueWeightingProblem(this.o.source, a.header, a.kind) ?? '';
      text = `raw weights: ${why.charAt(0).toLowerCase()}${why.slice(1)}`;
    }
    this.weightingEl.textContent = text;
    this.weightingEl.hidden = !text;
    this.weightingEl.dataset.weighting = uses ? w : '';
    this.root.dataset.weighting = uses ? w : '';
  }

  /** The selection's comparison mode if the view offers it, else the view's first. */
  private compareMode(spec: ViewSpec): CompareMode {
    return spec.compare.includes(this.sel.compareMode) ? this.sel.compareMode : (spec.compare[0] ?? 'side');
  }

  private exampleOf(run: string): IndexExample {
    const ex = findExample(this.index!, run, this.sel.tag, this.sel.example);
    if (!ex) throw new Error(`run ${run} has no example ${this.sel.example} of tag ${this.sel.tag}`);
    return ex;
  }

  private async load(run: string, step: number | null): Promise<Loaded> {
    const example = this.exampleOf(run);
    const st = resolveStep(example.steps, step)!;
    const ref: RecordRef = {run, tag: this.sel.tag, example: this.sel.example, step: st};
    const header = example.header.step === st ? example.header : await this.o.source.header(ref);
    const kind = this.sel.kind;
    if (!kind || !header.kinds[kind]) throw new Error(`step ${st} of run ${run} has no ${kind ?? ''} attention`);
    const problem = headerProblem(header, limitsOf(this.index));
    if (problem) throw new Error(`Step ${st} of ${run} is not drawn: ${problem}`);
    return {ref, header, example, kind};
  }

  /** The panes of layout `key`: kept while the key stays, else disposed and made anew with `make`. */
  private panes<V extends ViewBase>(key: string, make: () => V[], titles?: string[]): V[] {
    // record B shown as a message beside A (no value norms): one pane more, made by the shell
    const msg = this.bMessage;
    const fullKey = msg ? `${key}#b-message` : key;
    if (fullKey !== this.viewKey) {
      this.clearPanes();
      this.views = make();
      this.viewKey = fullKey;
      const titled = this.views.length > 1 || !!msg;
      const wrap = el('div', {class: titled ? 'panes side' : 'panes'});
      this.views.forEach((v, i) => {
        const pane = el('div', {class: 'pane', 'data-testid': `pane-${i}`});
        if (titled) pane.appendChild(el('div', {class: 'pane-title', 'data-testid': `pane-title-${i}`}));
        pane.appendChild(v.el);
        wrap.appendChild(pane);
      });
      if (msg) {
        const i = this.views.length;
        wrap.appendChild(
          el('div', {class: 'pane', 'data-testid': `pane-${i}`}, el('div', {class: 'pane-title', 'data-testid': `pane-title-${i}`}), el('div', {class: 'pane-message', 'data-testid': 'weighting-b-missing', role: 'note'})),
        );
      }
      this.main.appendChild(wrap);
    }
    if (msg) {
      const a = this.current;
      titles = [...(titles ?? (a ? [`A: ${a.ref.run} @ ${a.ref.step}`] : [])), msg.title];
      const note = this.main.querySelector('[data-testid="weighting-b-missing"]');
      if (note) note.textContent = msg.text;
    }
    if (titles) this.main.querySelectorAll('.pane-title').forEach((t, i) => (t.textContent = titles[i] ?? ''));
    return this.views as V[];
  }

  private clearPanes(): void {
    for (const v of this.views) v.dispose();
    this.views = [];
    this.viewKey = '';
    clear(this.main);
  }

  /** What to say about tags the backend could not read: a page when nothing is readable, else a note. */
  private renderNotice(): void {
    const bad = this.index?.unreadable ?? [];
    const newer = bad.filter((u) => u.newer_version);
    const what = (list: typeof bad) =>
      list
        .slice(0, 3)
        .map((u) => `${u.run} / ${u.tag}`)
        .join(', ') + (list.length > 3 ? ` and ${list.length - 3} more` : '');
    let text = '';
    if (newer.length) text = `Some records (${what(newer)}) were written by a newer tensorboard-plugin-attention; upgrade the plugin (${UPGRADE}) to see them.`;
    const other = bad.filter((u) => !u.newer_version);
    if (other.length) text += `${text ? ' ' : ''}Records that could not be read: ${what(other)} (${other[0].reason}).`;
    this.noticeEl.textContent = this.hasData() ? text : '';
    this.noticeEl.hidden = !this.hasData() || !text;
  }

  private renderEmpty(): void {
    const bad = this.index?.unreadable ?? [];
    let text =
      'No attention data in this logdir yet. Log some with tensorboard_plugin_attention.log_attention (or AttentionCallback during training); this tab refreshes when TensorBoard reloads.';
    let reason = 'none';
    if (bad.some((u) => u.newer_version)) {
      text = `The attention records in this logdir were written by a newer version of tensorboard-plugin-attention than this one. Upgrade the plugin to view them: ${UPGRADE} (then restart TensorBoard).`;
      reason = 'upgrade';
    } else if (bad.length) {
      text = `No readable attention data: ${bad.length} tag${bad.length > 1 ? 's' : ''} could not be read (${bad[0].run} / ${bad[0].tag}: ${bad[0].reason}).`;
      reason = 'unreadable';
    }
    this.main.appendChild(el('div', {class: 'empty', 'data-testid': 'empty', 'data-reason': reason}, text));
  }

  private async renderView(): Promise<void> {
    if (!this.index) return;
    const my = ++this.gen;
    this.renderNotice();
    if (!this.hasData()) {
      this.clearPanes();
      this.renderEmpty();
      this.statusRecord.textContent = this.statusView.textContent = '';
      this.errorEl.hidden = true;
      this.root.dataset.state = 'empty';
      return;
    }
    this.busy = true;
    this.root.dataset.state = 'loading';
    const spec = viewSpec(this.sel.view);
    try {
      const a = await this.load(this.sel.run, this.sel.step);
      let b = this.sel.compareRun && spec.compare.length ? await this.load(this.sel.compareRun, this.sel.compareStep) : null;
      if (my !== this.gen) return;
      this.current = a;
      this.renderControls();
      this.renderWeighting(spec, a);
      // a comparison never mixes weightings: A value-weighted, B without value norms is a message, not raw
      this.bMessage = null;
      const outcome = b && compareOutcome(this.weightingOf(spec), b, this.compareMode(spec));
      if (b && outcome) {
        if (outcome.error) throw new Error(outcome.text);
        this.bMessage = {title: `B: ${b.ref.run} @ ${b.ref.step}`, text: outcome.text};
        b = null;
      }
      const info = kindInfo(a.header, a.kind);
      this.find.setTokens(a.header.sequences[info.query] ?? []);
      this.statusView.textContent = '';
      this.statusRecord.textContent = [
        `${a.ref.run} · ${a.ref.tag} · example ${a.ref.example} · step ${a.ref.step}`,
        a.header.model ?? '',
        `${a.kind}: ${info.layers} layers × ${info.heads} heads`,
        `${a.header.sequences[info.query]?.length ?? 0} query × ${a.header.sequences[info.key]?.length ?? 0} key tokens`,
        b ? `vs ${b.ref.run} step ${b.ref.step}` : '',
      ]
        .filter(Boolean)
        .join('  ·  ');
      // a view that cannot show this record is not asked to: its reason is the error
      const unavailable = whyUnavailable(spec, a.header, a.kind);
      if (unavailable) throw new Error(unavailable);
      await spec.show(this.hostFor(spec, my), a, b, this.compareMode(spec));
      if (my !== this.gen) return;
      this.errorEl.hidden = true;
      this.root.dataset.state = 'ready';
    } catch (e) {
      if (my !== this.gen) return;
      // nothing of the previous selection stays drawn under the message
      this.clearPanes();
      this.weightingEl.hidden = true;
      this.fail(e);
    } finally {
      if (my === this.gen) this.busy = false;
    }
  }

  // ---------------------------------------------------------------------------------------------------
  // Step playback and export

  private togglePlay(): void {
    if (this.playTimer) {
      clearInterval(this.playTimer);
      this.playTimer = null;
      this.toolbar.setPlaying(false);
      this.root.dataset.playing = '';
      return;
    }
    const steps = this.steps();
    if (steps.length < 2) return;
    if (resolveStep(steps, this.sel.step) === latestStep(steps)) this.update({step: steps[0]});
    this.toolbar.setPlaying(true);
    this.root.dataset.playing = '1';
    this.playTimer = setInterval(() => {
      if (this.busy) return;
      const st = this.steps();
      const i = st.indexOf(resolveStep(st, this.sel.step) ?? NaN);
      if (i < 0 || i >= st.length - 1) {
        this.togglePlay();
        return;
      }
      this.update({step: stepKey(st, st[i + 1])});
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
    const spec = viewSpec(s.view);
    const what = spec.exportName ? spec.exportName(s, viewState(s, spec)) : `_L${s.layer}`;
    const name = safeName(`attention_${spec.name}_${s.run}_${this.current?.ref.step ?? ''}${what}`) + '.' + format;
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
