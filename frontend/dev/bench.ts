// Browser benchmark of the head view on dense synthetic attention (no server): for each length, the time to
// draw the view at rest (collecting + stroking lines) and to hover a token. Results go to
// document.body.dataset.bench as JSON (read by frontend/dev/bench.py).
import {LIGHT, headColor} from '../src/draw/colors';
import type {HeadData} from '../src/views/head/data';
import {HeadView} from '../src/views/head/view';

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Softmax rows of N(0, sd²) scores plus a local band: dense, like a real mid-layer head. */
function dense(n: number, heads: number, sd: number): Float32Array[] {
  const r = rng(n);
  const out: Float32Array[] = [];
  for (let h = 0; h < heads; h++) {
    const m = new Float32Array(n * n);
    for (let i = 0; i < n; i++) {
      let mx = -Infinity;
      for (let j = 0; j < n; j++) {
        const u = Math.max(1e-9, r());
        const g = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
        const v = sd * g + (Math.abs(i - j - (h % 3) + 1) < 2 ? 4 : 0);
        m[i * n + j] = v;
        mx = Math.max(mx, v);
      }
      let s = 0;
      for (let j = 0; j < n; j++) s += m[i * n + j] = Math.exp(m[i * n + j] - mx);
      for (let j = 0; j < n; j++) m[i * n + j] /= s;
    }
    out.push(m);
  }
  return out;
}

async function run(): Promise<void> {
  const results: Record<string, unknown>[] = [];
  const params = new URLSearchParams(location.search);
  const sizes = (params.get('n') ?? '128,512,1024,2048').split(',').map(Number);
  const heads = Number(params.get('heads') ?? 12);
  for (const n of sizes) {
    const mats = dense(n, heads, 1.5);
    for (const topk of [0, 5]) {
      const view = new HeadView({theme: LIGHT, colorOf: headColor, active: null, topk});
      document.body.appendChild(view.el);
      const data: HeadData = {
        queryLabels: Array.from({length: n}, (_, i) => `tok${i}`),
        keyLabels: Array.from({length: n}, (_, i) => `tok${i}`),
        nHeads: heads,
        heads: Array.from({length: heads}, (_, i) => i),
        matrix: (h) => mats[h],
      };
      const t0 = performance.now();
      view.setData(data);
      const rest = performance.now() - t0;
      const hover: number[] = [];
      for (let i = 0; i < 10; i++) {
        const t = performance.now();
        view.setHover('left', (i * 37) % n);
        hover.push(performance.now() - t);
      }
      const hoverLines = Number(view.el.dataset.linesDrawn);
      view.setHover(null, -1);
      hover.sort((a, b) => a - b);
      results.push({n, heads, topk, restMs: +rest.toFixed(1), linesAtRest: Number(view.el.dataset.linesRest), hoverMedianMs: +hover[5].toFixed(1), hoverMaxMs: +hover[9].toFixed(1), hoverLines, virtual: view.el.querySelector('canvas')!.height < n * 12});
      view.dispose();
      view.el.remove();
      await new Promise((r) => setTimeout(r, 0));
    }
  }
  document.body.dataset.bench = JSON.stringify(results);
}

void run();
