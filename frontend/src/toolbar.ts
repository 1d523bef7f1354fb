// The tab's toolbar: record selectors (run, tag, example, kind), the view buttons (from the registry; one
// that cannot show the record is disabled with its spec's reason), the
// controls a view's spec asks for, the step slider and playback, comparison, export. It shows a selection
// and reports changes as selection patches; it loads nothing.
import {latestStep, resolveStep, stepKey} from './math';
import type {CompareMode, Selection} from './state';
import {SENTENCE_FILTER_LABELS, SENTENCE_FILTERS, type SentenceFilter} from './tokens';
import {KINDS, WEIGHTINGS, type IndexExample, type IndexResponse, type Kind, type Weighting} from './types';
import {WEIGHTING_HELP, WEIGHTING_LABELS} from './weighting';
import {clear, el} from './views/common';
import {VIEW_SPECS} from './views/registry';
import {whyUnavailable, type Control, type ViewSpec} from './views/spec';

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

function labelled(label: string, control: HTMLElement): HTMLElement {
  return el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: label}), control);
}

export function findExample(index: IndexResponse, run: string, tag: string, example: string): IndexExample | undefined {
  return index.runs.find((r) => r.run === run)?.tags.find((t) => t.tag === tag)?.examples.find((e) => e.example === example);
}

const COMPARE_LABELS: Record<CompareMode, string> = {side: 'side by side', diff: 'difference B − A'};
/** Selector entries past this are not listed (a record claiming more is refused when loaded). */
const MAX_OPTIONS = 4096;

/** The weighting toggle as the shell decided it for the shown record: its value and why it is disabled (null: enabled). */
export interface WeightingChoice {
  value: Weighting;
  disabled: string | null;
}

export interface ToolbarEvents {
  /** A selection change the shell applies (and redraws). */
  change(patch: Partial<Selection>): void;
  /** Top-k changed: the shell passes it to the panes without a reload. */
  topk(k: number): void;
  play(): void;
  export(format: 'png' | 'svg'): void;
}

export class Toolbar {
  readonly el: HTMLElement;
  private readonly c: Record<string, HTMLSelectElement>;
  private readonly stepSlider: HTMLInputElement;
  private readonly stepLabel: HTMLElement;
  private readonly playBtn: HTMLButtonElement;
  private readonly hideSpecial: HTMLInputElement;
  private readonly merge: HTMLInputElement;
  private readonly topk: HTMLInputElement;
  private readonly viewBtns = new Map<string, HTMLButtonElement>();
  /** The rows a view may show or hide (its spec's `controls`). */
  private readonly controlRows: Record<Control, HTMLElement[]>;
  private readonly cstepRow: HTMLElement;
  private readonly cmodeRow: HTMLElement;
  private readonly compareNote: HTMLElement;
  /** Steps of the shown example (what the slider indexes). */
  private steps: number[] = [];

