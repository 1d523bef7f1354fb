// Neuron view of a long record: one pinned query at a time (a column of 16k tokens is no list to hover).
// Its exact row comes from q/k (/window), shown whole as a profile; the keys are listed by weight, top
// first, a page at a time, each with its position, token (as text), weight, score q·k × scaling and its
// q ⊙ k cells (when q/k are loaded), and a jump to that cell in the matrix view. DOM-free drawing in
// `paintLongNeuron`; the list is DOM text.
import {alphaRamp, hexToRgb, type Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {drawRaster, paintSignedCells, raster, type Bucketer} from '../../draw/heatmap';
import {fitText} from '../../draw/tokens';
import {formatValue} from '../../math';
import type {QK, ResolvedLayerInfo} from '../../types';
import {clear, el, type ViewBase} from '../common';

export const PAGE = 20;
const tanhBucket: Bucketer = (v) => Math.round(255 * Math.tanh(Math.abs(v) / 4));

export interface LongNeuronData {
  layer: number;
  head: number;
  queryLabels: readonly string[];
  keyLabels: readonly string[];
  info: ResolvedLayerInfo;
  /** Exact rows can be rebuilt from q/k (else the stored top-k). */
  exact: boolean;
  loadRow: (i: number) => Promise<Float32Array>;
  /** q and k of the head (null when not logged). */
  loadQK: () => Promise<QK | null>;
  notes: string[];
}

/** Keys of a row by weight, largest first (ties by position); zero weights last, left out. */
export function rankKeys(row: Float32Array): Int32Array {
  const idx: number[] = [];
  for (let j = 0; j < row.length; j++) if (row[j] > 0) idx.push(j);
  idx.sort((a, b) => row[b] - row[a] || a - b);
  return Int32Array.from(idx);
}

/** The rank pages: [start, end) of page p of `n` ranked keys. */
export function pageRange(p: number, n: number, size = PAGE): [number, number] {
  const pages = Math.max(1, Math.ceil(n / size));
  const q = Math.max(0, Math.min(pages - 1, p));
  return [q * size, Math.min(n, (q + 1) * size)];
}

export interface LongNeuronViewOptions {
  theme: Theme;
  query: number | null;
  onPin?: (i: number | null) => void;
  /** Open the matrix view at cell (query i, key j). */
  onJump?: (i: number, j: number) => void;
}

export class LongNeuronView implements ViewBase {
  readonly el: HTMLElement;
  private input: HTMLInputElement;
  private notesEl: HTMLElement;
  private head: HTMLElement;
  private profile: HTMLCanvasElement;
  private list: HTMLElement;
  private pager: HTMLElement;
  private data: LongNeuronData | null = null;
  private theme: Theme;
  private query: number | null;
  private row: Float32Array | null = null;
  private ranked: Int32Array = new Int32Array(0);
  private page = 0;
  private qk: QK | null = null;
  private gen = 0;

  constructor(private opts: LongNeuronViewOptions) {
    this.theme = opts.theme;
    this.query = opts.query;
    this.input = el('input', {type: 'number', min: 0, step: 1, class: 'topk', 'data-testid': 'neuron-query', title: 'Query token (position)'});
    this.input.addEventListener('change', () => {
      const v = Math.floor(Number(this.input.value));
      if (Number.isFinite(v)) this.pin(v);
    });
    this.notesEl = el('div', {class: 'notes', 'data-testid': 'neuron-notes'});
    this.head = el('div', {class: 'readout', 'data-testid': 'neuron-long-query'});
    this.profile = el('canvas', {class: 'profile', 'data-testid': 'neuron-profile', width: 800, height: 60});
    this.list = el('div', {class: 'key-list', 'data-testid': 'neuron-keys'});
    this.pager = el('div', {class: 'view-toolbar'});
    this.el = el(
      'div',
      {class: 'neuron-view long', 'data-testid': 'neuron-view'},
      el('div', {class: 'view-toolbar'}, el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'Query token'}), this.input), el('span', {class: 'hint', text: 'A long record: pick a query (or find a token); its keys are listed by weight, exact from q/k.'})),
      this.notesEl,
      this.head,
      this.profile,
      this.pager,
      this.list,
    );
    this.el.dataset.long = '1';
  }

  setTheme(t: Theme): void {
    this.theme = t;
    this.render();
  }

  setData(d: LongNeuronData): void {
    this.data = d;
    this.qk = null;
    this.row = null;
    this.el.dataset.selected = '';
    const n = d.queryLabels.length;
    this.el.dataset.rows = String(n);
    this.el.dataset.cols = String(d.keyLabels.length);
    clear(this.notesEl);
    for (const t of d.notes) this.notesEl.appendChild(el('div', {class: 'note', text: t}));
    this.input.max = String(n - 1);
    const gen = ++this.gen;
    d.loadQK().then(
      (qk) => {
        if (gen !== this.gen) return;
        this.qk = qk;
        this.render();
      },
      () => undefined,
    );
    this.pin(this.query ?? n - 1, false);
  }

  /** Find-a-token: pin that query. */
  reveal(pos: number): void {
    this.pin(pos);
  }

  pin(i: number, emit = true): void {
    const d = this.data;
    if (!d) return;
    const q = Math.max(0, Math.min(d.queryLabels.length - 1, i));
    if (q === this.query && this.row && this.el.dataset.selected === String(q)) return; // e.g. a change on blur
    this.query = q;
    this.input.value = String(q);
    this.el.dataset.selected = String(q);
    this.page = 0;
    if (emit) this.opts.onPin?.(q);
    const gen = ++this.gen;
    this.row = null;
    this.render();
    d.loadRow(q).then(
      (row) => {
        if (gen !== this.gen) return;
        this.row = row;
        this.ranked = rankKeys(row);
        this.render();
      },
      (e) => {
        if (gen === this.gen) this.head.textContent = `Could not load query ${q}’s row: ${(e as Error).message}`;
      },
    );
  }

  dispose(): void {
    this.gen++;
  }

  exportSize(): {width: number; height: number} {
    return {width: 820, height: 120 + PAGE * 18};
  }

  paint(ctx: Ctx): void {
    if (this.data && this.query !== null) paintLongNeuron(ctx, this.data, this.query, this.row, this.ranked, this.page, this.qk, this.theme);
  }

  private render(): void {
    const d = this.data;
    const i = this.query;
    if (!d || i === null) return;
    const ds = this.el.dataset;
    this.head.textContent = `Layer ${d.layer}, head ${d.head} · query ${i} “${d.queryLabels[i] ?? ''}” · ${this.row ? `${d.exact ? 'exact row from q/k' : 'stored top-k of the row'}, ${this.ranked.length} keys with weight > 0` : 'loading its row…'}`;
    const ctx = this.profile.getContext('2d');
    if (ctx) {
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, this.profile.width, this.profile.height);
      paintProfile(ctx, this.row, 0, 0, this.profile.width, this.profile.height, this.theme);
    }
    clear(this.list);
    clear(this.pager);
    if (!this.row) return;
    const [a, b] = pageRange(this.page, this.ranked.length);
    const pages = Math.max(1, Math.ceil(this.ranked.length / PAGE));
    const btn = (text: string, testid: string, to: number, off: boolean) => {
      const x = el('button', {type: 'button', 'data-testid': testid, text, disabled: off});
      x.addEventListener('click', () => {
        this.page = to;
        this.render();
      });
      return x;
    };
    this.pager.append(btn('‹ previous', 'neuron-page-prev', this.page - 1, this.page === 0), el('span', {class: 'hint', 'data-testid': 'neuron-page', text: `keys ${a + 1}–${b} of ${this.ranked.length} (page ${this.page + 1} / ${pages})`}), btn('next ›', 'neuron-page-next', this.page + 1, this.page >= pages - 1));
    const scores = this.scores(i, this.ranked.subarray(a, b));
    for (let r = a; r < b; r++) {
      const j = this.ranked[r];
      const jump = el('button', {type: 'button', class: 'find-match', 'data-testid': `neuron-jump-${r}`, text: 'matrix ↗', title: `Show cell (${i}, ${j}) in the matrix view`});
      jump.addEventListener('click', () => this.opts.onJump?.(i, j));
      const s = scores?.[r - a];
      this.list.appendChild(
        el(
          'div',
          {class: 'key-row', 'data-testid': `neuron-key-${r}`, 'data-key': j, 'data-weight': this.row[j]},
          el('span', {class: 'rank', text: `${r + 1}.`}),
          el('span', {class: 'pos', text: `#${j}`}),
          el('span', {class: 'tok', text: d.keyLabels[j] ?? ''}),
          el('span', {class: 'w', text: `weight ${formatValue(this.row[j])}`}),
          el('span', {class: 'w', text: s === undefined ? '' : `q·k × scale ${formatValue(s)}`}),
          jump,
        ),
      );
    }
    ds.keysListed = String(b - a);
    ds.topKey = this.ranked.length ? String(this.ranked[0]) : '';
  }

  /** q_i · k_j × scaling (before softcap) of the listed keys, when q/k are loaded. */
  private scores(i: number, keys: Int32Array): number[] | null {
    const qk = this.qk;
    const d = this.data!;
    if (!qk) return null;
    const D = qk.d;
    return Array.from(keys, (j) => {
      let s = 0;
      for (let t = 0; t < D; t++) s += qk.queries[i * D + t] * qk.keys[j * D + t];
      return s * d.info.scaling;
    });
  }
}

