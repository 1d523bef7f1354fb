"""Hover and wheel zoom in the Attention tab, measured from the input event to the presentation of its frame (issue 21).

    .venv/bin/python bench/bench_hover.py [--hovers 30] [--zooms 20] [--idle 12] [--keep DIR] [--cpu-throttle 1,4]

What it measures, in TensorBoard's own page (real ``tensorboard`` subprocess, headless Chromium, ``--disable-gpu``,
viewport 1300 x 900, as ``bench_browser.py``): trusted input (``page.mouse.move`` / ``page.mouse.wheel``, i.e. CDP
``Input.dispatchMouseEvent``) on the head view's and the matrix view's canvases, while Chromium traces itself
(CDP ``Tracing``, categories ``benchmark,input``). Per event, from the trace:

* its ``EventLatency`` slice (``MOUSE_MOVED_EVENT`` / ``MOUSE_WHEEL``): the event's timestamp (generation, in the
  browser process) and its ``RendererMainProcessing`` stage (the page's handlers);
* its presentation: a wheel's ``EventLatency`` ends there (Chromium attributes the frame itself); a mouse move's
  ends with the handlers, so its frame is the renderer's first ``Commit`` after the handlers ended (before the
  next event) and the presentation of the first compositor frame submitted from then on. The same rule applied to
  the wheels gives Chromium's own presentation time (checked on every run, printed under the table).

Latency = presentation - event timestamp; breakdown (p50): to handler (input delivery, including the wait for the
main frame input is aligned to), handler, handler end to commit (rest of the main frame: rAF, style, layout,
paint), commit to presentation (commit, raster, activation, display compositing, swap). Nothing in the page waits
for a frame, so the metric has no frame-interval floor of its own. Every measured event changes what is drawn
(checked: the expected ``data-hover`` / a new viewport each time) after the view has rested (``--rest`` ms, plus
the 250 ms the check waits, plus a random ``--jitter`` of up to one frame: input at random phases of Chromium's
frame clock, whose next BeginFrame a wheel waits for). "idle": a mouse move to where the pointer already is
(nothing to draw: no frame is expected). "floor": a blank page whose handlers fill one 8 x 8 square of a canvas, the least a hover / wheel costs.

Cases: head view and matrix view at 512 tokens (synthetic 6 x 12 x 512, ``bench/synthetic.py``, logged with
``AttentionWriter``) and at 32768 tokens (``bench_browser.py --long``'s LLaMA-shaped layer logged from q/k, 2 heads),
each at every ``--cpu-throttle`` rate (``Emulation.setCPUThrottlingRate``; default: 1 and 4). Targets (issue 21):
p95 <= 16 ms plain, <= 33 ms at 4x. ``--keep DIR`` writes the logdir there, or measures an existing one again.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Chromium's frame clock (BeginFrames 16.67 ms apart, on a fixed grid). A wheel reaches the page only at the start
# of the next main frame; a fixed rest that is a whole number of frames (350 ms is 21) sent every wheel at the
# same phase of that grid, so every wait was about the same (short or long by chance); a random extra rest of up
# to one frame samples the phases a user's input arrives at.
FRAME_MS = 1000 / 60
sys.path.insert(0, os.path.join(ROOT, "bench"))

from bench_browser import (LONG_WRITER, BenchLogdir, Tab, launch, machine_info, pct,  # noqa: E402
                           start_tensorboard, synthetic_tokens)

CATEGORIES = ["benchmark", "input"]  # EventLatency (cc,benchmark,input) and PipelineReporter (cc,benchmark,...)
TARGETS = {1.0: 16.0, 4.0: 33.0}  # p95 ms by CPU throttle (issue 21)

# In TensorBoard's page (after bench_browser's HELPERS: window.__ab). Points are returned in the TOP page's
# coordinates (the tab's iframe offset added), for trusted input through page.mouse.
HOVER_HELPERS = r"""
() => {
  const ab = window.__ab;
  const off = () => { const f = ab.win().frameElement, r = f.getBoundingClientRect(); return {x: r.left + f.clientLeft, y: r.top + f.clientTop}; };
  const scroller = (w, el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const oy = w.getComputedStyle(p).overflowY;
      if ((oy === 'auto' || oy === 'scroll') && p.scrollHeight > p.clientHeight) return p;
    }
    return w.document.scrollingElement;
  };
  const mv = (d) => d.querySelector('[data-testid=matrix-view]') || d.querySelector('[data-testid=matrix-multi]');
  ab.hv = {
    ready: (view, n) => {
      const d = ab.win().document, root = d.querySelector('[data-testid=attention-root]');
      if (!root || root.dataset.state !== 'ready' || root.dataset.view !== view) return false;
      if (view === 'head') return ab.ready(ab.win(), n);
      const m = mv(d);
      return !!(m && m.dataset.q === String(n) && m.dataset.renderMs && m.dataset.width);
    },
    // what the view shows as hovered / its viewport: changes when an event changed what is drawn
    state: (view) => {
      const d = ab.win().document;
      if (view === 'head') return d.querySelector('[data-testid=head-view]').dataset.hover || '';
      const m = mv(d);
      return JSON.stringify([m.dataset.hover || '', m.dataset.x0, m.dataset.x1, m.dataset.y0, m.dataset.y1]);
    },
    // the k-th head view token: alternating query (left) / key (right) columns, spread through the input;
    // scrolled on screen first when it is not (the caller then lets the view rest)
    headTarget: (k) => {
      const w = ab.win(), d = w.document;
      const hv = d.querySelector('[data-testid=head-view]'), stack = d.querySelector('[data-testid=head-canvas]');
      const n = +hv.dataset.rows, rowH = +hv.dataset.rowHeight, padTop = +hv.dataset.top;
      const side = k % 2 === 0 ? 'left' : 'right';
      const i = Math.round(((k * 0.6180339887) % 1) * (n - 1));
      const x = +(side === 'left' ? hv.dataset.leftX : hv.dataset.rightX);
      const y = padTop + (i + 0.5) * rowH;
      let r = stack.getBoundingClientRect(), scrolled = false;
      if (r.top + y < 60 || r.top + y > w.innerHeight - 20) {
        scroller(w, stack).scrollTop += r.top + y - w.innerHeight / 2;
        scrolled = true;
        r = stack.getBoundingClientRect();
      }
      const o = off();
      return {x: o.x + r.left + x, y: o.y + r.top + y, expect: `${side}:${i}`, scrolled};
    },
    // a point of the matrix plot at fractions (fx, fy)
    matrixPoint: (fx, fy) => {
      const d = ab.win().document, m = mv(d);
      const c = m.querySelector('[data-testid=matrix-canvas]') || m.querySelector('canvas').parentElement;
      const r = c.getBoundingClientRect(), o = off();
      return {x: o.x + r.left + +m.dataset.left + fx * +m.dataset.width, y: o.y + r.top + +m.dataset.top + fy * +m.dataset.height,
              expect: null, scrolled: false};
    },
    reset: async () => {
      const d = ab.win().document, b = d.querySelector('[data-testid=matrix-reset]');
      if (b) b.click();
    },
  };
}
"""


# The method's floor with something to draw: a blank page whose mousemove (and non-passive wheel) handler fills
# one 8 x 8 square of a canvas (what any hover / zoom pays here: input delivery, a main frame, commit, display).
FLOOR_PAGE = """<html><body style="margin:0"><canvas id="c" width="600" height="400"></canvas><script>
const c = document.getElementById('c'), g = c.getContext('2d');
c.addEventListener('mousemove', (e) => { g.clearRect(0, 0, 600, 400); g.fillRect(e.offsetX - 4, e.offsetY - 4, 8, 8);
  c.dataset.hover = e.offsetX + ',' + e.offsetY; });
