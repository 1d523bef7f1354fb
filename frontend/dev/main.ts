// Dev page: the whole app on fixture data, no server (open dev/index.html after `npm run dev`).
// "?theme=dark" starts dark; the button toggles the theme the way TensorBoard's body class would.
import {App} from '../src/app';
import {browserHost, type Host} from '../src/host';
import {FixtureSource} from './fixtures';

const themeCbs: ((dark: boolean) => void)[] = [];
let dark = new URLSearchParams(location.search).get('theme') === 'dark';
const base = browserHost();
const host: Host = {
  ...base,
  isDark: () => dark,
  onThemeChange: (cb) => themeCbs.push(cb),
};

const bar = document.createElement('div');
bar.className = 'dev-bar';
const btn = document.createElement('button');
btn.type = 'button';
btn.textContent = 'toggle dark mode';
btn.setAttribute('data-testid', 'dev-theme');
btn.addEventListener('click', () => {
  dark = !dark;
  themeCbs.forEach((cb) => cb(dark));
});
bar.appendChild(document.createTextNode('Dev page (fixtures) '));
bar.appendChild(btn);
document.body.appendChild(bar);

const root = document.createElement('div');
root.setAttribute('data-testid', 'attention-root');
document.body.appendChild(root);
const app = new App({source: new FixtureSource(), host, root});
(window as unknown as {attentionApp?: App}).attentionApp = app;
void app.start();
