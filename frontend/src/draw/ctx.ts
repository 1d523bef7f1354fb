// The subset of CanvasRenderingContext2D the views draw with, and an implementation of it that records SVG,
// so the same drawing code gives the screen, the PNG export (canvas) and the SVG export.

export interface Ctx {
  fillStyle: string | CanvasGradient | CanvasPattern;
  strokeStyle: string | CanvasGradient | CanvasPattern;
  globalAlpha: number;
  lineWidth: number;
  font: string;
  textAlign: CanvasTextAlign;
  textBaseline: CanvasTextBaseline;
  imageSmoothingEnabled: boolean;
  save(): void;
  restore(): void;
  translate(x: number, y: number): void;
  beginPath(): void;
  moveTo(x: number, y: number): void;
  lineTo(x: number, y: number): void;
  rect(x: number, y: number, w: number, h: number): void;
  stroke(): void;
  fill(): void;
  fillRect(x: number, y: number, w: number, h: number): void;
  strokeRect(x: number, y: number, w: number, h: number): void;
  clearRect(x: number, y: number, w: number, h: number): void;
  fillText(text: string, x: number, y: number, maxWidth?: number): void;
  measureText(text: string): {width: number};
  drawImage(image: HTMLCanvasElement, dx: number, dy: number, dw: number, dh: number): void;
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'})[c]!);
}

const n2 = (v: number) => {
  const r = Math.round(v * 100) / 100;
  return Object.is(r, -0) ? '0' : String(r);
};

interface SvgState {
  fillStyle: string;
  strokeStyle: string;
  globalAlpha: number;
  lineWidth: number;
  font: string;
  textAlign: CanvasTextAlign;
  textBaseline: CanvasTextBaseline;
  tx: number;
  ty: number;
}

let measureCtx: CanvasRenderingContext2D | null | undefined;
function measurer(): CanvasRenderingContext2D | null {
  if (measureCtx === undefined) {
    measureCtx = typeof document !== 'undefined' ? document.createElement('canvas').getContext('2d') : null;
  }
  return measureCtx;
}

/** Records drawing calls as SVG elements. Text is escaped; images are embedded as PNG data URLs. */
export class SvgContext implements Ctx {
  private s: SvgState = {
    fillStyle: '#000',
    strokeStyle: '#000',
    globalAlpha: 1,
    lineWidth: 1,
    font: '10px sans-serif',
    textAlign: 'start',
    textBaseline: 'alphabetic',
    tx: 0,
    ty: 0,
  };
  private stack: SvgState[] = [];
  private path: string[] = [];
  private parts: string[] = [];
  imageSmoothingEnabled = true;

  get fillStyle(): string {
    return this.s.fillStyle;
  }
  set fillStyle(v: string | CanvasGradient | CanvasPattern) {
    this.s.fillStyle = String(v);
  }
  get strokeStyle(): string {
    return this.s.strokeStyle;
  }
  set strokeStyle(v: string | CanvasGradient | CanvasPattern) {
    this.s.strokeStyle = String(v);
  }
  get globalAlpha(): number {
    return this.s.globalAlpha;
  }
  set globalAlpha(v: number) {
    this.s.globalAlpha = v;
  }
  get lineWidth(): number {
    return this.s.lineWidth;
  }
  set lineWidth(v: number) {
    this.s.lineWidth = v;
  }
  get font(): string {
    return this.s.font;
  }
  set font(v: string) {
    this.s.font = v;
  }
  get textAlign(): CanvasTextAlign {
    return this.s.textAlign;
  }
  set textAlign(v: CanvasTextAlign) {
    this.s.textAlign = v;
  }
  get textBaseline(): CanvasTextBaseline {
    return this.s.textBaseline;
  }
  set textBaseline(v: CanvasTextBaseline) {
    this.s.textBaseline = v;
  }

