// Find a token: a search box over the shown record's query tokens (canvas-drawn text cannot be found with
// the browser's find). A query is a position ("#123" or "123") or text (case-insensitive substring of the
// token, a leading "▁" / "Ġ" / "##" ignored). Matches are listed as buttons (token text as text, never
// markup); choosing one asks every shown view to bring that token into view (`ViewBase.reveal`).
import {el} from './views/common';

/** Most matches listed. */
export const MAX_MATCHES = 50;

/** Positions of `tokens` matching `query`, in order, at most `max`; and how many matched in all. */
export function findTokens(tokens: readonly string[], query: string, max = MAX_MATCHES): {positions: number[]; total: number} {
  const s = query.trim();
  if (!s) return {positions: [], total: 0};
  const pos = /^#?(\d+)$/.exec(s);
  if (pos && s.startsWith('#')) {
    const i = Number(pos[1]);
    return i < tokens.length ? {positions: [i], total: 1} : {positions: [], total: 0};
  }
  const needle = s.toLowerCase();
  const out: number[] = [];
  let total = 0;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i].toLowerCase().replace(/^(▁|ġ|##)/, '');
    if (t.includes(needle) || tokens[i].toLowerCase().includes(needle)) {
      total++;
      if (out.length < max) out.push(i);
    }
  }
  // a bare number that is no token's text: the position
  if (!total && pos) {
    const i = Number(pos[1]);
    if (i < tokens.length) return {positions: [i], total: 1};
  }
  return {positions: out, total};
}

export class FindBox {
  readonly el: HTMLElement;
  private input: HTMLInputElement;
  private list: HTMLElement;
  private tokens: readonly string[] = [];

  constructor(private onReveal: (pos: number) => void) {
    this.input = el('input', {type: 'search', class: 'find-input', placeholder: 'Find a token (text or #position)', 'data-testid': 'find-input', 'aria-label': 'Find a token'});
    this.list = el('div', {class: 'find-results', 'data-testid': 'find-results'});
    this.el = el('div', {class: 'find'}, el('span', {class: 'ctl-label', text: 'Find'}), this.input, this.list);
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') {
        e.preventDefault();
        const first = this.search();
        if (first !== null) this.onReveal(first);
      } else if (e.key === 'Escape') {
        this.input.value = '';
        this.search();
      }
    });
    this.input.addEventListener('input', () => {
      if (!this.input.value) this.search();
    });
  }

  /** The tokens searched (the shown record's query sequence). */
  setTokens(tokens: readonly string[]): void {
    if (tokens === this.tokens) return;
    this.tokens = tokens;
    if (this.input.value) this.search();
  }

  /** Lists the matches of the box's text; returns the first position, or null. */
  search(): number | null {
    const list = this.list;
    while (list.firstChild) list.removeChild(list.firstChild);
    const {positions, total} = findTokens(this.tokens, this.input.value);
    list.dataset.count = String(total);
    if (!this.input.value.trim()) return null;
    if (!total) {
      list.appendChild(el('span', {class: 'hint', text: 'no match'}));
      return null;
    }
    list.appendChild(el('span', {class: 'hint', text: total > positions.length ? `${total} matches, first ${positions.length}:` : `${total} match${total > 1 ? 'es' : ''}:`}));
    positions.forEach((p, i) => {
      const b = el('button', {type: 'button', class: 'find-match', 'data-testid': `find-match-${i}`, 'data-pos': p, title: `Show token ${p}`, text: `${p} ${this.tokens[p]}`});
      b.addEventListener('click', () => this.onReveal(p));
      list.appendChild(b);
    });
    return positions[0];
  }
}
