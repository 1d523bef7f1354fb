// Builds the plugin bundle (tensorboard_plugin_attention/static/index.js + index.css) and the notebook page's
// script (static/notebook.js: one classic script, inlined with index.css by notebook.py into every notebook
// output and standalone file; src/sources/page.ts), or, with --dev,
// the fixture-backed dev pages (dev/dist/dev.js: the whole app; dev/dist/stories.js: one view alone per
// story), loadable from file://.
// Output is deterministic: no timestamps, no source maps with absolute paths, fixed banner.
import * as esbuild from 'esbuild';
import {fileURLToPath} from 'node:url';
import {dirname, resolve} from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const dev = process.argv.includes('--dev');
const common = {
  bundle: true,
  minify: !dev,
  legalComments: 'none',
  target: ['es2022'],
  logLevel: 'warning',
  charset: 'utf8',
  absWorkingDir: here,
};

if (dev) {
  await esbuild.build({
    ...common,
    entryPoints: ['dev/main.ts'],
    outfile: 'dev/dist/dev.js',
    format: 'iife',
    sourcemap: 'inline',
  });
  await esbuild.build({...common, entryPoints: ['dev/bench.ts'], outfile: 'dev/dist/bench.js', format: 'iife'});
  await esbuild.build({...common, entryPoints: ['dev/stories/main.ts'], outfile: 'dev/dist/stories.js', format: 'iife', sourcemap: 'inline'});
  await esbuild.build({...common, entryPoints: ['src/styles.css'], outfile: 'dev/dist/dev.css'});
} else {
  const outdir = resolve(here, '../tensorboard_plugin_attention/static');
  await esbuild.build({...common, entryPoints: ['src/index.ts'], outfile: `${outdir}/index.js`, format: 'esm'});
  await esbuild.build({...common, entryPoints: ['src/styles.css'], outfile: `${outdir}/index.css`});
  // inlined into a <script> element: esbuild escapes "</script" in strings, so the page cannot be cut short
  await esbuild.build({...common, entryPoints: ['src/sources/page.ts'], outfile: `${outdir}/notebook.js`, format: 'iife'});
}