let wheels = 0;
c.addEventListener('wheel', (e) => { e.preventDefault(); wheels++; g.clearRect(0, 0, 600, 400); g.fillRect(wheels * 10 % 600, 200, 8, 8);
  c.dataset.hover = 'wheel ' + wheels; }, {passive: false});
</script></body></html>"""


class FloorTab:
    """Stands in for ``Tab`` (``page``, ``errors``, ``close``) on FLOOR_PAGE."""

    def __init__(self, browser):
        from bench_browser import VIEWPORT

        self.page = browser.new_page(viewport=VIEWPORT)
        self.errors: list = []
        self.page.set_content(FLOOR_PAGE)

    def close(self) -> None:
        self.page.close()


# ------------------------------------------------------------------------------------------------ the trace
@dataclass
class Measured:
    """One input event, from the trace (ms; None where the trace has no such stage)."""
    kind: str
    t0: float  # trace clock, us
    total: float | None  # event timestamp -> presentation of the first frame committed after the handler
    to_handler: float | None
    handler: float | None
    to_commit: float | None
    to_present: float | None
    latency_end: float  # the EventLatency slice's own end (its termination when no frame carried it)
    source: str = ""  # "own": Chromium's EventLatency reached presentation; "matched": the frame found after it
    agree: bool = False  # own and matched agree (the matching rule checked against Chromium's own attribution)


def _async_groups(events: list, pid: int, match) -> list:
    """Nested async slices (b/e) of one process, grouped per top-level ``match`` slice, by id and order."""
    by_id: dict = defaultdict(list)
    for e in events:
        if e.get("pid") == pid and e.get("ph") in ("b", "e") and match(e):
            by_id[json.dumps(e.get("id2") or e.get("id"))].append(e)
    out = []
    for evs in by_id.values():
        evs.sort(key=lambda e: e["ts"])
        cur = None
        depth = 0
        for e in evs:
            if cur is None:
                if e["ph"] == "b":
                    cur, depth = {"b": e["ts"], "args": e.get("args", {}), "name": e["name"], "stages": {}}, 1
                continue
            if e["ph"] == "b":
                depth += 1
                cur["stages"].setdefault(e["name"], [e["ts"], None])
            else:
                depth -= 1
                if depth == 0:
                    cur["e"] = e["ts"]
                    out.append(cur)
                    cur = None
                elif e["name"] in cur["stages"] and cur["stages"][e["name"]][1] is None:
                    cur["stages"][e["name"]][1] = e["ts"]
    return sorted(out, key=lambda g: g["b"])


def _first_at_or_after(ts: list, t: float) -> float | None:
    i = bisect.bisect_left(ts, t)
    return ts[i] if i < len(ts) else None


def parse_trace(events: list, event_type: str) -> list[Measured]:
    """Every ``EventLatency`` of ``event_type`` (``MOUSE_MOVED_EVENT``, ``MOUSE_WHEEL``) with its presentation.

    A mouse move's ``EventLatency`` ends with the handlers (this Chromium attributes no frame to it), so its frame is
    found on the renderer's frame track: the first ``Commit`` that starts after the handlers ended (and before the
    next event), then the first compositor frame submitted from then on and its presentation
    (``SubmitCompositorFrameToPresentationCompositorFrame``). Only begin / end timestamps are used: the exported
    ``PipelineReporter`` slices of overlapping frames share ids and do not nest reliably. Chromium carries a wheel's
    ``EventLatency`` to its presentation itself (``own``): there the same rule is computed too and compared (``agree``).
    """
    lat_pids = {e["pid"] for e in events if e.get("name") == "EventLatency"}
    out: list[Measured] = []
    ms = lambda a, b: (b - a) / 1000 if a is not None and b is not None else None  # noqa: E731
    for pid in lat_pids:
        lats = _async_groups(events, pid, lambda e: "input" in e.get("cat", "") and "benchmark" in e.get("cat", "")
                             and "devtools.timeline.frame" not in e.get("cat", ""))
        track: dict = defaultdict(list)  # (name, ph) -> sorted timestamps on the renderer's frame track
        for e in events:
            if e.get("pid") == pid and "devtools.timeline.frame" in e.get("cat", "") and e.get("ph") in ("b", "e"):
                track[(e["name"], e["ph"])].append(e["ts"])
        for v in track.values():
            v.sort()
        submit = "SubmitCompositorFrameToPresentationCompositorFrame"
        by_t0: dict = defaultdict(list)  # a wheel also leaves a second, frameless EventLatency with its timestamp
        for g in lats:
            if g["name"] == "EventLatency" and g["args"].get("event_latency", {}).get("event_type", "") == event_type:
                by_t0[g["b"]].append(g)
        starts = sorted(by_t0)
        for k, t0 in enumerate(starts):
            gs = sorted(by_t0[t0], key=lambda g: submit not in g["stages"])
            g = gs[0]
            main = g["stages"].get("RendererMainProcessing")
            h0, h1 = (main[0], main[1]) if main and main[1] else (None, g["e"])
            c0 = _first_at_or_after(track[("Commit", "b")], h1)
            if c0 is not None and k + 1 < len(starts) and c0 >= starts[k + 1]:
                c0 = None  # no commit before the next event: nothing drawn for this one
            s0 = _first_at_or_after(track[(submit, "b")], c0) if c0 is not None else None
            p1 = _first_at_or_after(track[(submit, "e")], s0) if s0 is not None else None
            matched = ms(t0, p1)
            if submit in g["stages"]:
                own_c0 = g["stages"]["Commit"][0] if "Commit" in g["stages"] else None
                total = ms(t0, g["e"])
                out.append(Measured(event_type, t0, total, ms(t0, h0), ms(h0, h1), ms(h1, own_c0), ms(own_c0, g["e"]),
                                    total, "own", matched is not None and abs(matched - total) < 0.05))
            else:
                out.append(Measured(event_type, t0, matched, ms(t0, h0), ms(h0, h1), ms(h1, c0), ms(c0, p1),
                                    ms(t0, g["e"]), "matched" if matched is not None else ""))
    return sorted(out, key=lambda m: m.t0)


class Tracer:
    """Chromium's own tracing through a CDP session of the page (the whole browser is traced)."""

    def __init__(self, page, cdp):
        self.page, self.cdp = page, cdp
        self.events: list = []
        self.done = False
        cdp.on("Tracing.dataCollected", lambda m: self.events.extend(m["value"]))
        cdp.on("Tracing.tracingComplete", lambda m: setattr(self, "done", True))

    def start(self) -> None:
        self.events, self.done = [], False
        self.cdp.send("Tracing.start", {"traceConfig": {"includedCategories": CATEGORIES, "recordMode": "recordAsMuchAsPossible"},
                                        "transferMode": "ReportEvents"})

    def stop(self) -> list:
        self.cdp.send("Tracing.end")
        t = time.perf_counter()
        while not self.done and time.perf_counter() - t < 60:
            self.page.wait_for_timeout(50)
        return self.events


