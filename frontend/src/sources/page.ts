// Entry of the notebook / standalone page (built to static/notebook.js, inlined by notebook.py into each
// output): the tab's App over the records embedded in the page. Each output is its own document (an iframe
// srcdoc in a notebook, or a saved file), so any number of them work side by side; nothing is loaded from
// anywhere. The selection lives in memory (the page URL is the notebook's, not ours); the theme is the one
// asked for, else the notebook's where it can be read (JupyterLab, VS Code, Colab), else the system's.
import {App} from '../app';
import type {Host} from '../host';
import {EmbeddedSource, type EmbeddedData} from './embedded';

export interface PageData extends EmbeddedData {
  /** The initial selection as URL hash keys (`p.attention.<key>=...`). */
  hash: string;
  /** 'dark' / 'light' (BertViz's display_mode), or null: follow the notebook. */
  theme: 'dark' | 'light' | null;
  /** What the page holds when it is not every stored weight (a compact page), shown above the views. */
  note?: string | null;
}

/** The outer document's theme where it says one (same-origin parent only), else null. */
export function notebookDark(doc: Document | null): boolean | null {
  if (!doc?.body) return null;
  const b = doc.body;
  const light = b.getAttribute('data-jp-theme-light'); // JupyterLab
  if (light === 'true' || light === 'false') return light === 'false';
  if (b.classList.contains('vscode-dark') || b.classList.contains('vscode-high-contrast')) return true; // VS Code
  if (b.classList.contains('vscode-light')) return false;
  const theme = doc.documentElement.getAttribute('theme'); // Colab
  if (theme === 'dark' || theme === 'light') return theme === 'dark';
  const view = doc.defaultView;
  const bg = view ? view.getComputedStyle(b).backgroundColor : '';
  const m = /rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)/.exec(bg);
  if (m && (m[4] === undefined || Number(m[4]) > 0)) return 0.2126 * +m[1] + 0.7152 * +m[2] + 0.0722 * +m[3] < 128;
  return null;
}

function parentDocument(): Document | null {
  try {
    return window.parent && window.parent !== window ? window.parent.document : null;
  } catch {
    return null; // a cross-origin notebook frame: keep to ourselves
  }
}

export function pageHost(initialHash: string, forced: 'dark' | 'light' | null): Host {
  let hash = initialHash;
  const darkQuery = typeof matchMedia === 'function' ? matchMedia('(prefers-color-scheme: dark)') : null;
  const isDark = (): boolean => (forced ? forced === 'dark' : (notebookDark(parentDocument()) ?? !!darkQuery?.matches));
  return {
    readHash: () => hash,
    writeHash: (h) => void (hash = h),
    onHashChange: () => undefined,
    isDark,
    onThemeChange(cb) {
      if (forced) return;
      darkQuery?.addEventListener('change', () => cb(isDark()));
      const doc = parentDocument();
      if (doc?.body) new MutationObserver(() => cb(isDark())).observe(doc.body, {attributes: true, attributeFilter: ['class', 'data-jp-theme-light']});
    },
    onDataReloaded: () => undefined,
  };
}

/** Grows the notebook's iframe to the content (up to a screenful more; beyond, the frame scrolls itself). */
function fitFrame(root: HTMLElement, max = 1200): void {
  let frame: HTMLElement | null = null;
  try {
    frame = window.frameElement as HTMLElement | null;
  } catch {
    frame = null;
  }
  if (!frame || typeof ResizeObserver === 'undefined') return;
  const f = frame;
  const fit = () => {
    const h = Math.ceil(root.getBoundingClientRect().height + 24);
    f.style.height = `${Math.min(max, Math.max(120, h))}px`;
  };
  new ResizeObserver(fit).observe(root);
  fit();
}

export async function renderPage(): Promise<App | null> {
  const root = document.createElement('div');
  root.id = 'attention-root';
  root.setAttribute('data-testid', 'attention-root');
  document.body.appendChild(root);
  fitFrame(root);
  let data: PageData;
  let source: EmbeddedSource;
  try {
    data = JSON.parse(document.getElementById('attention-data')?.textContent ?? 'null') as PageData;
    source = new EmbeddedSource(data);
  } catch (e) {
    root.dataset.state = 'error';
    root.textContent = `This page's attention data cannot be read: ${(e as Error).message}`;
    return null;
  }
  if (typeof data.note === 'string' && data.note) {
    const note = document.createElement('p');
    note.className = 'embed-note';
    note.setAttribute('data-testid', 'embed-note');
    note.textContent = data.note;
    document.body.insertBefore(note, root);
  }
  const app = new App({source, host: pageHost(data.hash ?? '', data.theme ?? null), root});
  (window as unknown as {attentionApp?: App}).attentionApp = app;
  await app.start();
  return app;
}

if (typeof document !== 'undefined' && document.getElementById('attention-data')) void renderPage();
