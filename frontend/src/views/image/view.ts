// The image view's DOM: the query selector (non-patch tokens; a clicked patch), what the overlay shows
// (one head, the mean of the selected heads, the rollout), its opacity, the legend in words, and three
// stacked canvases: the image, the overlay alone (`image-heat`, so a test reads a patch's pixels back), and
// the outlines (pointer: hover a patch for its weight, click one to make it the query). Knows nothing about HTTP.
import type {Theme} from '../../draw/colors';
import type {Ctx} from '../../draw/ctx';
import {patchToken} from '../../image';
import {clear, el} from '../common';
import {CanvasView} from '../canvas-view';
import {IMAGE_AGG_LABELS, IMAGE_AGGS, type ImageAgg, type ImageData} from './data';
import {ImagePainter, imageLayout, legendText} from './draw';
import type {ImageBytes, ImageInfo} from '../../types';

export interface ImageViewOptions {
  theme: Theme;
  agg: ImageAgg;
  opacity: number;
  testid: string;
  onQuery?: (pos: number) => void;
  onAgg?: (a: ImageAgg) => void;
  onOpacity?: (o: number) => void;
  onHover?: (patch: [number, number] | null) => void;
}

/**
 * Decodes an image's bytes to a canvas of its own size; throws with a clear message when they are not a
 * PNG / WebP image of the size its header gives.
 */
export async function decodeImage(img: ImageBytes, info: ImageInfo): Promise<HTMLCanvasElement> {
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(new Blob([img.bytes as Uint8Array<ArrayBuffer>], {type: img.mime || info.mime}));
  } catch {
    throw new Error(`the stored image (${img.bytes.length} bytes, ${info.mime}) is not an image this browser can decode`);
  }
  if (bitmap.width !== info.width || bitmap.height !== info.height) {
    bitmap.close();
    throw new Error(`the stored image is ${bitmap.width} × ${bitmap.height} px, its header says ${info.width} × ${info.height}`);
  }
  const c = document.createElement('canvas');
  c.width = info.width;
  c.height = info.height;
  c.getContext('2d')!.drawImage(bitmap, 0, 0);
  bitmap.close();
  return c;
}

export class ImageView extends CanvasView {
  readonly el: HTMLElement;
  private theme: Theme;
  private data: ImageData | null = null;
  private pixels: HTMLCanvasElement | null = null;
  private painter: ImagePainter | null = null;
  private hover: [number, number] | null = null;
  private querySel: HTMLSelectElement;
  private aggSel: HTMLSelectElement;
  private opacityInput: HTMLInputElement;
  private legend: HTMLElement;
  private notesEl: HTMLElement;
  private readout: HTMLElement;