# ------------------------------------------------------------------------------------------------ input
@dataclass
class CaseResult:
    name: str
    throttle: float
    measured: list = field(default_factory=list)
    sent: int = 0
    unchanged: int = 0  # events after which the view did not show the change expected (idle: showed one)


def run_events(tab: Tab, tracer: Tracer, view: str, kind: str, count: int, rest_ms: int, dump: str = "",
               jitter_ms: float = 0.0) -> CaseResult:
    """``count`` trusted events of ``kind`` (hover / zoom / idle), each after ``rest_ms`` of rest plus a random
    ``[0, jitter_ms)`` (seeded), traced."""
    page = tab.page
    rng = random.Random(f"{view} {kind} {count}")
    if view == "floor":
        st = lambda: page.evaluate("() => document.getElementById('c').dataset.hover || ''")  # noqa: E731
    else:
        st = lambda: page.evaluate("(v) => window.__ab.hv.state(v)", view)  # noqa: E731
    res = CaseResult("", 1.0)

    def target(k: int) -> dict:
        if view == "floor":
            return {"x": 20 + (k * 37) % 500, "y": 20 + (k * 23) % 300, "expect": None, "scrolled": False}
        if view == "head":
            return page.evaluate("(k) => window.__ab.hv.headTarget(k)", k)
        return page.evaluate("([a, b]) => window.__ab.hv.matrixPoint(a, b)", [(k * 0.618) % 1 * 0.9 + 0.05, (k * 0.382 + 0.1) % 1 * 0.9 + 0.05])

    if kind == "zoom":  # the pointer on a fixed point of the plot; in (deltaY -240) then out
        p = target(3)
        page.mouse.move(p["x"], p["y"])
    elif kind == "idle":  # where the pointer is: a hover first (not traced)
        p = target(1)
        page.mouse.move(p["x"], p["y"])
    page.wait_for_timeout(rest_ms + 300)
    tracer.start()
    page.wait_for_timeout(200)
    nxt = target(0) if kind == "hover" else None
    for k in range(count):
        if kind == "hover" and nxt["scrolled"]:
            page.wait_for_timeout(500)
            nxt = target(k)  # coordinates after the scroll
        before = st()
        page.wait_for_timeout(rest_ms + rng.uniform(0, jitter_ms))
        if kind == "hover":
            page.mouse.move(nxt["x"], nxt["y"])
        elif kind == "zoom":
            page.mouse.wheel(0, -240 if k < count // 2 else 240)
        else:
            page.mouse.move(p["x"], p["y"])
        res.sent += 1
        page.wait_for_timeout(250)
        after = st()
        if kind == "hover" and nxt["expect"] is not None:
            changed = after == nxt["expect"]
        else:
            changed = after != before
        if changed != (kind != "idle"):
            res.unchanged += 1
        if kind == "hover" and k + 1 < count:
            nxt = target(k + 1)
    page.wait_for_timeout(300)
    events = tracer.stop()
    if dump:
        with open(dump, "w") as f:
            json.dump(events, f)
    res.measured = parse_trace(events, "MOUSE_WHEEL" if kind == "zoom" else "MOUSE_MOVED_EVENT")
    if kind == "zoom" and view != "floor":
        page.evaluate("() => window.__ab.hv.reset()")
    return res


# ------------------------------------------------------------------------------------------------ logdir
def prepare_logdir(workdir: str) -> None:
    """Run ``bench/syn512`` (synthetic 6 x 12 x 512) and run ``long`` (bench_browser --long's q/k layers)."""
    if not os.path.isdir(os.path.join(workdir, "bench")):
        from synthetic import structured_attention

        logs = BenchLogdir(workdir)
        rec = logs.add("syn512", structured_attention(6, 12, 512), synthetic_tokens(512), "synthetic")
        logs.close()
        print(f"# logged synthetic 6x12x512: write {rec.write_s:.1f} s", flush=True)
    if not os.path.isdir(os.path.join(workdir, "long")):
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        t = time.perf_counter()
        # a subprocess with its own address-space cap (bench_browser's LONG_WRITER): nothing n^2 allocated whole
        subprocess.run([sys.executable, "-c", LONG_WRITER, workdir, os.path.join(ROOT, "bench")], env=env,
                       capture_output=True, text=True, check=True)
        print(f"# logged long layers (1024 / 8192 / 32768 tokens from q/k): {time.perf_counter() - t:.1f} s", flush=True)


CASES = [  # name, run, example, tokens, view
    ("floor: 8 px square", "", "", 0, "floor"),
    ("head 512", "bench", "syn512", 512, "head"),
    ("matrix 512", "bench", "syn512", 512, "matrix"),
    ("head 32768", "long", "32768", 32768, "head"),
    ("matrix 32768", "long", "32768", 32768, "matrix"),
]


def stats(values: list) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    return f"{pct(v, 50):.1f} / {pct(v, 95):.1f} / {max(v):.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hovers", type=int, default=30)
    ap.add_argument("--zooms", type=int, default=20)
    ap.add_argument("--idle", type=int, default=12)
    ap.add_argument("--rest", type=int, default=350, help="ms of rest before each event")
    ap.add_argument("--jitter", type=float, default=FRAME_MS,
                    help="ms of random rest added (input at random phases of the frame clock; 0: none)")
    ap.add_argument("--cpu-throttle", default="1,4", help="comma-separated rates (Emulation.setCPUThrottlingRate)")
    ap.add_argument("--keep", help="write the logdir here and keep it (an existing one is measured again)")
    ap.add_argument("--dump-traces", help="diagnosis: write each trace (JSON events) into this folder")
    ap.add_argument("--only", help="comma-separated case names (e.g. 'head 512')")
    args = ap.parse_args()
    rates = [float(r) for r in args.cpu_throttle.split(",")]
    cases = [c for c in CASES if not args.only or c[0] in args.only.split(",")]
    t_start = time.perf_counter()

    from playwright.sync_api import sync_playwright

    workdir = args.keep or tempfile.mkdtemp(prefix="bench_hover_")
    os.makedirs(workdir, exist_ok=True)
    prepare_logdir(workdir)
    tb = start_tensorboard(workdir, 4)
    results: list[tuple[str, str, float, CaseResult]] = []
    try:
        with sync_playwright() as p:
            browser = launch(p)
            info = machine_info(browser.version)
            for rate in rates:
                for name, run, example, n, view in cases:
                    if view == "floor":
                        tab = FloorTab(browser)
                    else:
                        tab = Tab(browser, tb.url, example, hash_extra=f"&p.attention.run={run}&p.attention.view={view}")
                        tab.page.evaluate(HOVER_HELPERS)
                        tab.page.wait_for_function("([v, n]) => window.__ab.hv.ready(v, n)", arg=[view, n], timeout=tab.timeout_ms)
                    cdp = tab.page.context.new_cdp_session(tab.page)
                    if rate != 1:
                        cdp.send("Emulation.setCPUThrottlingRate", {"rate": rate})
                    tracer = Tracer(tab.page, cdp)
                    kinds = [("hover", args.hovers)] + ([("zoom", args.zooms)] if view in ("matrix", "floor") else []) + \
                        ([("idle", args.idle)] if view != "floor" else [])
                    for kind, count in kinds:
                        dump = os.path.join(args.dump_traces, f"{rate:g}x-{name}-{kind}.json".replace(" ", "_")) if args.dump_traces else ""
                        r = run_events(tab, tracer, view, kind, count, args.rest, dump, args.jitter)
                        r.name, r.throttle = name, rate
                        results.append((name, kind, rate, r))
                        tot = [m.total for m in r.measured if m.total is not None]
                        own = [m for m in r.measured if m.source == "own"]
                        check = f", Chromium's own attribution: {len(own)} (matching rule agrees on {sum(m.agree for m in own)})" if own else ""
                        print(f"  {rate:g}x {name} {kind}: sent {r.sent}, traced {len(r.measured)}, presented {len(tot)}{check}, "
                              f"{'changed' if kind == 'idle' else 'unchanged'} {r.unchanged}; event->presentation p50/p95/max "
                              f"{stats(tot)} ms", flush=True)
                    if tab.errors:
                        print("  page errors:", tab.errors[:3], flush=True)
                    tab.close()
            browser.close()
    finally:
        tb.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"Machine: {info}. Whole bench {time.perf_counter() - t_start:.0f} s; rest {args.rest} ms + U[0, {args.jitter:g}) ms before each event; "
          f"Chromium tracing categories {','.join(CATEGORIES)}.")
    print()
    print(table(results))
    own = [m for _, kind, _, r in results if kind == "zoom" for m in r.measured if m.source == "own"]
    if own:
        print()
        print(f"Wheel events whose EventLatency Chromium carried to presentation itself: {len(own)}; the rule used for "
              f"mouse moves (first commit after the handler, its frame's presentation) gives the same time (±0.05 ms) "
              f"for {sum(m.agree for m in own)} of them.")