  constructor(ev: ToolbarEvents) {
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
      weighting: sel('weighting', WEIGHTING_HELP),
    };
    this.c.crun.dataset.keepEnabled = '1';
    this.stepSlider = el('input', {type: 'range', min: 0, max: 0, step: 1, value: 0, 'data-testid': 'step-slider', title: 'Checkpoint (step)'});
    this.stepLabel = el('span', {class: 'step-label', 'data-testid': 'step-label'});
    this.playBtn = el('button', {type: 'button', class: 'play', 'data-testid': 'play', title: 'Play through the steps', text: '▶'});
    this.hideSpecial = el('input', {type: 'checkbox', 'data-testid': 'hide-special'});
    this.merge = el('input', {type: 'checkbox', 'data-testid': 'merge-words'});
    this.topk = el('input', {type: 'number', min: 0, max: 4096, step: 1, value: 0, class: 'topk', 'data-testid': 'topk', title: 'Lines kept per query token and head at rest (0: all)'});
    for (const spec of VIEW_SPECS) {
      const b = el('button', {type: 'button', class: 'view-btn', 'data-testid': `view-${spec.name}`, 'data-view': spec.name, text: spec.label});
      b.addEventListener('click', () => ev.change({view: spec.name}));
      this.viewBtns.set(spec.name, b);
    }
    this.compareNote = el('span', {class: 'hint', 'data-testid': 'compare-unsupported', text: 'Comparison is not available in this view.'});
    const exportPng = el('button', {type: 'button', 'data-testid': 'export-png', text: 'PNG', title: 'Export the current view as PNG'});
    const exportSvg = el('button', {type: 'button', 'data-testid': 'export-svg', text: 'SVG', title: 'Export the current view as SVG'});
    this.cstepRow = labelled('step', this.c.cstep);
    this.cmodeRow = labelled('mode', this.c.cmode);
    this.controlRows = {
      layer: [labelled('Layer', this.c.layer)],
      neuronHead: [labelled('Head', this.c.head)],
      topk: [labelled('Top-k', this.topk)],
      weighting: [labelled('Weighting', this.c.weighting)],
      filter: [labelled('Attention', this.c.filter)],
      tokens: [
        el('label', {class: 'ctl check'}, this.hideSpecial, el('span', {text: 'hide special tokens'})),
        el('label', {class: 'ctl check'}, this.merge, el('span', {text: 'merge subwords into words'})),
      ],
    };
    this.el = el(
      'div',
      {class: 'controls', 'data-testid': 'controls'},
      el(
        'div',
        {class: 'row'},
        labelled('Run', this.c.run),
        labelled('Tag', this.c.tag),
        labelled('Example', this.c.example),
        labelled('Kind', this.c.kind),
        ...this.controlRows.layer,
        ...this.controlRows.neuronHead,
        ...this.controlRows.weighting,
        el('div', {class: 'views', role: 'tablist'}, ...this.viewBtns.values()),
      ),
      el(
        'div',
        {class: 'row'},
        el('span', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'Step'}), this.playBtn, this.stepSlider, this.stepLabel),
        labelled('Compare with', this.c.crun),
        this.cstepRow,
        this.cmodeRow,
        this.compareNote,
      ),
      el(
        'div',
        {class: 'row'},
        ...this.controlRows.filter,
        ...this.controlRows.tokens,
        ...this.controlRows.topk,
        el('span', {class: 'ctl export'}, el('span', {class: 'ctl-label', text: 'Export'}), exportPng, exportSvg),
      ),
    );
    const c = this.c;
    c.run.addEventListener('change', () => ev.change({run: c.run.value, step: null, compareRun: ''}));
    c.tag.addEventListener('change', () => ev.change({tag: c.tag.value, step: null}));
    // what a view keeps that these changes invalidate (a pinned token, an open detail) its spec resets
    c.example.addEventListener('change', () => ev.change({example: c.example.value, step: null}));
    c.kind.addEventListener('change', () => ev.change({kind: c.kind.value as Kind}));
    c.layer.addEventListener('change', () => ev.change({layer: Number(c.layer.value)}));
    c.head.addEventListener('change', () => ev.change({neuronHead: Number(c.head.value)}));
    c.filter.addEventListener('change', () => ev.change({filter: c.filter.value as SentenceFilter}));
    c.crun.addEventListener('change', () => ev.change({compareRun: c.crun.value, compareStep: null}));
    c.cstep.addEventListener('change', () => ev.change({compareStep: c.cstep.value === '' ? null : Number(c.cstep.value)}));
    c.cmode.addEventListener('change', () => ev.change({compareMode: c.cmode.value as CompareMode}));
    c.weighting.addEventListener('change', () => ev.change({weighting: c.weighting.value === 'value' ? 'value' : 'weights'}));
    this.hideSpecial.addEventListener('change', () => ev.change({hideSpecial: this.hideSpecial.checked}));
    this.merge.addEventListener('change', () => ev.change({merge: this.merge.checked}));
    this.topk.addEventListener('change', () => ev.topk(Math.max(0, Math.floor(Number(this.topk.value) || 0))));
    this.stepSlider.addEventListener('input', () => {
      const s = this.steps[Number(this.stepSlider.value)];
      if (s !== undefined) ev.change({step: stepKey(this.steps, s)});
    });
    this.playBtn.addEventListener('click', () => ev.play());
    exportPng.addEventListener('click', () => ev.export('png'));
    exportSvg.addEventListener('click', () => ev.export('svg'));
  }

  setPlaying(on: boolean): void {
    this.playBtn.textContent = on ? '⏸' : '▶';
  }

  /**
   * Shows `sel` (valid for `idx`) with the controls and comparison modes `spec` asks for; the weighting toggle
   * as `weighting` says (disabled with its reason as the tooltip and `data-unavailable`).
   */
  render(idx: IndexResponse, s: Selection, spec: ViewSpec, mode: CompareMode, weighting: WeightingChoice = {value: s.weighting, disabled: null}): void {
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
    const nums = (n: number): Opt[] => Array.from({length: Math.min(Number.isSafeInteger(n) ? Math.max(0, n) : 0, MAX_OPTIONS)}, (_, i) => [String(i), String(i)]);
    // a record of some layers / heads (log_attention(layers=, heads=), include_layers) names the model's
    const named = (opts: Opt[], ids?: number[]): Opt[] => opts.map(([v, l]) => [v, String(ids?.[Number(v)] ?? l)]);
    setOptions(this.c.layer, named(nums(info?.layers ?? 0), info?.layer_ids), String(s.layer));
    setOptions(this.c.head, named(nums(info?.heads ?? 0), info?.head_ids), String(s.neuronHead));
    const hasPair = header?.sentence_b_start != null;
    setOptions(this.c.filter, SENTENCE_FILTERS.map((f) => [f, SENTENCE_FILTER_LABELS[f]]), s.filter);
    for (const [ctl, rows] of Object.entries(this.controlRows) as [Control, HTMLElement[]][]) {
      const shown = spec.controls.includes(ctl) && (ctl !== 'filter' || hasPair);
      for (const r of rows) r.hidden = !shown;
    }
    const wsel = this.c.weighting;
    setOptions(wsel, WEIGHTINGS.map((w): Opt => [w, WEIGHTING_LABELS[w]]), weighting.value);
    wsel.disabled = !!weighting.disabled;
    wsel.title = weighting.disabled ?? WEIGHTING_HELP;
    if (weighting.disabled) wsel.dataset.unavailable = weighting.disabled;
    else delete wsel.dataset.unavailable;
    this.hideSpecial.checked = s.hideSpecial;
    this.merge.checked = s.merge;
    this.topk.value = String(s.topk);
    const steps = (this.steps = ex?.steps ?? []);
    this.stepSlider.max = String(Math.max(0, steps.length - 1));
    const step = resolveStep(steps, s.step) ?? NaN;
    this.stepSlider.value = String(Math.max(0, steps.indexOf(step)));
    this.stepSlider.disabled = steps.length <= 1;
    this.playBtn.disabled = steps.length <= 1;
    this.stepLabel.textContent = steps.length ? `${step} (${steps.indexOf(step) + 1}/${steps.length})` : '';
    // comparison: runs holding the same tag and example, in the modes the view's spec offers
    const cruns: Opt[] = [['', '(none)']];
    for (const r of idx.runs) if (findExample(idx, r.run, s.tag, s.example)) cruns.push([r.run, r.run]);
    setOptions(this.c.crun, cruns, s.compareRun);
    const cex = s.compareRun ? findExample(idx, s.compareRun, s.tag, s.example) : undefined;
    const csteps = cex?.steps ?? [];
    const clatest = latestStep(csteps);
    setOptions(this.c.cstep, [['', `latest${clatest !== undefined ? ` (${clatest})` : ''}`], ...csteps.map((x): Opt => [String(x), String(x)])], s.compareStep === null ? '' : String(s.compareStep));
    this.c.cstep.disabled = !s.compareRun;
    const canCompare = spec.compare.length > 0;
    setOptions(this.c.cmode, (canCompare ? spec.compare : [mode]).map((m): Opt => [m, COMPARE_LABELS[m]]), mode);
    this.c.cmode.disabled = !s.compareRun || spec.compare.length < 2;
    this.cstepRow.hidden = this.cmodeRow.hidden = !s.compareRun || !canCompare;
    this.c.crun.disabled = !canCompare;
    this.compareNote.hidden = canCompare;
    for (const v of VIEW_SPECS) {
      const b = this.viewBtns.get(v.name)!;
      const on = v.name === spec.name;
      b.classList.toggle('on', on);
      b.setAttribute('aria-selected', on ? 'true' : 'false');
      // a view that cannot show this record is disabled, its reason the button's tooltip
      const why = whyUnavailable(v, header, s.kind);
      b.disabled = !!why;
      b.title = why ?? '';
      if (why) b.dataset.unavailable = why;
      else delete b.dataset.unavailable;
    }
  }
}
