// Story page: dev/stories.html?view=<name> renders that view alone from its fixture (no app, no server);
// without ?view, links to every story. &theme=dark starts dark.
import {DARK, LIGHT} from '../../src/draw/colors';
import {el} from '../../src/views/common';
import {VIEW_SPECS} from '../../src/views/registry';
import {FixtureSource} from '../fixtures';
import {mountStory} from './story';
import {findStory} from './index';

const params = new URLSearchParams(location.search);
const name = params.get('view');
const root = el('div', {'data-testid': 'story-root', class: 'attention-app'});
document.body.appendChild(root);
// (no top-level await: the page is an IIFE bundle)
void (async () => {
  const story = name ? await findStory(name) : null;
  if (!story) {
    root.appendChild(el('h3', {text: 'Stories: one view alone on one fixture'}));
    for (const s of VIEW_SPECS) root.appendChild(el('div', {}, el('a', {href: `?view=${s.name}`, text: s.label})));
  } else {
    const dark = params.get('theme') === 'dark';
    root.classList.toggle('dark', dark);
    document.body.classList.toggle('dark', dark);
    mountStory(story, new FixtureSource(), root, dark ? DARK : LIGHT).then(
      () => (root.dataset.state = 'ready'),
      (e) => {
        root.dataset.state = 'error';
        root.appendChild(el('div', {class: 'error', text: String(e)}));
      },
    );
  }
})();
