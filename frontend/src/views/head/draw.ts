// Drawing of the head view, DOM-free (screen, PNG and SVG export, and unit tests through the recording
// context): token columns, resting lines (one path per head and alpha), and a hovered token's lines and
// per-head bars. Line opacity (`opacityScale`): min(1, gain × weight / (active heads × norm)), norm = 1
// ("absolute", BertViz) or the query row's largest weight of that head ("per row": every row's strongest
// line is drawn at gain / active heads, so something is always visible at rest). Long records draw their
// lines at rest from each row's stored top-k, and a hovered token's exact row or column once it is fetched.
// B − A data is coloured by sign (absolute only).
import {DIVERGING, type Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {collectLines, collectSparseLines, drawLines, rowMaxima, type LineGeometry, type LineSet} from '../../draw/lines';
import {columnWidth, drawTokenColumn, highlightRow, type ColumnLayout} from '../../draw/tokens';
import {topkColumns, type TopKColumns} from '../../math';
import {fontFor, rowHeightFor} from '../common';
import type {HeadData} from './data';

const MID_WIDTH = 200;
const PAD_TOP = 6;

export interface HeadLayout {
  /** Query column (left) and key column (right). */
  L: ColumnLayout;
  Rt: ColumnLayout;
  rows: number;
  cols: number;
  width: number;
  height: number;
}

export function headLayout(d: HeadData, theme: Theme): HeadLayout {
  const rows = d.queryLabels.length;
  const cols = d.keyLabels.length;
  const rowH = rowHeightFor(Math.max(rows, cols));
  const font = fontFor(rowH);
  const lw = columnWidth(d.queryLabels, font, 60, 180);
  const rw = columnWidth(d.keyLabels, font, 60, 180);
  return {
    L: {x: 0, width: lw, align: 'right', top: PAD_TOP, rowH, font, color: theme.text},
    Rt: {x: lw + MID_WIDTH, width: rw, align: 'left', top: PAD_TOP, rowH, font, color: theme.text},
    rows,
    cols,
    width: lw + MID_WIDTH + rw,
    height: PAD_TOP * 2 + Math.max(rows, cols) * rowH,
  };
}

export interface HeadPaintOptions {
  theme: Theme;
  colorOf: (h: number, nHeads: number) => string;
  /** Heads drawn (a subset of data.heads). */
  active: readonly number[];
  /** Lines kept per query token and head at rest (0: all). */
  topk: number;
  /** Line opacity rule (see the top of this file). */
  opacity?: OpacityRule;
}

export type OpacityMode = 'abs' | 'row';
export interface OpacityRule {
  mode: OpacityMode;
  gain: number;
}

/** The default rule: per row for long inputs (past 512 tokens, or stored long), absolute (BertViz) otherwise. */
export function defaultOpacity(d: HeadData): OpacityRule {
  return {mode: d.sparse || Math.max(d.queryLabels.length, d.keyLabels.length) > 512 ? 'row' : 'abs', gain: 1};
}

/** alpha = min(1, gain · |w| / (activeHeads · norm)) as a scale on |w| / norm (B − A: relative to maxAbs). */
export function opacityScale(rule: OpacityRule, activeHeads: number, signedMax?: number): number {
  const a = Math.max(1, activeHeads) / Math.max(1e-6, rule.gain);
  return signedMax !== undefined ? 1 / (Math.max(signedMax, 1e-9) * a) : 1 / a;
}

export type HeadHover = {side: 'left' | 'right'; index: number};

/** Paints one HeadData; caches each head's resting line set until data, heads or top-k change. */
export class HeadPainter {
  private restCache = new Map<number, LineSet>();
  private norms = new Map<number, Float32Array>();
  /** Long records: each head's top-k grouped by key, for a key token's hover (built once per head). */
  private columns = new Map<number, TopKColumns>();
  private scratch = new Float32Array(0);
  /** The hovered token's exact lines per head (long records), once fetched. */
  private exact: {side: 'left' | 'right'; index: number; lines: Map<number, Float32Array>} | null = null;
  constructor(
    readonly data: HeadData,
    readonly layout: HeadLayout,
    private o: HeadPaintOptions,
  ) {}

  set(o: Partial<HeadPaintOptions>): void {
    if (
      (o.active && o.active.join() !== this.o.active.join()) ||
      (o.topk !== undefined && o.topk !== this.o.topk) ||
      (o.opacity && JSON.stringify(o.opacity) !== JSON.stringify(this.opacity))
    )
      this.restCache.clear();
    this.o = {...this.o, ...o};
  }

  get opacity(): OpacityRule {
    return this.o.opacity ?? defaultOpacity(this.data);
  }

  /** Exact lines of the hovered token (long records): drawn instead of its top-k once given. */
  setExact(side: 'left' | 'right', index: number, lines: Map<number, Float32Array>): void {
    this.exact = {side, index, lines};
  }

  private keyColumns(h: number): TopKColumns {
    let c = this.columns.get(h);
    if (!c) {
      const sp = this.data.sparse!(h);
      c = topkColumns(sp.index, sp.values, sp.q, sp.k, this.layout.cols);
      this.columns.set(h, c);
    }
    return c;
  }

  /** Per-row opacity divisors of head h (each row's largest weight), or undefined in absolute mode. */
  private rowNorm(h: number): Float32Array | undefined {
    if (this.opacity.mode !== 'row' || this.data.signed) return undefined;
    let n = this.norms.get(h);
    if (!n) {
      const sp = this.data.sparse?.(h);
      if (sp) {
        n = new Float32Array(sp.q);
        for (let i = 0; i < sp.q; i++) n[i] = sp.values[i * sp.k] > 0 ? sp.values[i * sp.k] : 1;
      } else n = rowMaxima(this.data.matrix(h), this.layout.rows, this.layout.cols);
      this.norms.set(h, n);
    }
    return n;
  }

  get active(): readonly number[] {
    return this.o.active;
  }

  color(h: number): string {
    return this.o.colorOf(h, this.data.nHeads);
  }

  private geometry(): LineGeometry {
    const {top, rowH} = this.layout.L;
    const y = (i: number) => top + (i + 0.5) * rowH;
    return {x1: this.layout.L.width, x2: this.layout.Rt.x, rowY: y, colY: y};
  }

  private scale(): number {
    return opacityScale(this.data.signed ? {mode: 'abs', gain: this.opacity.gain} : this.opacity, this.o.active.length, this.data.signed ? (this.data.maxAbs ?? 0) : undefined);
  }

  private restLines(h: number, sign: 0 | 1 | -1): LineSet {
    const key = h * 4 + sign + 1;
    let s = this.restCache.get(key);
    if (!s) {
      const sp = this.data.sparse?.(h);
      s = sp
        ? collectSparseLines(sp.index, sp.values, sp.q, sp.k, {scale: this.scale(), topk: this.o.topk, rowNorm: this.rowNorm(h)})
        : collectLines(this.data.matrix(h), this.layout.rows, this.layout.cols, {scale: this.scale(), topk: this.o.topk, sign, rowNorm: this.rowNorm(h)});
      this.restCache.set(key, s);
    }
    return s;
  }

  /**
   * The hovered token's weights of head h: its row (left, over the keys) or column (right, over the
   * queries), each divided by its query row's opacity norm; and whether they are exact. The line is a view of
   * one buffer, valid until the next call.
   */
  hoverLine(h: number, hv: HeadHover): {line: Float32Array; exact: boolean} {
    const d = this.data;
    const {rows, cols} = this.layout;
    const left = hv.side === 'left';
    const norm = this.rowNorm(h);
    const ex = this.exact && this.exact.side === hv.side && this.exact.index === hv.index ? this.exact.lines.get(h) : undefined;
    // one buffer for every call (a hover draws a line per head, one after another): no 32k allocation per head
    const len = left ? cols : rows;
    if (this.scratch.length < len) this.scratch = new Float32Array(Math.max(rows, cols));
    const line = this.scratch.subarray(0, len);
    let exact = true;
    if (ex) {
      if (ex.length !== len) line.fill(0);
      line.set(ex.subarray(0, len));
    } else if (d.sparse) {
      exact = false;
      const sp = d.sparse(h);
      line.fill(0);
      if (left) for (let r = 0; r < sp.k; r++) line[sp.index[hv.index * sp.k + r]] = sp.values[hv.index * sp.k + r];
      else {
        const c = this.keyColumns(h);
        for (let e = c.start[hv.index]; e < c.start[hv.index + 1]; e++) line[c.rows[e]] = c.values[e];
      }
    } else {
      const m = d.matrix(h);
      if (left) line.set(m.subarray(hv.index * cols, (hv.index + 1) * cols));
      else for (let t = 0; t < rows; t++) line[t] = m[t * cols + hv.index];
    }
    if (norm) {
      if (left) {
        const n = norm[hv.index];
        for (let t = 0; t < line.length; t++) line[t] /= n;
      } else for (let t = 0; t < line.length; t++) line[t] /= norm[t];
    }
    return {line, exact};
  }

  paintText(ctx: Ctx, y0 = -Infinity, y1 = Infinity): void {
    const {L, Rt} = this.layout;
    L.color = Rt.color = this.o.theme.text;
    drawTokenColumn(ctx, this.data.queryLabels, L, y0, y1);
    drawTokenColumn(ctx, this.data.keyLabels, Rt, y0, y1);
  }

  /** Resting lines of every active head; returns the number drawn. */
  paintRest(ctx: Ctx, y0 = -Infinity, y1 = Infinity, pairs = false): number {
    const g = this.geometry();
    // 2 px lines read better on short inputs; past 128 tokens the resting layer uses 1 px. On screen
    // (`pairs`) a 2 px line is two 1 px lines: software raster of thousands of stroked 2 px lines dominated
    // first paint (~600 ms for 7,000 lines at 128 tokens, ~60 ms as 1 px lines); exports stroke 2 px.
    const wide = this.layout.L.rowH >= 14 && this.layout.rows <= 128;
    ctx.lineWidth = wide && !pairs ? 2 : 1;
    const pair = wide && pairs;
    let drawn = 0;
    for (const h of this.o.active) {
      if (this.data.signed) {
        drawn += drawLines(ctx, this.restLines(h, 1), DIVERGING.pos, g, y0, y1, 1, pair);
        drawn += drawLines(ctx, this.restLines(h, -1), DIVERGING.neg, g, y0, y1, 1, pair);
      } else {
        drawn += drawLines(ctx, this.restLines(h, 0), this.color(h), g, y0, y1, 1, pair);
      }
    }
    return drawn;
  }

  /** The hovered token: its row highlighted, all its lines, per-head bars on the other column. */
  paintHover(ctx: Ctx, hv: HeadHover, y0 = -Infinity, y1 = Infinity): number {
    const d = this.data;
    const {L, Rt, rows, cols} = this.layout;
    const left = hv.side === 'left';
    const own = left ? L : Rt;
    const other = left ? Rt : L;
    highlightRow(ctx, own, hv.index, this.o.theme.highlight);
    const y = (i: number) => L.top + (i + 0.5) * L.rowH;
    // lines of the hovered token: from its own column (one end) to every token of the other
    const g: LineGeometry = left ? {x1: L.width, x2: Rt.x, rowY: () => y(hv.index), colY: y} : {x1: Rt.x, x2: L.width, rowY: () => y(hv.index), colY: y};
    const scale = this.scale();
    const heads = this.o.active;
    const bw = other.width / Math.max(1, heads.length);
    const n = left ? cols : rows;
    const first = Math.max(0, Math.floor((y0 - other.top) / other.rowH));
    const last = Math.min(n - 1, Math.ceil((y1 - other.top) / other.rowH));
    const barScale = d.signed ? 1 / Math.max(d.maxAbs ?? 0, 1e-9) : this.opacity.gain;
    let drawn = 0;
    let allExact = true;
    ctx.lineWidth = L.rowH >= 14 ? 2 : 1;
    heads.forEach((h, hi) => {
      const {line, exact} = this.hoverLine(h, hv);
      allExact &&= exact;
      // per-head bars on the other column: opacity = weight (BertViz), × gain (per row: relative to the row's largest);
      // the colour set only when it changes (a canvas parses every colour string it is given)
      const color = d.signed ? '' : this.color(h);
      let fill = '';
      for (let t = first; t <= last; t++) {
        const w = line[t];
        const alpha = Math.min(1, Math.abs(w) * barScale);
        if (alpha * 255 < 0.5) continue;
        ctx.globalAlpha = alpha;
        const c = d.signed ? (w >= 0 ? DIVERGING.pos : DIVERGING.neg) : color;
        if (c !== fill) ctx.fillStyle = fill = c;
        ctx.fillRect(other.x + hi * bw, other.top + t * other.rowH, bw, other.rowH);
      }
      ctx.globalAlpha = 1;
      if (d.signed) {
        drawn += drawLines(ctx, collectLines(line, 1, n, {scale, sign: 1}), DIVERGING.pos, g, y0, y1);
        drawn += drawLines(ctx, collectLines(line, 1, n, {scale, sign: -1}), DIVERGING.neg, g, y0, y1);
      } else {
        drawn += drawLines(ctx, collectLines(line, 1, n, {scale}), color, g, y0, y1);
      }
    });
    this.lastHoverExact = allExact;
    return drawn;
  }

  /** Whether the last hover drew exact lines for every head (dense records: always). */
  lastHoverExact = true;

  /** Everything at rest (the export). */
  paint(ctx: Ctx): number {
    this.paintText(ctx);
    return this.paintRest(ctx);
  }
}
