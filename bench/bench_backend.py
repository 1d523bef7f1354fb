"""Backend benchmark: one command, prints tables (and --markdown for docs/performance.md).

    .venv/bin/python bench/bench_backend.py [--markdown]

1. Per-request cost of one layer (12 heads) at 128 / 512 / 2048 tokens, through TensorBoard's WSGI app
   (werkzeug test client, in process, MultiplexerDataProvider): response size (raw and as sent) and server
   time, cold (first request: read the chunks from disk) and warm (cache hit), for three clients: no
   compression, ``Accept-Encoding: gzip`` (Python's urllib, curl) and a browser's
   ``gzip, deflate, br, zstd``; also one head, one head's q/k and the overview.
2. The routes computed from several layers or steps (``/metrics``, ``/divergence``, ``/rollout``), cold and
   warm, on 6 layers x 12 heads x 512 tokens and 2 layers x 12 heads x 2048 tokens.
3. A real ``tensorboard`` process on 50 checkpoints x 8 probes at 512 tokens with q/k (6 layers x 12 heads,
   MiniLM's shape) under both loaders: time from spawning it until the tab is usable (``/data/plugins_listing``
   lists attention as active, ``/index`` lists all 400 records, and one ``/attention`` layer was served) and
   resident memory of TensorBoard and its children (the Rust data server), after loading and after serving
   layers.

Attention is structured, not noise (``bench/synthetic.py``, shared with bench_format): per head a local window,
an attention sink on token 0, long-range links and a faint diffuse background. Writing 400 distinct 512-token records would take most of
the time budget, so the 8 probes are logged once with ``log_attention`` (timed: the writer's cost) and their
event records are replayed for the other 49 steps (same index payload with its step changed, pointing at the
same asset records). TensorBoard loads only index records, so load time and memory are those of 400 distinct
records; the asset bytes per record are reported from the real write.
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
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # conftest.TensorBoardProcess
sys.path.insert(0, os.path.join(ROOT, "bench"))  # synthetic.structured_attention, shared with bench_format

HEADS = 12
PREFIX = "/data/plugin/attention"
CLIENTS = (("none", {}), ("gzip", {"Accept-Encoding": "gzip"}),
           ("browser", {"Accept-Encoding": "gzip, deflate, br, zstd"}))


# ------------------------------------------------------------------------------------------ data
def tokens(n: int) -> list:
    return ["[CLS]"] + [f"w{i}" for i in range(1, n - 1)] + ["[SEP]"]


def log_probe(writer, tag, example, step, n, layers, head_dim, seed):
    from tensorboard_plugin_attention.summary import log_attention

    from synthetic import structured_attention, structured_qk

    att = structured_attention(layers, HEADS, n, seed=seed)
    q, k = structured_qk(layers, HEADS, n, head_dim, seed=seed)
    log_attention(writer, tag, list(att), tokens(n), step, example=example, queries=list(q), keys=list(k),
                  model_name="bench")


# ------------------------------------------------------------------------------------ 1. per layer
class App:
    """TensorBoard's WSGI app with only our plugin over a MultiplexerDataProvider, and a werkzeug client."""

    def __init__(self, logdir: str):
        from werkzeug.test import Client

        from tensorboard.backend import application
        from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

        from tensorboard_plugin_attention.plugin import AttentionLoader

        m = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={"attention": 0})
        m.AddRunsFromDirectory(logdir)
        m.Reload()
        flags = argparse.Namespace(logdir=logdir, samples_per_plugin={"attention": 0}, window_title="",
                                   path_prefix="", attention_cache_mb=256)
        provider = data_provider.MultiplexerDataProvider(m, logdir)
        self.client = Client(application.TensorBoardWSGIApp(flags, [AttentionLoader()], provider))

    def get(self, route: str, headers=None, **params):
        return self.client.get(PREFIX + route, query_string=params, headers=headers or {})


def decoded_body(resp_headers, body: bytes) -> bytes:
    enc = resp_headers.get("Content-Encoding")
    return gzip.decompress(body) if enc == "gzip" else zlib.decompress(body) if enc == "deflate" else body


