"""Head scores over a probe set at scale (issue 20): one command, a markdown report.

    .venv/bin/python bench/bench_heads.py [--examples 1000] [--steps 20] [--layers 12] [--heads 12] [--tokens 128]

The run: ``--examples`` probes of a 12 x 12 model at 128 tokens, logged for real with ``AttentionWriter`` at step 0
(structured synthetic attention, ``bench/synthetic.py``: 16 distinct tensors, each example's heads rolled by its
index so every example has its own per-head metrics; no q/k); that wall time / examples is the **logging time
per step** of one probe set. Steps 1 .. steps-1 replay step 0's index records (event files only, as
``bench_backend.py`` does) with each metric scaled by a step-dependent factor, so the index holds
examples x steps records whose scores move over training. (Their arrays point at step 0's asset records: the
Heads view reads index records only, which is what is measured here; opening an example at a replayed step
would be refused by the record check.)

Measured against a real ``tensorboard`` (each loader): **tab usable** = from spawning the process until
plugins_listing says active, ``/index`` lists every record and ``/headscores`` of the latest step answered; RSS
of TensorBoard and its children then and after ``/headtrend`` and every step's ``/headscores``; the routes' times
(cold: first request; warm: median of 5); ``/index`` size. In headless Chromium (``--disable-gpu``, 1300 x 900):
the **Heads view's first paint**, from clicking its button on the loaded tab (head view of an example at step 0,
whose arrays are real) until the heatmap and the chosen head's examples are drawn and the next frame produced
(``/headscores`` of step 0, ``/headtrend`` of all steps, ``/headexamples``; cold in the tab, each repeat a new page).
Targets: RSS < 1 GB, Heads first paint < 1 s.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "bench")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

RUN = "probeset"


def write_probe_set(logdir: str, examples: int, steps: int, layers: int, heads: int, n: int) -> dict:
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    from synthetic import structured_attention
    from tensorboard_plugin_attention import format as fmt
    from tensorboard_plugin_attention.metadata import PLUGIN_NAME
    from tensorboard_plugin_attention.summary import AttentionWriter, log_attention

    run = os.path.join(logdir, RUN)
    pool = [structured_attention(layers, heads, n, causal=True, seed=s) for s in range(16)]
    toks = ["<s>"] + [f"w{i % 40}" for i in range(1, n)]  # repeated tokens: induction is defined
    t = time.perf_counter()
    with AttentionWriter(run) as w:
        for i in range(examples):
            att = np.roll(pool[i % 16], i // 16, axis=1)
            log_attention(w, "probes", att, toks, 0, example=str(i), model_name="bench-12x12")
    write_s = time.perf_counter() - t
    (events,) = [f for f in os.listdir(run) if f.startswith("events")]
    recorded = [event_pb2.Event.FromString(raw)
                for raw in event_file_loader.RawEventFileLoader(os.path.join(run, events)).Load()]
    recorded = [e for e in recorded if e.HasField("summary")]
    index_bytes = []
    t = time.perf_counter()
    w = EventFileWriter(run, max_queue_size=1000, flush_secs=3600, filename_suffix=".replay")
    for step in range(1, steps):
        for e in recorded:
            e2 = event_pb2.Event()
            e2.CopyFrom(e)
            e2.step = step
            e2.wall_time = e.wall_time + step
            for v in e2.summary.value:
                if v.metadata.plugin_data.plugin_name == PLUGIN_NAME:
                    payload = json.loads(v.tensor.string_val[0])
                    payload["step"], payload["wall_time"] = step, e2.wall_time
                    factor = 1 + 0.5 * np.sin(step / 3)  # scores that move over training
                    for kind in payload.get("metrics", {}).values():
                        for name, grid in kind.items():
                            kind[name] = [[None if x is None else x * factor for x in row] for row in grid]
                    v.tensor.string_val[0] = fmt.encode_index(payload)
                    index_bytes.append(len(v.tensor.string_val[0]))
            w.add_event(e2)
    w.close()
    replay_s = time.perf_counter() - t
    event_bytes = sum(os.path.getsize(os.path.join(run, f)) for f in os.listdir(run) if f.startswith("events"))
    return dict(log_step_s=write_s, log_per_example_ms=write_s / examples * 1e3, replay_s=replay_s,
                index_bytes_per_record=statistics.mean(index_bytes) if index_bytes else 0, event_mb=event_bytes / 2**20)


def timed(f, repeats: int = 5) -> tuple:
    t = time.perf_counter()
    first = f()
    cold = time.perf_counter() - t
    warm = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        warm.append(time.perf_counter() - t)
    return first, cold * 1e3, statistics.median(warm) * 1e3


def bench_tensorboard(logdir: str, load_fast: str, examples: int, steps: int, browser: bool) -> dict:
    from bench_backend import rss_tree
    from conftest import TensorBoardProcess

    tb = TensorBoardProcess(logdir, f"--load_fast={load_fast}", "--reload_interval", "5")
    t0 = time.perf_counter()
    tb.start(timeout=300)
    out: dict = dict(loader="rust (--load_fast=true)" if load_fast == "true" else "python (--load_fast=false)",
                     ready_s=time.perf_counter() - t0)
    last = steps - 1

    def complete():
        r = tb.plugin("index")
        if r.status != 200:
            return False
        ex = [e for run in r.json()["runs"] for t in run["tags"] for e in t["examples"]]
        return len(ex) == examples and all(len(e["steps"]) == steps for e in ex)

    try:
        tb.wait_for(lambda: tb.get("/data/plugins_listing").json().get("attention", {}).get("enabled"), timeout=600,
                    interval=0.1, what="attention active")
        tb.wait_for(complete, timeout=900, interval=0.25, what=f"{examples * steps} records in /index")
        out["indexed_s"] = time.perf_counter() - t0
        r = tb.plugin("headscores", run=RUN, tag="probes", step=last)
        assert r.status == 200, r.body[:300]
        out["usable_s"] = time.perf_counter() - t0
        out["rss_usable_mb"] = rss_tree(tb.proc.pid) / 2**20
        idx, _, out["index_ms"] = timed(lambda: tb.plugin("index"))
        out["index_kb"], out["index_gz_kb"] = len(idx.body) / 1024, len(gzip.compress(idx.body, 3)) / 1024
        hs, out["headscores_cold_ms"], out["headscores_warm_ms"] = timed(
            lambda: tb.plugin("headscores", run=RUN, tag="probes", step=last - 1))
        out["headscores_kb"] = len(hs.body) / 1024
        assert hs.json()["examples"] == examples
        tr, out["headtrend_cold_ms"], out["headtrend_warm_ms"] = timed(lambda: tb.plugin("headtrend", run=RUN, tag="probes"))
        out["headtrend_kb"] = len(tr.body) / 1024
        _, out["headexamples_cold_ms"], out["headexamples_warm_ms"] = timed(lambda: tb.plugin(
            "headexamples", run=RUN, tag="probes", step=last, metric="induction", layer=3, head=5))
        for s in range(steps):
            assert tb.plugin("headscores", run=RUN, tag="probes", step=s).status == 200
        out["rss_all_steps_mb"] = rss_tree(tb.proc.pid) / 2**20
        if browser:
            out.update(bench_browser(tb, last))
            out["rss_after_browser_mb"] = rss_tree(tb.proc.pid) / 2**20
        return out
    finally:
        tb.stop()


def bench_browser(tb, step: int, repeats: int = 3) -> dict:
    from playwright.sync_api import sync_playwright

    from browser_util import hash_for, launch, wait_ready

    paints, loaded = [], []
    with sync_playwright() as p:
        browser = launch(p)
        try:
            for r in range(repeats):
                page = browser.new_page(viewport={"width": 1300, "height": 900})
                t = time.perf_counter()
                # a fresh page each time: the tab's cache is empty (the backend's stacks stay warm after the first)
                page.goto(tb.url + "/" + hash_for({"run": RUN, "tag": "probes", "example": str(r), "step": 0}))
                frame = wait_ready(page, timeout=120_000)
                loaded.append(time.perf_counter() - t)
                ms = frame.evaluate("""async () => {
                  const t0 = performance.now();
                  document.querySelector('[data-testid="view-heads"]').click();
                  const drawn = () => { const e = document.querySelector('[data-testid="heads-heatmap"]');
                    const root = document.querySelector('[data-testid="attention-root"]');
                    return e && e.dataset.cells && root.dataset.state === 'ready'
                      && document.querySelector('[data-testid="heads-example-0"]'); };
                  while (!drawn()) await new Promise((r) => setTimeout(r, 5));
                  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
                  return performance.now() - t0; }""")
                paints.append(ms)
                page.close()
        finally:
            browser.close()
    return dict(tab_loaded_s=statistics.median(loaded), heads_first_paint_ms=paints[0],
                heads_paint_median_ms=statistics.median(paints), heads_paint_max_ms=max(paints))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--loaders", default="false,true", help="--load_fast values to measure")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--keep", metavar="DIR", help="write the logdir here and keep it")
    args = ap.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="bench_heads_")
    try:
        t0 = datetime.datetime.now(datetime.timezone.utc)
        w = write_probe_set(work, args.examples, args.steps, args.layers, args.heads, args.tokens)
        rows = [bench_tensorboard(work, lf, args.examples, args.steps, not args.no_browser) for lf in args.loaders.split(",")]
        load = os.getloadavg()
        print(f"## Heads at scale: {args.examples} examples x {args.steps} steps, {args.layers} x {args.heads} heads, "
              f"{args.tokens} tokens\n")
        print(f"{t0:%Y-%m-%d %H:%M} UTC, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, "
              f"nproc {os.cpu_count()}, Python {platform.python_version()}\n")
        print(f"Logging one step of the probe set: {w['log_step_s']:.1f} s ({w['log_per_example_ms']:.0f} ms per example); "
              f"index record {w['index_bytes_per_record'] / 1024:.1f} KB; event files {w['event_mb']:.0f} MB\n")
        keys = [k for k in rows[0] if k != "loader"]
        print("| | " + " | ".join(r["loader"] for r in rows) + " |")
        print("|---|" + "---|" * len(rows))
        for k in keys:
            print(f"| {k} | " + " | ".join(f"{r.get(k, float('nan')):.1f}" for r in rows) + " |")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
