// Where the app lives: TensorBoard's page (the parent window, same origin) for the URL and the theme, and
// TensorBoard's plugin message channel for "data reloaded". Outside TensorBoard (the dev page) the app's own
// window plays the page.

export interface Host {
  readHash(): string;
  /** Replaces the page URL's hash without a new history entry and without TensorBoard re-routing. */
  writeHash(hash: string): void;
  onHashChange(cb: () => void): void;
  isDark(): boolean;
  onThemeChange(cb: (dark: boolean) => void): void;
  onDataReloaded(cb: () => void): void;
}

/** TensorBoard's window if we are in its iframe and may touch it, else our own. */
export function pageWindow(): Window {
  try {
    const p = window.parent;
    if (p && p !== window) {
      void p.location.href; // throws if cross-origin
      return p;
    }
  } catch {
    /* cross-origin parent: keep to ourselves */
  }
  return window;
}

const VERSION = 'experimental';
const DATA_RELOADED = `${VERSION}.DataReloaded`;

export function browserHost(): Host {
  const page = pageWindow();
  const inTensorBoard = page !== window;
  const reloadCbs: (() => void)[] = [];

  // TensorBoard's plugin IPC (components/experimental/plugin_util): a MessagePort handed over with a
  // bootstrap message; the host broadcasts DataReloaded after each (auto) reload and waits for a reply.
  if (window.parent && window.parent !== window) {
    try {
      const channel = new MessageChannel();
      channel.port1.onmessage = (ev: MessageEvent) => {
        let msg: {type?: string; id?: number; isReply?: boolean};
        try {
          msg = JSON.parse(String(ev.data));
        } catch {
          return;
        }
        if (msg.isReply) return;
        if (msg.type === DATA_RELOADED) reloadCbs.forEach((cb) => cb());
        channel.port1.postMessage(JSON.stringify({type: msg.type, id: msg.id, payload: null, error: null, isReply: true}));
      };
      channel.port1.start();
      const target = inTensorBoard ? window.location.origin : '*';
      window.parent.postMessage(`${VERSION}.bootstrap`, target, [channel.port2]);
    } catch {
      /* no IPC: reloads are not followed */
    }
  }

  const darkQuery = typeof matchMedia === 'function' ? matchMedia('(prefers-color-scheme: dark)') : null;
  const pageIsDark = (): boolean => {
    if (inTensorBoard) return !!page.document.body?.classList.contains('dark-mode');
    return !!darkQuery?.matches;
  };

  return {
    readHash: () => page.location.hash,
    writeHash(hash: string) {
      const url = new URL(page.location.href);
      url.hash = hash;
      if (url.toString() !== page.location.href) page.history.replaceState(page.history.state, '', url.toString());
    },
    onHashChange(cb) {
      page.addEventListener('hashchange', cb);
      page.addEventListener('popstate', cb);
    },
    isDark: pageIsDark,
    onThemeChange(cb) {
      if (inTensorBoard && page.document.body) {
        // TensorBoard toggles "dark-mode" on its body (dark-mode-supporter)
        new MutationObserver(() => cb(pageIsDark())).observe(page.document.body, {attributes: true, attributeFilter: ['class']});
      } else {
        darkQuery?.addEventListener('change', () => cb(pageIsDark()));
      }
    },
    onDataReloaded(cb) {
      reloadCbs.push(cb);
    },
  };
}
