// Where the app lives: TensorBoard's page (the parent window, same origin) for the URL and the theme,
// TensorBoard's plugin message channel for "data reloaded", and a poll of /index at TensorBoard's auto-reload
// period (TensorBoard 2.21 sends DataReloaded only while its auto-reload is switched on, which is not its
// default; the poll is the fallback and waits while messages come). Outside TensorBoard (the dev page) the
// app's own window plays the page.

export interface Host {
  readHash(): string;
  /** Replaces the page URL's hash without a new history entry and without TensorBoard re-routing. */
  writeHash(hash: string): void;
  onHashChange(cb: () => void): void;
  isDark(): boolean;
  onThemeChange(cb: (dark: boolean) => void): void;
  onDataReloaded(cb: () => void): void;
  /** Called at TensorBoard's auto-reload period while the tab is on screen and auto-reload is on. */
  onPoll?(cb: () => Promise<void> | void): void;
}

export interface ReloadSetting {
  enabled: boolean;
  periodMs: number;
}

/** TensorBoard's default auto-reload period; shorter stored periods (down to MIN_POLL_MS) are honoured. */
export const DEFAULT_RELOAD_MS = 30_000;
export const MIN_POLL_MS = 5_000;
/** TensorBoard keeps its persisted settings (autoReload, autoReloadPeriodInMs) under this localStorage key. */
export const TB_SETTINGS_KEY = '_tb_global_settings';

/** TensorBoard's auto-reload setting from its stored settings (absent or unreadable: on, every 30 s). */
export function readReloadSetting(storage: Pick<Storage, 'getItem'> | null): ReloadSetting {
  const out = {enabled: true, periodMs: DEFAULT_RELOAD_MS};
  let v: unknown;
  try {
    v = JSON.parse(storage?.getItem(TB_SETTINGS_KEY) ?? 'null');
  } catch {
    return out;
  }
  if (!v || typeof v !== 'object') return out;
  const o = v as {autoReload?: unknown; autoReloadPeriodInMs?: unknown};
  if (typeof o.autoReload === 'boolean') out.enabled = o.autoReload;
  if (typeof o.autoReloadPeriodInMs === 'number' && Number.isFinite(o.autoReloadPeriodInMs)) out.periodMs = Math.max(MIN_POLL_MS, o.autoReloadPeriodInMs);
  return out;
}

export interface PollerDeps {
  setting(): ReloadSetting;
  /** The tab is on screen (page visible, our iframe displayed). */
  visible(): boolean;
  setTimeout(f: () => void, ms: number): unknown;
  clearTimeout(t: unknown): void;
}

/**
 * Calls `tick` every period while visible and enabled, never two at once; a reload seen otherwise
 * (TensorBoard's message) restarts the period, so the two do not fetch twice.
 */
export class Poller {
  private timer: unknown = null;
  private running = false;
  private stopped = false;
  constructor(
    private tick: () => Promise<void> | void,
    private deps: PollerDeps,
  ) {}
  start(): void {
    this.stopped = false;
    this.schedule();
  }
  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.deps.clearTimeout(this.timer);
    this.timer = null;
  }
  /** Some other reload just happened: wait a full period from now. */
  reset(): void {
    if (this.stopped) return;
    this.schedule();
  }
  private schedule(): void {
    if (this.timer !== null) this.deps.clearTimeout(this.timer);
    this.timer = this.deps.setTimeout(() => void this.run(), this.deps.setting().periodMs);
  }
  private async run(): Promise<void> {
    this.timer = null;
    if (this.stopped) return;
    const s = this.deps.setting();
    if (s.enabled && this.deps.visible() && !this.running) {
      this.running = true;
      try {
        await this.tick();
      } catch {
        /* the next period tries again */
      } finally {
        this.running = false;
      }
    }
    if (!this.stopped && this.timer === null) this.schedule();
  }
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
  const pollers: Poller[] = [];

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
        if (msg.type === DATA_RELOADED) {
          reloadCbs.forEach((cb) => cb());
          pollers.forEach((p) => p.reset());
        }
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
    onPoll(cb) {
      const storage = (): Storage | null => {
        try {
          return page.localStorage;
        } catch {
          return null;
        }
      };
      const p = new Poller(cb, {
        setting: () => readReloadSetting(storage()),
        // the page is shown and so is our iframe (TensorBoard hides the iframes of other tabs)
        visible: () => document.visibilityState === 'visible' && (!window.frameElement || window.frameElement.getClientRects().length > 0),
        setTimeout: (f, ms) => setTimeout(f, ms),
        clearTimeout: (t) => clearTimeout(t as ReturnType<typeof setTimeout>),
      });
      pollers.push(p);
      p.start();
    },
  };
}
