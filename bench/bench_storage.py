"""Logdirs on object storage: what each view costs from s3://, and the tab's time to usable next to a local logdir.

    .venv/bin/python bench/bench_storage.py [--repeats 3]

Setup: moto's S3 server on 127.0.0.1 with a counting TCP proxy in front of it (TensorBoard's ``S3_ENDPOINT``
is the proxy: every S3 request TensorBoard and the plugin make is counted, with the bytes sent back, headers
included). One run, BERT-base-like: 12 layers x 12 heads x 128 tokens with q/k (head_dim 64), ``--repeats``
steps, written with ``AttentionWriter`` to ``s3://bench/runs/r`` and to a local directory.

* **per view** (a real ``tensorboard --logdir s3://bench/runs --load_fast=false``, the routes the tab calls):
  S3 requests and bytes for the record's first view (``/attention``, 12 heads of layer 0: the head view;
  cold: the record's header is read too), then another layer (warm), one head's q/k (``/qk``: the neuron
  view), the overview (``/overview``: the model view), and the same layer again (cached: no request).
* **time to usable** (headless Chromium): TensorBoard's page opened on the run at a step no request has
  touched, until the head view has drawn (``data-state=ready``, ``data-lines-rest``); median of ``--repeats``
  (one step each), s3:// next to the same run on a local disk (Python loader, and the default Rust loader).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "bench")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from browser_util import ROOT as TAB_ROOT, launch, open_tab, wait_attr  # noqa: E402
from conftest import TensorBoardProcess, softmax_attention  # noqa: E402
from storage_util import FaultProxy, MotoServer  # noqa: E402

LAYERS, HEADS, TOKENS, HEAD_DIM = 12, 12, 128, 64
HEAD = '[data-testid="head-view"]'


def write_run(logdir: str, steps: int) -> None:
    from tensorboard_plugin_attention.summary import AttentionWriter, log_attention

    tokens = ["[CLS]"] + [f"w{i}" for i in range(TOKENS - 2)] + ["[SEP]"]
    with AttentionWriter(logdir) as w:
        for step in range(steps):
            rng = np.random.default_rng(step)
            att = [softmax_attention(rng, HEADS, TOKENS, TOKENS) for _ in range(LAYERS)]
            qk = [rng.normal(size=(HEADS, TOKENS, HEAD_DIM)).astype(np.float32) for _ in range(LAYERS)]
            log_attention(w, "probes", att, tokens, step, queries=qk, keys=qk, metric_scalars=False)


def fmt_bytes(b: float) -> str:
    return f"{b / 1e6:.2f} MB" if b >= 1e6 else f"{b / 1e3:.1f} kB"


def per_view(tb: TensorBoardProcess, proxy: FaultProxy, step: int) -> list:
    q = dict(run="r", tag="probes", example="0", step=step, kind="encoder")
    rows = []
    for what, route, extra in (("head view, first layer of a record (cold: its header too)", "attention", {"layer": 0}),
                               ("head view, another layer", "attention", {"layer": 1}),
                               ("neuron view, one head's q/k", "qk", {"layer": 1, "head": 3}),
                               ("model view, overview", "overview", {}),
                               ("head view, a layer seen before", "attention", {"layer": 0})):
        r0, b0 = proxy.requests, proxy.bytes_down
        t = time.perf_counter()
        resp = tb.plugin(route, **q, **extra)
        ms = (time.perf_counter() - t) * 1e3
        assert resp.status == 200, resp.body[:300]
        rows.append((what, proxy.requests - r0, proxy.bytes_down - b0, len(resp.body), ms))
    return rows


def time_to_usable(browser, url: str, step: int) -> float:
    context = browser.new_context(viewport={"width": 1300, "height": 900}, service_workers="block")
    page = context.new_page()
    t = time.perf_counter()
    frame = open_tab(page, url, {"run": "r", "step": step}, timeout=120_000)
    wait_attr(frame, HEAD, "data-lines-rest", lambda v: bool(v) and v != "0", timeout=120_000)
    assert frame.get_attribute(TAB_ROOT, "data-state") == "ready"
    s = time.perf_counter() - t
    context.close()
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from bench_browser import machine_info

    steps = args.repeats + 1  # step 0 for the per-view table, one fresh step per tab repeat
    s3 = MotoServer().start()
    proxy = FaultProxy(s3.port, rb"(?!)")  # never matches: only counts
    os.environ.update(s3.env())
    s3.bucket("bench")
    tmp = tempfile.mkdtemp(prefix="bench_storage_")
    t = time.perf_counter()
    write_run("s3://bench/runs/r", steps)
    s3_write = time.perf_counter() - t
    t = time.perf_counter()
    write_run(os.path.join(tmp, "r"), steps)
    local_write = time.perf_counter() - t
    size = sum(s3.client().head_object(Bucket="bench", Key=k)["ContentLength"]
               for k in s3.keys("bench", "runs/r/plugins/attention/")) / steps

    servers = {}
    try:
        servers["s3:// (Python loader)"] = TensorBoardProcess("s3://bench/runs", "--load_fast=false",
                                                              env=s3.env(proxy.url)).start(90)
        servers["local (Python loader)"] = TensorBoardProcess(tmp, "--load_fast=false").start(90)
        servers["local (Rust loader)"] = TensorBoardProcess(tmp, "--load_fast=true").start(90)
        for tb in servers.values():
            tb.wait_for(lambda: len(tb.plugin("index").json()["runs"][0]["tags"][0]["examples"][0]["steps"]) == steps,
                        timeout=120, what="every step listed")
        rows = per_view(servers["s3:// (Python loader)"], proxy, 0)
        times = {name: [] for name in servers}
        with sync_playwright() as p:
            browser = launch(p)
            for i in range(args.repeats):
                for name, tb in servers.items():
                    times[name].append(time_to_usable(browser, tb.url, i + 1))
            version = browser.version
            browser.close()
    finally:
        for tb in servers.values():
            tb.stop()
        proxy.close()
        s3.stop()

    print(f"\nMachine: {machine_info(version)}")
    print(f"Record: {LAYERS} x {HEADS} x {TOKENS} with q/k (head_dim {HEAD_DIM}): {fmt_bytes(size)} stored per step; "
          f"writing {steps} steps took {s3_write:.2f} s to s3:// (moto), {local_write:.2f} s locally\n")
    print("| view (s3://, tensorboard --load_fast=false) | S3 requests | bytes from S3 | response body | route time |")
    print("|---|---:|---:|---:|---:|")
    for what, n, b, body, ms in rows:
        print(f"| {what} | {n} | {fmt_bytes(b)} | {fmt_bytes(body)} | {ms:.0f} ms |")
    print("\n| logdir | tab open → head view drawn (median of %d, cold steps) | max |" % args.repeats)
    print("|---|---:|---:|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.2f} s | {max(ts):.2f} s |")


if __name__ == "__main__":
    main()