/** The whole row as bars (a pixel column shows the largest weight it covers). */
export function paintProfile(ctx: Ctx, row: Float32Array | null, x: number, y: number, w: number, h: number, t: Theme): void {
  ctx.strokeStyle = t.border;
  ctx.lineWidth = 1;
  ctx.strokeRect(x + 0.5, y + 0.5, w - 1, h - 1);
  if (!row || !row.length) return;
  let mx = 0;
  const col = new Float32Array(w);
  for (let p = 0; p < w; p++) {
    const a = Math.floor((p * row.length) / w);
    const b = Math.max(a + 1, Math.floor(((p + 1) * row.length) / w));
    let m = 0;
    for (let j = a; j < b; j++) m = Math.max(m, row[j]);
    col[p] = m;
    mx = Math.max(mx, m);
  }
  ctx.fillStyle = t.attn;
  for (let p = 0; p < w; p++) {
    const bh = mx > 0 ? (col[p] / mx) * (h - 2) : 0;
    if (bh >= 0.5) ctx.fillRect(x + p, y + h - 1 - bh, 1, bh);
  }
}

/** The export: query, profile and the shown page of keys (with q ⊙ k cells when q/k are loaded). */
export function paintLongNeuron(ctx: Ctx, d: LongNeuronData, i: number, row: Float32Array | null, ranked: Int32Array, page: number, qk: QK | null, t: Theme): void {
  ctx.font = 'bold 13px Roboto, Arial, sans-serif';
  ctx.fillStyle = t.text;
  ctx.textBaseline = 'middle';
  ctx.textAlign = 'left';
  ctx.fillText(fitText(ctx, `Layer ${d.layer}, head ${d.head} · query ${i} “${d.queryLabels[i] ?? ''}”`, 800), 4, 12);
  paintProfile(ctx, row, 4, 28, 800, 60, t);
  if (!row) return;
  const [a, b] = pageRange(page, ranked.length);
  ctx.font = '12px Roboto, Arial, sans-serif';
  const pos = alphaRamp(hexToRgb(t.pos));
  const neg = alphaRamp(hexToRgb(t.neg));
  for (let r = a; r < b; r++) {
    const j = ranked[r];
    const y = 110 + (r - a) * 18;
    ctx.fillStyle = t.text;
    ctx.fillText(fitText(ctx, `${r + 1}. #${j} ${d.keyLabels[j] ?? ''}`, 300), 4, y);
    ctx.fillText(`weight ${formatValue(row[j])}`, 310, y);
    if (qk) {
      const D = qk.d;
      const prod = new Float32Array(D);
      for (let c = 0; c < D; c++) prod[c] = qk.queries[i * D + c] * qk.keys[j * D + c];
      drawRaster(ctx, raster(paintSignedCells(prod, 1, D, pos, neg, tanhBucket), D, 1), 420, y - 7, 380, 14);
    }
  }
}