def bench_layers(workdir: str, sizes=(128, 512, 2048), repeats: int = 5, cold_repeats: int = 3) -> list:
    from tensorboard_plugin_attention import format as fmt
    from tensorboard_plugin_attention.summary import AttentionWriter

    logdir = os.path.join(workdir, "layers")
    runs = [(n, f"n{n}", "") for n in sizes]
    for n, run, _ in runs:
        with AttentionWriter(os.path.join(logdir, run)) as w:
            log_probe(w, "probes", "0", 0, n, layers=1, head_dim=64, seed=n)
    if hasattr(fmt, "compress_chunk"):  # the same 2048 tokens as written before compress_chunk (plain zlib)
        n = max(sizes)
        real, fmt.compress_chunk = fmt.compress_chunk, lambda data, level=1: zlib.compress(data, level)
        try:
            with AttentionWriter(os.path.join(logdir, "old")) as w:
                log_probe(w, "probes", "0", 0, n, layers=1, head_dim=64, seed=n)
        finally:
            fmt.compress_chunk = real
        runs.append((n, "old", " (older chunks)"))
    rows = []
    for n, run, note in runs:
        params = dict(run=run, tag="probes", example="0", step="0", kind="encoder")
        cases = [("/attention", dict(layer="0"), CLIENTS), ("/attention (1 head)", dict(layer="0", head="0"),
                                                            CLIENTS[1:]),
                 ("/qk (1 head)", dict(layer="0", head="0"), CLIENTS[:1]),  # q/k are never compressed
                 ("/overview", {}, CLIENTS[1:])]
        if note:
            cases = cases[:2]
        for label, extra, clients in cases:
            route = label.split()[0]
            for client, headers in clients:
                colds = []
                for _ in range(cold_repeats):
                    app = App(logdir)  # fresh caches: the first request is cold
                    app.get("/index")  # the index is not part of the per-layer cost
                    times = []
                    for _ in range(repeats + 1):
                        t = time.perf_counter()
                        resp = app.get(route, headers=headers, **params, **extra)
                        body = resp.get_data()
                        times.append(time.perf_counter() - t)
                        assert resp.status_code == 200, resp.get_data()[:200]
                    colds.append(times[0])
                raw = len(decoded_body(resp.headers, body))
                rows.append(dict(tokens=f"{n}{note}", route=label, client=client,
                                 encoding=resp.headers.get("Content-Encoding") or "-", raw_bytes=raw,
                                 sent_bytes=len(body), cold_ms=statistics.median(colds) * 1e3,
                                 warm_ms=statistics.median(times[1:]) * 1e3))
    asset = {n: sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in
                    os.walk(os.path.join(logdir, f"n{n}", "plugins")) for f in fs) for n in sizes}
    return rows, asset


def bench_derived(workdir: str, cases=((512, 6), (2048, 2)), repeats: int = 3, cold_repeats: int = 3) -> list:
    """/metrics, /divergence (steps 0 and 1) and /rollout on one example logged at two steps."""
    from tensorboard_plugin_attention.summary import AttentionWriter

    logdir = os.path.join(workdir, "derived")
    rows = []
    for n, layers in cases:
        run = f"n{n}x{layers}"
        with AttentionWriter(os.path.join(logdir, run)) as w:
            for step in (0, 1):
                log_probe(w, "probes", "0", step, n, layers=layers, head_dim=32, seed=n + step)
    for n, layers in cases:
        run = f"n{n}x{layers}"
        base = dict(run=run, tag="probes", example="0")
        for route, params in (("/metrics", base), ("/divergence", dict(base, kind="encoder", step_a="0", step_b="1")),
                              ("/rollout", dict(base, kind="encoder", step="1"))):
            colds = []
            for _ in range(cold_repeats):
                app = App(logdir)
                app.get("/index")
                times = []
                for _ in range(repeats + 1):
                    t = time.perf_counter()
                    resp = app.get(route, headers=dict(CLIENTS)["browser"], **params)
                    body = resp.get_data()
                    times.append(time.perf_counter() - t)
                    if resp.status_code == 404 and "error" in json.loads(decoded_body(resp.headers, body)):
                        break  # a plugin without these routes (the baseline)
                    assert resp.status_code == 200, body[:200]
                else:
                    colds.append(times[0])
            if colds:
                rows.append(dict(tokens=n, layers=layers, route=route, sent_bytes=len(body),
                                 cold_ms=statistics.median(colds) * 1e3, warm_ms=statistics.median(times[1:]) * 1e3))
    return rows