def table(results: list) -> str:
    """Markdown: per case and event kind, n and the event->presentation p50 / p95 / max with its breakdown (p50)."""
    rows = ["| CPU | case | event | n (presented / sent) | event → presentation p50 / p95 / max | target p95 "
            "| to handler p50 | handler p50 / p95 | handler → commit p50 | commit → presented p50 |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, kind, rate, r in results:
        ms = r.measured
        tot = [m.total for m in ms if m.total is not None]
        target = TARGETS.get(rate)
        if kind == "idle":
            verdict = f"no frame: {len(ms) - len(tot)} of {len(ms)}; event latency ends {stats([m.latency_end for m in ms])}"
        elif tot and target:
            verdict = f"{'✓' if pct(tot, 95) <= target else '✗'} (≤ {target:g} ms)"
        else:
            verdict = "-"
        h = [m.handler for m in ms]
        med = lambda xs: f"{pct([x for x in xs if x is not None], 50):.1f}" if any(x is not None for x in xs) else "-"  # noqa: E731
        hs = [x for x in h if x is not None]
        rows.append(f"| {rate:g}x | {name} | {kind} | {len(tot)} / {r.sent} | {stats(tot)} ms | {verdict} | "
                    f"{med([m.to_handler for m in ms])} | {pct(hs, 50):.1f} / {pct(hs, 95):.1f} | "
                    f"{med([m.to_commit for m in ms])} | {med([m.to_present for m in ms])} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
