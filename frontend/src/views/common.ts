// Pieces every view uses: DOM helpers (text only, never HTML) and the export hook.
import type {Ctx} from '../draw/ctx';
import type {Theme} from '../draw/colors';

type Attrs = Record<string, string | number | boolean | undefined>;

/** document.createElement with attributes and children; strings become text nodes (never parsed). */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k === 'class') e.className = String(v);
    else if (k === 'text') e.textContent = String(v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c == null) continue;
    e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return e;
}

export function clear(node: Element): void {
  while (node.firstChild) node.removeChild(node.firstChild);
}

/** What the export buttons need from a view: its full size and a way to paint all of it. */
export interface Exportable {
  exportSize(): {width: number; height: number};
  paint(ctx: Ctx): void;
}

export interface ViewBase extends Exportable {
  readonly el: HTMLElement;
  setTheme(t: Theme): void;
  /** Lines kept per token at rest, for views that thin lines (the toolbar's top-k). */
  setTopk?(k: number): void;
  /** Find-a-token: bring token `pos` of the record's query sequence into view (and mark it). */
  reveal?(pos: number): void;
  dispose(): void;
}

export function fontFor(rowH: number): string {
  const px = rowH >= 20 ? 14 : rowH >= 16 ? 12 : rowH >= 13 ? 11 : 9;
  return `${px}px Roboto, "Helvetica Neue", Arial, sans-serif`;
}

/** Row height for n rows: BertViz-like 20 px for short inputs, denser for long ones. */
export function rowHeightFor(n: number): number {
  return n <= 128 ? 20 : n <= 512 ? 14 : 12;
}
