// Neuron view (BertViz's neuron view): for one layer and head, how attention is computed from the query and
// key vectors. Hover a query token (click to pin it): its query vector q, every key vector k, the
// elementwise q × k, the scaled dot product and the softmax (recomputed from q/k, causal / sliding-window
// masks applied), next to the stored attention. Positive values in one colour, negative in the other, with
// opacity tanh(|v| / 4). Collapsed, it shows the head's attention lines only. Drawing: NeuronPainter.
import type {Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {rowAt} from '../../draw/tokens';
import {el} from '../common';
import {CanvasView} from '../canvas-view';
import type {NeuronData} from './data';
import {HEAD, NeuronPainter, neuronLayout} from './draw';

export interface NeuronViewOptions {
  theme: Theme;
  collapsed: boolean;
  query: number | null;
  onPin?: (row: number | null) => void;
  onCollapsed?: (c: boolean) => void;
  onGoToStep?: (step: number) => void;
}

export class NeuronView extends CanvasView {
  readonly el: HTMLElement;
  private bar: HTMLElement;
  private notesEl: HTMLElement;
  private data: NeuronData | null = null;
  private painter: NeuronPainter | null = null;
  private theme: Theme;
  private collapsed: boolean;
  private pinned: number | null;
  private hover: number | null = null;

  constructor(private opts: NeuronViewOptions) {
    super(2, undefined, [], [1]);
    this.theme = opts.theme;
    this.collapsed = opts.collapsed;
    this.pinned = opts.query;
    this.bar = el('div', {class: 'view-toolbar'});
    this.notesEl = el('div', {class: 'notes', 'data-testid': 'neuron-notes'});
    this.el = el('div', {class: 'neuron-view', 'data-testid': 'neuron-view'}, this.bar, this.notesEl, this.stack.root);
    const top = this.stack.top;
    top.addEventListener('mousemove', (e) => this.onMove(e));
    top.addEventListener('mouseleave', () => this.setHover(null));
    top.addEventListener('click', (e) => this.onClick(e));
  }

  setTheme(t: Theme): void {
    this.theme = t;
    this.painter?.setTheme(t);
    this.redraw();
  }

  setData(d: NeuronData): void {
    this.data = d;
    this.hover = null;
    if (this.pinned !== null && this.pinned >= d.queryLabels.length) this.pinned = null;
    this.renderBar();
    this.renderNotes();
    this.layout();
    this.redraw();
  }

  private renderBar(): void {
    const b = this.bar;
    while (b.firstChild) b.removeChild(b.firstChild);
    const btn = el('button', {
      type: 'button',
      'data-testid': 'neuron-toggle',
      text: this.collapsed ? 'Expand: show q, k, q × k, q · k, softmax' : 'Collapse: attention lines only',
    });
    btn.addEventListener('click', () => {
      this.collapsed = !this.collapsed;
      this.opts.onCollapsed?.(this.collapsed);
      this.renderBar();
      this.layout();
      this.redraw();
    });
    b.appendChild(btn);
    b.appendChild(el('span', {class: 'hint', text: 'Hover a query token on the left; click to pin it.'}));
  }

  private renderNotes(): void {
    const d = this.data!;
    const n = this.notesEl;
    while (n.firstChild) n.removeChild(n.firstChild);
    const info = d.info;
    const add = (text: string, cls = 'note', testid?: string) => n.appendChild(el('div', {class: cls, text, 'data-testid': testid}));
    if (d.missing) {
      const box = el('div', {class: 'note warn', 'data-testid': 'qk-missing'}, d.missing.message + ' ');
      if (d.missing.nearestStep !== null) {
        const go = el('button', {type: 'button', 'data-testid': 'qk-nearest', text: `Go to step ${d.missing.nearestStep}`});
        const s = d.missing.nearestStep;
        go.addEventListener('click', () => this.opts.onGoToStep?.(s));
        box.appendChild(go);
      }
      n.appendChild(box);
    }
    if (info.position_bias || info.softcap != null) {
      const what = [info.position_bias ? 'a position bias' : '', info.softcap != null ? `a softcap of ${info.softcap}` : ''].filter(Boolean).join(' and ');
      add(
        `This layer adds ${what} to its attention scores. The scores and softmax here are recomputed from q and k before that (pre-bias / pre-softcap), so they may differ from the stored attention.`,
        'note warn',
        'neuron-bias-note',
      );
    }
    const masks = [info.causal && d.selfAttention ? 'causal mask' : '', info.sliding_window != null && d.selfAttention ? `sliding window of ${info.sliding_window} (keys i − j < ${info.sliding_window})` : '']
      .filter(Boolean)
      .join(', ');
    add(`Scores = q · k × ${fmt(info.scaling)}${masks ? `; ${masks} applied` : ''}. Filled bars: recomputed softmax; outlined: stored attention.`, 'note');
    if (info.assumed.length) {
      add(
        `The record does not give this layer's ${info.assumed.join(' or ')}: assumed ${info.assumed.includes('scaling') ? '1/√d scaling' : ''}${info.assumed.length > 1 ? ' and ' : ''}${info.assumed.includes('causal') ? (info.causal ? 'a causal mask' : 'no causal mask') : ''}; the recomputed softmax may differ from the stored attention.`,
        'note warn',
        'neuron-assumed-note',
      );
    }
    for (const t of d.notes ?? []) add(t);
  }

  private layout(): void {
    const d = this.data!;
    const L = neuronLayout(d, this.theme, this.collapsed);
    this.painter = new NeuronPainter(d, L, this.theme);
    this.stack.resize(L.width, L.height);
    const ds = this.el.dataset;
    ds.rows = String(L.rows);
    ds.cols = String(L.cols);
    ds.rowHeight = String(L.L.rowH);
    ds.top = String(HEAD);
    ds.leftX = String(Math.round(L.L.width / 2));
    ds.expanded = L.expanded ? '1' : '0';
  }

  private selected(): number | null {
    return this.hover ?? this.pinned;
  }

  private setHover(r: number | null): void {
    if (r === this.hover) return;
    this.hover = r;
    this.drawDynamic();
  }

  private rowUnder(e: MouseEvent): number {
    const p = this.painter;
    if (!p) return -1;
    const {x, y} = this.stack.toContent(e);
    return x < p.layout.L.width ? rowAt(p.layout.L, p.layout.rows, y) : -1;
  }

  private onMove(e: MouseEvent): void {
    const r = this.rowUnder(e);
    this.setHover(r >= 0 ? r : null);
  }

  private onClick(e: MouseEvent): void {
    const r = this.rowUnder(e);
    if (r < 0) return;
    this.pinned = this.pinned === r ? null : r;
    this.opts.onPin?.(this.pinned);
    this.drawDynamic();
  }

  protected redraw(): void {
    if (!this.painter) return;
    // static (tokens, q and k) on top, so highlights drawn below never cover the text
    this.painter.paintStatic(this.stack.ctx(1), this.stack.y0, this.stack.y1);
    this.drawDynamic();
  }

  private drawDynamic(): void {
    if (!this.painter) return;
    const sel = this.selected();
    this.el.dataset.selected = sel === null ? '' : String(sel);
    const r = this.painter.paintDynamic(this.stack.ctx(0), sel, this.stack.y0, this.stack.y1);
    this.el.dataset.linesDrawn = String(r.lines);
    if (r.maxDiff !== null) this.el.dataset.recomputedMaxDiff = r.maxDiff.toFixed(4);
  }

  paint(ctx: Ctx): void {
    this.painter?.paint(ctx, this.selected());
  }
}

function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toPrecision(4);
}