  save(): void {
    this.stack.push({...this.s});
  }
  restore(): void {
    const s = this.stack.pop();
    if (s) this.s = s;
  }
  translate(x: number, y: number): void {
    this.s.tx += x;
    this.s.ty += y;
  }
  beginPath(): void {
    this.path = [];
  }
  moveTo(x: number, y: number): void {
    this.path.push(`M${n2(x + this.s.tx)} ${n2(y + this.s.ty)}`);
  }
  lineTo(x: number, y: number): void {
    this.path.push(`L${n2(x + this.s.tx)} ${n2(y + this.s.ty)}`);
  }
  rect(x: number, y: number, w: number, h: number): void {
    const X = x + this.s.tx;
    const Y = y + this.s.ty;
    this.path.push(`M${n2(X)} ${n2(Y)}h${n2(w)}v${n2(h)}h${n2(-w)}Z`);
  }
  private opacity(attr: string): string {
    return this.s.globalAlpha < 1 ? ` ${attr}="${n2Alpha(this.s.globalAlpha)}"` : '';
  }
  stroke(): void {
    if (!this.path.length) return;
    this.parts.push(
      `<path d="${this.path.join('')}" fill="none" stroke="${escapeXml(this.s.strokeStyle)}" stroke-width="${n2(this.s.lineWidth)}"${this.opacity('stroke-opacity')}/>`,
    );
  }
  fill(): void {
    if (!this.path.length) return;
    this.parts.push(`<path d="${this.path.join('')}" fill="${escapeXml(this.s.fillStyle)}"${this.opacity('fill-opacity')}/>`);
  }
  fillRect(x: number, y: number, w: number, h: number): void {
    this.parts.push(
      `<rect x="${n2(x + this.s.tx)}" y="${n2(y + this.s.ty)}" width="${n2(w)}" height="${n2(h)}" fill="${escapeXml(this.s.fillStyle)}"${this.opacity('fill-opacity')}/>`,
    );
  }
  strokeRect(x: number, y: number, w: number, h: number): void {
    this.parts.push(
      `<rect x="${n2(x + this.s.tx)}" y="${n2(y + this.s.ty)}" width="${n2(w)}" height="${n2(h)}" fill="none" stroke="${escapeXml(this.s.strokeStyle)}" stroke-width="${n2(this.s.lineWidth)}"${this.opacity('stroke-opacity')}/>`,
    );
  }
  clearRect(): void {
    /* an SVG starts empty */
  }
  fillText(text: string, x: number, y: number): void {
    const anchor = {start: 'start', left: 'start', center: 'middle', end: 'end', right: 'end'}[this.s.textAlign];
    const base =
      {top: 'text-before-edge', hanging: 'hanging', middle: 'central', alphabetic: 'auto', ideographic: 'ideographic', bottom: 'text-after-edge'}[
        this.s.textBaseline
      ] ?? 'auto';
    this.parts.push(
      `<text x="${n2(x + this.s.tx)}" y="${n2(y + this.s.ty)}" style="font:${escapeXml(this.s.font)}" text-anchor="${anchor}" dominant-baseline="${base}" fill="${escapeXml(this.s.fillStyle)}"${this.opacity('fill-opacity')} xml:space="preserve">${escapeXml(text)}</text>`,
    );
  }
  /** Text rotated by `degrees` (clockwise, as canvas) about its anchor (x, y). */
  fillTextRotated(text: string, x: number, y: number, degrees: number): void {
    const mark = this.parts.length;
    this.fillText(text, x, y);
    const X = n2(x + this.s.tx);
    const Y = n2(y + this.s.ty);
    this.parts[mark] = this.parts[mark].replace('<text ', `<text transform="rotate(${n2(degrees)} ${X} ${Y})" `);
  }
  measureText(text: string): {width: number} {
    const m = measurer();
    if (m) {
      m.font = this.s.font;
      return {width: m.measureText(text).width};
    }
    const px = Number(/(\d+(?:\.\d+)?)px/.exec(this.s.font)?.[1] ?? 10);
    return {width: text.length * px * 0.6};
  }
  drawImage(image: HTMLCanvasElement, dx: number, dy: number, dw: number, dh: number): void {
    let href = '';
    try {
      href = image.toDataURL('image/png');
    } catch {
      return;
    }
    const pix = this.imageSmoothingEnabled ? '' : ' style="image-rendering:pixelated"';
    this.parts.push(
      `<image x="${n2(dx + this.s.tx)}" y="${n2(dy + this.s.ty)}" width="${n2(dw)}" height="${n2(dh)}" preserveAspectRatio="none"${pix}${this.opacity('opacity')} href="${href}"/>`,
    );
  }

  /** An image with no pixels to embed (no DOM): its place, and its size in cells as data attributes. */
  imagePlaceholder(cols: number, rows: number, dx: number, dy: number, dw: number, dh: number): void {
    this.parts.push(
      `<image x="${n2(dx + this.s.tx)}" y="${n2(dy + this.s.ty)}" width="${n2(dw)}" height="${n2(dh)}" preserveAspectRatio="none" data-cols="${cols}" data-rows="${rows}"${this.opacity('opacity')}/>`,
    );
  }

  /** Recorded elements, for tests: the tag and attribute text of each. */
  get elements(): readonly string[] {
    return this.parts;
  }

  /** Number of SVG elements recorded so far. */
  get elementCount(): number {
    return this.parts.length;
  }

  toSvg(width: number, height: number, background?: string): string {
    const bg = background ? `<rect width="100%" height="100%" fill="${escapeXml(background)}"/>` : '';
    return (
      `<svg xmlns="http://www.w3.org/2000/svg" width="${n2(width)}" height="${n2(height)}" viewBox="0 0 ${n2(width)} ${n2(height)}">` +
      bg +
      this.parts.join('\n') +
      '</svg>\n'
    );
  }
}

function n2Alpha(a: number): string {
  return String(Math.round(a * 1000) / 1000);
}

/** fillText rotated by `degrees` about (x, y), on a canvas or into an SVG recording. */
export function fillTextRotated(ctx: Ctx, text: string, x: number, y: number, degrees: number): void {
  if (ctx instanceof SvgContext) {
    ctx.fillTextRotated(text, x, y, degrees);
    return;
  }
  const c = ctx as unknown as CanvasRenderingContext2D;
  c.save();
  c.translate(x, y);
  c.rotate((degrees * Math.PI) / 180);
  c.fillText(text, 0, 0);
  c.restore();
}