  constructor(private opts: ImageViewOptions) {
    super(3, `${opts.testid}-canvas`, [], [0, 1]);
    this.theme = opts.theme;
    this.stack.layers[1].setAttribute('data-testid', `${opts.testid === 'image-view' ? 'image' : opts.testid}-heat`);
    this.querySel = el('select', {'data-testid': 'image-query', title: 'The query token: a non-patch token (CLS, registers, text), or click a patch'});
    this.querySel.addEventListener('change', () => this.opts.onQuery?.(Number(this.querySel.value)));
    this.aggSel = el('select', {'data-testid': 'image-agg', title: 'One head (the Head selector), the mean of the selected heads (the head view’s), or attention rollout'});
    for (const a of IMAGE_AGGS) this.aggSel.appendChild(el('option', {value: a, text: IMAGE_AGG_LABELS[a]}));
    this.aggSel.value = opts.agg;
    this.aggSel.addEventListener('change', () => this.opts.onAgg?.(this.aggSel.value as ImageAgg));
    this.opacityInput = el('input', {type: 'range', min: 0.1, max: 1, step: 0.05, value: opts.opacity, 'data-testid': 'image-opacity', title: 'Overlay opacity at the strongest patch'});
    this.opacityInput.addEventListener('change', () => this.opts.onOpacity?.(Math.round(Number(this.opacityInput.value) * 100) / 100));
    this.legend = el('div', {class: 'legend', 'data-testid': 'image-legend'});
    this.notesEl = el('div', {class: 'notes', 'data-testid': 'image-notes'});
    this.readout = el('div', {class: 'readout', 'data-testid': 'image-readout'});
    this.el = el(
      'div',
      {class: 'image-view', 'data-testid': opts.testid},
      el(
        'div',
        {class: 'view-toolbar'},
        el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'Query'}), this.querySel),
        el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'Show'}), this.aggSel),
        el('label', {class: 'ctl'}, el('span', {class: 'ctl-label', text: 'Opacity'}), this.opacityInput),
        el('span', {class: 'hint', text: 'Hover a patch for its weight; click a patch to make it the query.'}),
      ),
      this.legend,
      this.notesEl,
      this.readout,
      this.stack.root,
    );
    const top = this.stack.top;
    top.addEventListener('mousemove', (e) => this.setHover(this.hitAt(e), true));
    top.addEventListener('mouseleave', () => this.setHover(null, true));
    top.addEventListener('click', (e) => {
      const p = this.hitAt(e);
      if (p && this.data?.clickable) this.opts.onQuery?.(patchToken(this.data.image, p[0], p[1]));
    });
  }

  private hitAt(e: MouseEvent): [number, number] | null {
    if (!this.painter) return null;
    const p = this.stack.toContent(e);
    return this.painter.hit(p.x, p.y);
  }

  setTheme(t: Theme): void {
    this.theme = t;
    if (this.painter) this.painter.theme = t;
    this.redraw();
  }

  /** New data, and the image's decoded pixels (null: a grey placeholder). */
  setData(d: ImageData, pixels: HTMLCanvasElement | null, opacity: number): void {
    this.data = d;
    this.pixels = pixels;
    this.opacityInput.value = String(opacity);
    clear(this.querySel);
    if (d.queryPatch) this.querySel.appendChild(el('option', {value: d.query, text: `${d.queryLabel} (clicked patch)`}));
    for (const q of d.queries) this.querySel.appendChild(el('option', {value: q.pos, text: `${q.pos}: ${q.label}`}));
    this.querySel.value = String(d.query);
    clear(this.notesEl);
    for (const n of d.notes) this.notesEl.appendChild(el('div', {class: 'note', text: n}));
    this.legend.textContent = legendText(d, opacity);
    const total = (this.el.closest('.pane') as HTMLElement | null)?.clientWidth || 560;
    const L = imageLayout(d, total);
    this.painter = new ImagePainter(d, L, this.theme, opacity);
    if (this.hover && (this.hover[0] >= d.image.grid[0] || this.hover[1] >= d.image.grid[1])) this.hover = null;
    this.stack.resize(L.totalW, L.totalH);
    const ds = this.el.dataset;
    Object.assign(ds, {
      left: String(L.x),
      top: String(L.y),
      width: String(L.width),
      height: String(L.height),
      grid: d.image.grid.join(','),
      query: String(d.query),
      queryPatch: d.queryPatch ? d.queryPatch.join(',') : '',
      signed: d.signed ? '1' : '0',
      max: String(d.max),
      opacity: String(opacity),
      image: pixels ? 'decoded' : 'none',
    });
    this.redraw();
  }

  protected redraw(): void {
    const p = this.painter;
    if (!p) return;
    const base = this.stack.ctx(0);
    p.paintImage(base, this.pixels);
    p.paintLegend(base);
    this.el.dataset.patches = String(p.paintHeat(this.stack.ctx(1)));
    this.drawMarks();
  }

  private drawMarks(): void {
    const p = this.painter;
    if (!p) return;
    p.paintMarks(this.stack.ctx(2), this.hover);
    this.el.dataset.hover = this.hover ? this.hover.join(',') : '';
    this.readout.textContent = p.describe(this.hover);
  }

  /** Hover patch `p` (null: none); `notify` tells the other panes. */
  setHover(p: [number, number] | null, notify = false): void {
    if (p?.[0] === this.hover?.[0] && p?.[1] === this.hover?.[1]) return;
    this.hover = p;
    this.drawMarks();
    if (notify) this.opts.onHover?.(p);
  }

  paint(ctx: Ctx): void {
    this.painter?.paintAll(ctx, this.pixels, null);
  }
}
