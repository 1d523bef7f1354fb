// Attention rollout (Abnar & Zuidema 2020): a tokens × tokens heatmap of how much each input token (column)
// contributes to each position (row) after the last layer, following attention through the residual stream,
// with the residual weight and the head fusion as controls. Hovering a row draws that query's rollout over
// the input tokens as bars under the heatmap (click pins the row). Knows nothing about HTTP.
import type {Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {cellAt, gridHeight} from '../../draw/grid';
import {FUSIONS, type Fusion} from '../../types';
import {clear, el} from '../common';
import {CanvasView} from '../canvas-view';
import type {RolloutData} from './data';
import {RolloutPainter, rolloutLayout} from './draw';

export interface RolloutViewOptions {
  theme: Theme;
  residual: number;
  fusion: Fusion;
  onResidual?: (r: number) => void;
  onFusion?: (f: Fusion) => void;
}

export const ROLLOUT_HELP =
  'Rollout R = Â_L ··· Â_1 with Â_l = residual·I + (1 − residual)·A_l, A_l the heads of layer l fused by mean / max / min, rows renormalised to sum to 1 (Abnar & Zuidema 2020; residual 0.5 is the paper’s). R[i, j]: how much input token j contributes to position i after the last layer. Colour: √ scale.';

export class RolloutView extends CanvasView {
  readonly el: HTMLElement;
  private theme: Theme;
  private data: RolloutData | null = null;
  private painter: RolloutPainter | null = null;
  private toolbar: HTMLElement;
  private notesEl: HTMLElement;
  private readout: HTMLElement;
  private residualInput: HTMLInputElement;
  private residualLabel: HTMLElement;
  private fusionSel: HTMLSelectElement;
  private hover: {row: number; col: number} | null = null;
  private pinned: number | null = null;

  constructor(private opts: RolloutViewOptions) {
    super(2, 'rollout-canvas', [], [0]);
    this.theme = opts.theme;
    this.residualInput = el('input', {type: 'range', min: 0, max: 1, step: 0.05, value: opts.residual, 'data-testid': 'rollout-residual', title: 'Residual weight: Â = residual·I + (1 − residual)·A'});
    this.residualLabel = el('span', {class: 'step-label', 'data-testid': 'rollout-residual-value', text: opts.residual.toFixed(2)});
    this.fusionSel = el('select', {'data-testid': 'rollout-fusion', title: 'How the heads of a layer are fused'});
    for (const f of FUSIONS) this.fusionSel.appendChild(el('option', {value: f, text: f}));
    this.fusionSel.value = opts.fusion;
    this.residualInput.addEventListener('input', () => (this.residualLabel.textContent = Number(this.residualInput.value).toFixed(2)));
    this.residualInput.addEventListener('change', () => this.opts.onResidual?.(Math.round(Number(this.residualInput.value) * 100) / 100));
    this.fusionSel.addEventListener('change', () => this.opts.onFusion?.(this.fusionSel.value as Fusion));
    this.toolbar = el(
      'div',
      {class: 'view-toolbar'},
      el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'Residual'}), this.residualInput, this.residualLabel),
      el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'Head fusion'}), this.fusionSel),
      el('span', {class: 'hint', text: 'Hover a row (query token) for its rollout over the input tokens; click to pin it.'}),
    );
    this.notesEl = el('div', {class: 'notes', 'data-testid': 'rollout-notes'});
    this.readout = el('div', {class: 'readout', 'data-testid': 'rollout-readout'});
    this.el = el(
      'div',
      {class: 'rollout-view', 'data-testid': 'rollout-view'},
      this.toolbar,
      el('div', {class: 'legend', 'data-testid': 'rollout-help', title: ROLLOUT_HELP, text: ROLLOUT_HELP}),
      this.notesEl,
      this.readout,
      this.stack.root,
    );
    const top = this.stack.top;
    top.addEventListener('mousemove', (e) => this.onMove(e));
    top.addEventListener('mouseleave', () => this.setHover(null));
    top.addEventListener('click', (e) => this.onClick(e));
  }

  setTheme(t: Theme): void {
    this.theme = t;
    if (this.painter) this.painter.theme = t;
    this.redraw();
  }

  setData(d: RolloutData): void {
    const same = this.data && this.data.rows === d.rows && this.data.cols === d.cols;
    this.data = d;
    if (!same) {
      this.pinned = null;
      this.hover = null;
    }
    this.residualInput.value = String(d.residual);
    this.residualLabel.textContent = d.residual.toFixed(2);
    this.fusionSel.value = d.fusion;
    clear(this.notesEl);
    for (const n of d.notes) this.notesEl.appendChild(el('div', {class: 'note', text: n}));
    const total = (this.el.closest('.panes') as HTMLElement | null)?.clientWidth || document.documentElement.clientWidth || 1000;
    const L = rolloutLayout(d, total);
    this.painter = new RolloutPainter(d, L, this.theme);
    this.stack.resize(L.width, L.height);
    const ds = this.stack.root.dataset;
    ds.rows = String(d.rows);
    ds.cols = String(d.cols);
    ds.left = String(L.G.x);
    ds.top = String(L.G.y);
    ds.cell = String(L.G.cw);
    this.redraw();
  }

  protected redraw(): void {
    const p = this.painter;
    if (!p) return;
    const cells = p.paintBase(this.stack.ctx(0), this.pinned);
    this.stack.root.dataset.cells = String(cells);
    this.el.dataset.cells = String(cells);
    this.drawOverlay();
  }

  paint(ctx: Ctx): void {
    this.painter?.paintBase(ctx, this.pinned);
  }

  private drawOverlay(): void {
    const ctx = this.stack.ctx(1);
    const p = this.painter;
    const ds = this.stack.root.dataset;
    if (!p) return;
    const row = this.hover?.row ?? this.pinned;
    const col = this.hover?.col ?? -1;
    ds.hover = this.hover ? String(this.hover.row) : '';
    ds.pinned = this.pinned === null ? '' : String(this.pinned);
    const text = p.describe(row, col);
    this.readout.textContent = text;
    if (row === null) return;
    p.paintOverlay(ctx, row, col);
    this.stack.top.title = text;
  }

  private setHover(h: {row: number; col: number} | null): void {
    if (h?.row === this.hover?.row && h?.col === this.hover?.col) return;
    this.hover = h;
    this.drawOverlay();
  }

  private onMove(e: MouseEvent): void {
    if (!this.painter) return;
    const G = this.painter.layout.G;
    const p = this.stack.toContent(e);
    const c = cellAt(G, p.x, p.y);
    if (c) {
      this.setHover(c);
      return;
    }
    // the label column: the row without a key
    const inLabels = p.x >= 0 && p.x < G.x && p.y >= G.y && p.y < G.y + gridHeight(G);
    this.setHover(inLabels ? {row: Math.floor((p.y - G.y) / G.ch), col: -1} : null);
  }

  private onClick(e: MouseEvent): void {
    if (!this.painter) return;
    const G = this.painter.layout.G;
    const p = this.stack.toContent(e);
    if (p.y < G.y || p.y >= G.y + gridHeight(G)) return;
    const row = Math.floor((p.y - G.y) / G.ch);
    this.pinned = this.pinned === row ? null : row;
    this.redraw();
  }
}