# ------------------------------------------------------------------------------------ 2. tensorboard
def write_checkpoints(logdir: str, steps: int, probes: int, n: int, layers: int) -> dict:
    """8 probes logged for real at step 0, their events replayed for steps 1..steps-1 (see module doc)."""
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    from tensorboard_plugin_attention import format as fmt
    from tensorboard_plugin_attention.metadata import PLUGIN_NAME
    from tensorboard_plugin_attention.summary import AttentionWriter

    run = os.path.join(logdir, "minilm_shape")
    t = time.perf_counter()
    with AttentionWriter(run) as w:
        for p in range(probes):
            log_probe(w, "probes", str(p), 0, n, layers=layers, head_dim=32, seed=p + 1)
    write_s = time.perf_counter() - t
    (events,) = [f for f in os.listdir(run) if f.startswith("events")]
    recorded = [event_pb2.Event.FromString(raw)
                for raw in event_file_loader.RawEventFileLoader(os.path.join(run, events)).Load()]
    recorded = [e for e in recorded if e.HasField("summary")]
    index_bytes = []
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
                    payload["step"] = step
                    payload["wall_time"] = e2.wall_time
                    v.tensor.string_val[0] = (fmt.encode_index(payload) if hasattr(fmt, "encode_index")  # v2: signed
                                              else json.dumps(payload, separators=(",", ":")).encode())
                    index_bytes.append(len(v.tensor.string_val[0]))
            w.add_event(e2)
    w.close()
    asset_bytes = sum(os.path.getsize(os.path.join(run, "plugins", "attention", f))
                      for f in os.listdir(os.path.join(run, "plugins", "attention")))
    event_bytes = sum(os.path.getsize(os.path.join(run, f)) for f in os.listdir(run) if f.startswith("events"))
    return dict(write_s_per_probe=write_s / probes, asset_bytes_per_record=asset_bytes / probes,
                index_bytes_per_record=statistics.mean(index_bytes), event_bytes=event_bytes)


def rss_tree(pid: int) -> int:
    import psutil

    p = psutil.Process(pid)
    total = p.memory_info().rss
    for c in p.children(recursive=True):
        try:
            total += c.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def baseline_rss(logdir: str, load_fast: str) -> float:
    """RSS (MB) of TensorBoard and its children on a logdir without attention, for reference."""
    from conftest import TensorBoardProcess

    tb = TensorBoardProcess(logdir, f"--load_fast={load_fast}", "--reload_interval", "1")
    try:
        tb.start(timeout=120)
        tb.get("/data/plugins_listing")
        time.sleep(2)
        return rss_tree(tb.proc.pid) / 2**20
    finally:
        tb.stop()


