// Entry point TensorBoard loads: data/plugin_entry.html?name=attention imports data/plugin/attention/index.js
// and calls render(). All URLs are relative to this module, so TensorBoard's path prefix works.
import {HttpSource} from './api';
import {App} from './app';
import {browserHost} from './host';

/** Folder the plugin's routes live in (the module's own folder; one up if loaded as static/index.js). */
export function moduleBase(moduleUrl: string): URL {
  const here = new URL('./', moduleUrl);
  return here.pathname.endsWith('/static/') ? new URL('../', here) : here;
}

function ensureStylesheet(href: URL): void {
  if (document.querySelector('link[data-attention-css]')) return;
  const link = document.createElement('link');
  link.rel = 'stylesheet';
  link.href = href.toString();
  link.dataset.attentionCss = '1';
  document.head.appendChild(link);
}

export async function render(): Promise<App> {
  const base = moduleBase(import.meta.url);
  ensureStylesheet(new URL('./static/index.css', base));
  const root = document.createElement('div');
  root.id = 'attention-root';
  root.setAttribute('data-testid', 'attention-root');
  document.body.appendChild(root);
  const app = new App({source: new HttpSource(base), host: browserHost(), root});
  (window as unknown as {attentionApp?: App}).attentionApp = app;
  await app.start();
  return app;
}
