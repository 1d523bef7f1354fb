// Drawing of the head view, DOM-free (screen, PNG and SVG export, and unit tests through the recording
// context): token columns, resting lines (one path per head and alpha), and a hovered token's lines and
// per-head bars. Line opacity = weight / number of active heads; B − A data is coloured by sign.
import {DIVERGING, type Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {collectLines, drawLines, type LineGeometry, type LineSet} from '../../draw/lines';
import {columnWidth, drawTokenColumn, highlightRow, type ColumnLayout} from '../../draw/tokens';
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
}

export type HeadHover = {side: 'left' | 'right'; index: number};

/** Paints one HeadData; caches each head's resting line set until data, heads or top-k change. */
export class HeadPainter {
  private restCache = new Map<number, LineSet>();
  constructor(
    readonly data: HeadData,
    readonly layout: HeadLayout,
    private o: HeadPaintOptions,
  ) {}

  set(o: Partial<HeadPaintOptions>): void {
    if ((o.active && o.active.join() !== this.o.active.join()) || (o.topk !== undefined && o.topk !== this.o.topk)) this.restCache.clear();
    this.o = {...this.o, ...o};
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
    const a = Math.max(1, this.o.active.length);
    if (this.data.signed) return 1 / (Math.max(this.data.maxAbs ?? 0, 1e-9) * a);
    return 1 / a;
  }

  private restLines(h: number, sign: 0 | 1 | -1): LineSet {
    const key = h * 4 + sign + 1;
    let s = this.restCache.get(key);
    if (!s) {
      s = collectLines(this.data.matrix(h), this.layout.rows, this.layout.cols, {scale: this.scale(), topk: this.o.topk, sign});
      this.restCache.set(key, s);
    }
    return s;
  }

  paintText(ctx: Ctx, y0 = -Infinity, y1 = Infinity): void {
    const {L, Rt} = this.layout;
    L.color = Rt.color = this.o.theme.text;
    drawTokenColumn(ctx, this.data.queryLabels, L, y0, y1);
    drawTokenColumn(ctx, this.data.keyLabels, Rt, y0, y1);
  }

  /** Resting lines of every active head; returns the number drawn. */
  paintRest(ctx: Ctx, y0 = -Infinity, y1 = Infinity): number {
    const g = this.geometry();
    // 2 px lines read better on short inputs; past 128 tokens software raster of thousands of long 2 px
    // lines dominates first paint (measured 4x at 512 tokens), so the resting layer uses 1 px there.
    ctx.lineWidth = this.layout.L.rowH >= 14 && this.layout.rows <= 128 ? 2 : 1;
    let drawn = 0;
    for (const h of this.o.active) {
      if (this.data.signed) {
        drawn += drawLines(ctx, this.restLines(h, 1), DIVERGING.pos, g, y0, y1);
        drawn += drawLines(ctx, this.restLines(h, -1), DIVERGING.neg, g, y0, y1);
      } else {
        drawn += drawLines(ctx, this.restLines(h, 0), this.color(h), g, y0, y1);
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
    const g = this.geometry();
    const scale = this.scale();
    const heads = this.o.active;
    const bw = other.width / Math.max(1, heads.length);
    const n = left ? cols : rows;
    const first = Math.max(0, Math.floor((y0 - other.top) / other.rowH));
    const last = Math.min(n - 1, Math.ceil((y1 - other.top) / other.rowH));
    const maxAbs = d.signed ? Math.max(d.maxAbs ?? 0, 1e-9) : 1;
    let drawn = 0;
    ctx.lineWidth = L.rowH >= 14 ? 2 : 1;
    heads.forEach((h, hi) => {
      const m = d.matrix(h);
      // per-head bars on the other column: opacity = weight (BertViz)
      for (let t = first; t <= last; t++) {
        const w = left ? m[hv.index * cols + t] : m[t * cols + hv.index];
        const alpha = Math.min(1, Math.abs(w) / maxAbs);
        if (alpha * 255 < 0.5) continue;
        ctx.globalAlpha = alpha;
        ctx.fillStyle = d.signed ? (w >= 0 ? DIVERGING.pos : DIVERGING.neg) : this.color(h);
        ctx.fillRect(other.x + hi * bw, other.top + t * other.rowH, bw, other.rowH);
      }
      ctx.globalAlpha = 1;
      const opt = left ? {row: hv.index} : {col: hv.index};
      if (d.signed) {
        drawn += drawLines(ctx, collectLines(m, rows, cols, {scale, sign: 1, ...opt}), DIVERGING.pos, g, y0, y1);
        drawn += drawLines(ctx, collectLines(m, rows, cols, {scale, sign: -1, ...opt}), DIVERGING.neg, g, y0, y1);
      } else {
        drawn += drawLines(ctx, collectLines(m, rows, cols, {scale, ...opt}), this.color(h), g, y0, y1);
      }
    });
    return drawn;
  }

  /** Everything at rest (the export). */
  paint(ctx: Ctx): number {
    this.paintText(ctx);
    return this.paintRest(ctx);
  }
}