def browser_get(tb, route: str, **params) -> tuple:
    """GET as a browser asks (gzip, deflate, br, zstd): (status, headers, decoded body)."""
    import urllib.error
    import urllib.parse

    url = f"{tb.url}{PREFIX}/{route}?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(url, headers=dict(CLIENTS)["browser"])
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), decoded_body(r.headers, r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def bench_tensorboard(logdir: str, load_fast: str, steps: int, probes: int, layers: int) -> dict:
    """Times from spawning the process (HTTP ready has a 0.2 s polling granularity, conftest's; the later
    steps poll every 50 ms): "tab usable" = plugins_listing says active, /index lists every record, and the
    first layer (example 0, latest step, layer 0) was served as a browser asks for it."""
    from conftest import TensorBoardProcess

    tb = TensorBoardProcess(logdir, f"--load_fast={load_fast}", "--reload_interval", "1")
    t0 = time.perf_counter()
    tb.start(timeout=120)
    ready_s = time.perf_counter() - t0

    def active():
        return tb.get("/data/plugins_listing").json().get("attention", {}).get("enabled")

    def complete():
        r = tb.plugin("index")
        if r.status != 200:
            return False
        ex = [e for run in r.json()["runs"] for t in run["tags"] for e in t["examples"]]
        return len(ex) == probes and all(len(e["steps"]) == steps for e in ex)

    try:
        tb.wait_for(active, timeout=300, interval=0.05, what="attention active in plugins_listing")
        active_s = time.perf_counter() - t0
        tb.wait_for(complete, timeout=300, interval=0.05, what=f"{steps * probes} records in /index")
        load_s = time.perf_counter() - t0
        # Arrays are served from step 0's records: a replayed index record points at step 0's asset record,
        # which readers since format v2 refuse to serve for another step (the record check).
        status, _, _ = browser_get(tb, "attention", run="minilm_shape", tag="probes", example="0", step=0,
                                   kind="encoder", layer=0)
        assert status == 200
        usable_s = time.perf_counter() - t0
        rss_usable = rss_tree(tb.proc.pid)
        index_times = []
        for _ in range(5):
            t = time.perf_counter()
            idx = tb.plugin("index")
            index_times.append(time.perf_counter() - t)
        index_ms = statistics.median(index_times) * 1e3
        rss_loaded = rss_tree(tb.proc.pid)
        times = []
        for i in range(1, 25):  # distinct layers (distinct asset records x layers), cold
            t = time.perf_counter()
            status, _, _ = browser_get(tb, "attention", run="minilm_shape", tag="probes", example=str(i % probes),
                                       step=0, kind="encoder", layer=i % layers)
            times.append(time.perf_counter() - t)
            assert status == 200
        rss_served = rss_tree(tb.proc.pid)
        for i in range(60):  # clients name experiment ids freely (URL path or header)
            assert tb.get(f"/experiment/bench{i}{PREFIX}/index").status == 200
        rss_experiments = rss_tree(tb.proc.pid)
        return dict(loader="rust (--load_fast=true)" if load_fast == "true" else "python (--load_fast=false)",
                    ready_s=ready_s, active_s=active_s, load_s=load_s, usable_s=usable_s,
                    rss_usable_mb=rss_usable / 2**20, index_ms=index_ms,
                    index_kb=len(gzip.compress(idx.body, 3)) / 1024, index_raw_kb=len(idx.body) / 1024,
                    rss_loaded_mb=rss_loaded / 2**20, rss_served_mb=rss_served / 2**20,
                    rss_experiments_mb=rss_experiments / 2**20,
                    layer_ms=statistics.median(times) * 1e3)
    finally:
        tb.stop()


# ------------------------------------------------------------------------------------------- report
def machine() -> str:
    free = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.strip()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"nproc: {os.cpu_count()}, CPU: {cpu}, Python {platform.python_version()}\n\nfree -h:\n```\n{free}\n```"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables (for docs/performance.md)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--probes", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--sizes", default="128,512,2048")
    ap.add_argument("--tb-repeats", type=int, default=3, help="tensorboard processes per loader (median reported)")
    ap.add_argument("--tensorboard-only", action="store_true", help="only part 3 (a real tensorboard)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary logdir")
    args = ap.parse_args()

    import tensorboard

    started = time.perf_counter()
    work = tempfile.mkdtemp(prefix="bench_backend_")
    try:
        layer_rows, asset, derived_rows = [], {}, []
        if not args.tensorboard_only:
            layer_rows, asset = bench_layers(work, tuple(int(s) for s in args.sizes.split(",")))
            derived_rows = bench_derived(work)
        ckpt_dir = os.path.join(work, "ckpts")
        written = write_checkpoints(ckpt_dir, args.steps, args.probes, args.tokens, args.layers)
        tb_rows = []
        for lf in ("true", "false"):  # median of --tb-repeats processes per loader
            runs = [bench_tensorboard(ckpt_dir, lf, args.steps, args.probes, args.layers)
                    for _ in range(args.tb_repeats)]
            row = {k: (statistics.median(r[k] for r in runs) if isinstance(v, float) else v)
                   for k, v in runs[0].items()}
            row["usable_max_s"] = max(r["usable_s"] for r in runs)
            tb_rows.append(row)
        os.makedirs(os.path.join(work, "empty", "run"))
        for r, lf in zip(tb_rows, ("true", "false")):
            r["rss_empty_mb"] = baseline_rss(os.path.join(work, "empty"), lf)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("logdir kept:", work)

    out = []
    out.append(f"Date: {datetime.date.today().isoformat()}; tensorboard {tensorboard.__version__}; "
               f"total bench time {time.perf_counter() - started:.0f} s\n")
    out.append(machine() + "\n")
    out.append("RSS is TensorBoard's resident memory plus its children's (the Rust data server under "
               "--load_fast=true), via psutil. 'layer ms': one cold /attention request over HTTP as a browser "
               "asks (Accept-Encoding: gzip, deflate, br, zstd), median of 24.\n")
    if layer_rows:
        out.append("One request, 12 heads unless said (werkzeug client in process; cold = fresh caches, read from "
                   "disk; warm = median of 5 repeats, cache hit). Clients: none = no Accept-Encoding; gzip = "
                   "'gzip' (urllib, curl); browser = 'gzip, deflate, br, zstd':\n")
        out.append("| tokens | route | client | encoding | response (raw) | sent | cold ms | warm ms |")
        out.append("|---:|---|---|---|---:|---:|---:|---:|")
        for r in layer_rows:
            out.append(f"| {r['tokens']} | `{r['route']}` | {r['client']} | {r['encoding']} | {_size(r['raw_bytes'])} | "
                       f"{_size(r['sent_bytes'])} | {r['cold_ms']:.1f} | {r['warm_ms']:.1f} |")
        out.append("")
        if derived_rows:
            out.append("Routes computed from several layers or steps (browser client; one example logged at steps 0 "
                       "and 1; cold = fresh caches, warm = median of 3):\n")
            out.append("| tokens | layers x heads | route | sent | cold ms | warm ms |")
            out.append("|---:|---|---|---:|---:|---:|")
            for r in derived_rows:
                out.append(f"| {r['tokens']} | {r['layers']} x {HEADS} | `{r['route']}` | {_size(r['sent_bytes'])} | "
                           f"{r['cold_ms']:.1f} | {r['warm_ms']:.1f} |")
            out.append("")
        out.append("Asset bytes of one 1-layer x 12-head record with q/k (head_dim 64): "
                   + ", ".join(f"{n} tokens {_size(b)}" for n, b in asset.items()) + "\n")
    out.append(f"TensorBoard on {args.steps} checkpoints x {args.probes} probes at {args.tokens} tokens with q/k, "
               f"{args.layers} layers x {HEADS} heads (MiniLM's shape, head_dim 32); "
               f"writer: {written['write_s_per_probe']:.2f} s per probe (log_attention incl. metrics), "
               f"{_size(written['asset_bytes_per_record'])} of asset per record, "
               f"{_size(written['index_bytes_per_record'])} index record, event files "
               f"{_size(written['event_bytes'])} in all:\n")
    out.append(f"Median of {args.tb_repeats} processes per loader (tab usable: median / worst).\n")
    out.append("| loader | HTTP ready s | active s | all indexed s | **tab usable s** | RSS, empty logdir "
               "| RSS tab usable | RSS after 24 more layers | RSS after 60 experiment ids | /index ms (size gz/raw) "
               "| layer ms |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in tb_rows:
        out.append(f"| {r['loader']} | {r['ready_s']:.1f} | {r['active_s']:.1f} | {r['load_s']:.1f} | "
                   f"**{r['usable_s']:.1f}** / {r['usable_max_s']:.1f} | {r['rss_empty_mb']:.0f} MB | {r['rss_usable_mb']:.0f} MB | "
                   f"{r['rss_served_mb']:.0f} MB | {r['rss_experiments_mb']:.0f} MB | {r['index_ms']:.0f} ({r['index_kb']:.0f} / {r['index_raw_kb']:.0f} KB) "
                   f"| {r['layer_ms']:.0f} |")
    text = "\n".join(out)
    print(text if args.markdown else text.replace("`", ""))


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


if __name__ == "__main__":
    main()
