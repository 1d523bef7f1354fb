"""Long-context benchmark: one command, prints Markdown tables for docs/performance.md.

    .venv/bin/python bench/bench_long.py [--sizes 2048,4096,8192] [--llama 8192,32768] [--quick]
    .venv/bin/python bench/bench_long.py --passes 4096   # where one layer's time goes, per pass (issue 21)

1. A random 12-layer, 12-head BERT-shaped model (hidden 384, head_dim 32) at each size through
   ``capture_attention`` + ``log_attention``: the plain forward's time (the model's own sdpa, no capture),
   capture and write time, the writer process's peak RSS increase over the loaded model, stored bytes with
   and without q/k; at 2048 also the same in v1 dense (``dense_limit`` above the length) for comparison.
2. An LLaMA-shaped layer (32 query heads, 8 key/value heads, head_dim 128) at each ``--llama`` length through
   the writer API (``log_attention(None, tokens, queries=, keys=)``) from synthetic structured float16 q/k
   (rotary-like local windows, an attention sink, planted long-range retrieval pairs): stored bytes, writer
   peak RSS, time; then the backend (TensorBoard's WSGI app in process) for one exact row, a 512 x 512 exact
   window and a whole-head overview (the stored pyramid level), cold and warm; and a real ``tensorboard``
   process's RSS after serving them.

3. ``--passes N``: one BERT-shaped layer (12 heads, head_dim 32, bidirectional) and one LLaMA-shaped layer
   (32 / 8 heads, head_dim 128, causal, float16) at N tokens through ``long_layers.summarize``: the fused path
   with its per-row tail in C (``row_kernel``, where a C compiler is) and in torch, and the pure path, against
   torch's sdpa of the same layer: wall time, then torch.profiler's self time per operation (each pass over
   the scores is one or two operations; the C tail is not an operation, so it is not in that list), in one
   subprocess.

Every case runs in its own subprocess (peak RSS is the child's ``ru_maxrss``) under an address-space cap, so a
regression that allocates n^2 fails cleanly instead of waking the OOM killer.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
AS_CAP_GB = 16  # address space of each case (the machine has 24 GB and no swap)

_BERT = r'''
import json, os, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[5]) << 30, resource.RLIM_INFINITY))
import torch
from transformers import BertConfig, BertModel
from tensorboard_plugin_attention import AttentionWriter, capture_attention
n, mode, out, qk = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "qk"
torch.manual_seed(0)
model = BertModel(BertConfig(vocab_size=1000, hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
                             intermediate_size=1536, max_position_embeddings=n)).eval()
model.set_attn_implementation("sdpa")
ids = torch.randint(0, 1000, (1, n))
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with torch.no_grad():
    t = time.perf_counter(); model(input_ids=ids); forward = time.perf_counter() - t
base = rss()
limit = n + 1 if mode == "dense" else 1024
t = time.perf_counter()
with torch.no_grad(), capture_attention(model, queries_keys=qk, dense_limit=limit) as cap:
    model(input_ids=ids)
capture = time.perf_counter() - t
t = time.perf_counter()
with AttentionWriter(out) as w:
    w.add_attention("bench", cap, [str(int(i)) for i in ids[0]], 0)
write = time.perf_counter() - t
stored = sum(os.path.getsize(os.path.join(out, "plugins", "attention", f))
             for f in os.listdir(os.path.join(out, "plugins", "attention")))
print(json.dumps(dict(forward=forward, capture=capture, write=write, peak_increase=rss() - base, stored=stored)))
'''

_LLAMA = r'''
import json, os, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[3]) << 30, resource.RLIM_INFINITY))
import numpy as np
sys.path.insert(0, sys.argv[4])
from bench_long import llama_qk
from tensorboard_plugin_attention import AttentionWriter
n, out = int(sys.argv[1]), sys.argv[2]
q, k, planted = llama_qk(n)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t = time.perf_counter()
with AttentionWriter(out) as w:
    w.add_attention("ctx", None, [f"w{i % 1000}" for i in range(n)], 0, queries=[q], keys=[k], kind="decoder",
                    model_name="llama-shaped")
write = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
stored = sum(os.path.getsize(os.path.join(out, "plugins", "attention", f))
             for f in os.listdir(os.path.join(out, "plugins", "attention")))
print(json.dumps(dict(write=write, peak=peak, peak_increase=peak - base, stored=stored, inputs=q.nbytes + k.nbytes,
                      planted=planted)))
'''


_PASSES = r'''
import inspect, json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]) << 30, resource.RLIM_INFINITY))
import numpy as np
import torch
from torch.profiler import profile
from tensorboard_plugin_attention import long_layers
n = int(sys.argv[1])
torch.manual_seed(0)
tokens = list(np.random.default_rng(0).integers(0, 1000, n))
for name, (h, kv, d, causal, dtype) in {"BERT-shaped layer": (12, 12, 32, False, torch.float32),
                                        "LLaMA-shaped layer": (32, 8, 128, True, torch.float16)}.items():
    q, k, v = (torch.randn(h, n, d) * 0.3).to(dtype), (torch.randn(kv, n, d) * 0.3).to(dtype), torch.randn(kv, n, d).to(dtype)
    ke, ve = (x.repeat_interleave(h // kv, 0)[None] for x in (k, v))
    t = time.perf_counter(); torch.nn.functional.scaled_dot_product_attention(q[None], ke, ve, is_causal=causal)
    sdpa = time.perf_counter() - t
    print(f"\n**{name}** ({h} / {kv} heads, head_dim {d}, {'causal' if causal else 'bidirectional'}, {n} tokens, "
          f"{str(dtype).split('.')[-1]}): sdpa {sdpa:.2f} s\n")
    for label, path, kernel in (("fused, C tail", "fused", True), ("fused, torch tail", "fused", False),
                                ("pure", "pure", None)):
        kw = dict(scaling=d ** -0.5, causal=causal, token_ids=tokens, path=path)
        if kernel is not None and "kernel" in inspect.signature(long_layers.summarize).parameters:  # (older: no C tail)
            if kernel and long_layers.row_kernel.load() is None:
                continue
            kw["kernel"] = kernel
        elif kernel:
            continue
        t = time.perf_counter(); long_layers.summarize(q, k, v, **kw); wall = time.perf_counter() - t
        with profile() as prof:
            long_layers.summarize(q, k, v, **kw)
        ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in ops)
        top = ", ".join(f"{e.key.replace('aten::', '')} {e.self_cpu_time_total / 1e6:.2f} s" for e in ops[:9])
        print(f"- {label}: {wall:.2f} s ({wall / sdpa:.1f}x sdpa); torch ops profiled {total / 1e6:.2f} s: {top}", flush=True)
'''


def llama_qk(n: int, heads: int = 32, kv_heads: int = 8, d: int = 128, seed: int = 0):
    """float16 q ``(heads, n, d)`` and k ``(kv_heads, n, d)`` with rotary-like local windows, a sink on token 0
    and planted long-range retrieval pairs ``[(query, key)]`` (query attends ~strongly to a far key)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pos = np.arange(n)[:, None]
    freqs = 1.0 / (10000 ** (np.arange(0, 48, 2) / 48))  # 24 frequencies: 48 rotary dims
    rot = np.concatenate([np.cos(pos * freqs), np.sin(pos * freqs)], axis=1)  # (n, 48)
    q = np.zeros((heads, n, d), np.float32)
    k = np.zeros((kv_heads, n, d), np.float32)
    for g in range(kv_heads):
        k[g, :, :48] = rot * 2
        k[g, 0, 48] = 40.0  # the sink key
        k[g, :, 49:] = rng.normal(scale=0.5, size=(n, d - 49))
    for h in range(heads):
        g = h // (heads // kv_heads)
        q[h, :, :48] = rot * 2 * (0.6 + 0.2 * g)  # local windows sharper in later key groups
        q[h, :, 48] = 0.5 + 0.5 * (h % 4)  # every query reads the sink, some heads a lot
        q[h, :, 49:] = rng.normal(scale=0.5, size=(n, d - 49))
    planted = []
    for _ in range(8):  # retrieval: query i matches key j far before it along a random direction
        i = int(rng.integers(n // 2, n))
        j = int(rng.integers(0, n // 4))
        u = rng.normal(size=d - 49)
        u /= np.linalg.norm(u)
        q[:, i, 49:] += 12.0 * u
        k[:, j, 49:] += 12.0 * u
        planted.append((i, j))
    return q.astype(np.float16), k.astype(np.float16), planted


def run_case(script: str, *args: str, timeout: int = 3600) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # cwd=ROOT: ``python -c`` puts the working directory first on sys.path, ahead of PYTHONPATH, so a bench run
    # from another checkout would otherwise measure that checkout's package
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout,
                         env=env, cwd=ROOT)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def serve_llama(logdir: str) -> dict:
    """Backend times for the LLaMA-shaped record: in-process WSGI app (cold = fresh app), then a real tensorboard."""
    import numpy as np
    from werkzeug.test import Client

    from conftest import TensorBoardProcess
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_provider as mdp
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard_plugin_attention.plugin import AttentionLoader

    def app():
        m = pem.EventMultiplexer(tensor_size_guidance={"attention": 0})
        m.AddRunsFromDirectory(logdir)
        m.Reload()
        flags = argparse.Namespace(logdir=logdir, samples_per_plugin={"attention": 0}, window_title="", path_prefix="",
                                   attention_cache_mb=256)
        return Client(application.TensorBoardWSGIApp(flags, [AttentionLoader()], mdp.MultiplexerDataProvider(m, logdir)))

    base = dict(run=".", tag="ctx", example="0", step="0", kind="decoder", layer="0", head="5")
    n = None
    requests = {
        "one exact row": lambda n: dict(base, rows=f"{n - 1}:{n}", cols=f"0:{n}", dtype="float32"),
        "512 x 512 exact window": lambda n: dict(base, rows=f"{n - 512}:{n}", cols=f"{n // 3}:{n // 3 + 512}"),
        "whole-head overview (pyramid)": lambda n: dict(base),
    }
    routes = {"one exact row": "window", "512 x 512 exact window": "window", "whole-head overview (pyramid)": "pyramid"}
    out = {}
    for name, params in requests.items():
        colds, warms = [], []
        for _ in range(3):
            client = app()
            if n is None:
                idx = json.loads(client.get("/data/plugin/attention/index").get_data())
                n = idx["runs"][0]["tags"][0]["examples"][0]["header"]["kinds"]["decoder"]["q_len"]
            url = f"/data/plugin/attention/{routes[name]}"
            t = time.perf_counter()
            r = client.get(url, query_string=params(n), headers={"Accept-Encoding": "gzip, deflate"})
            colds.append(time.perf_counter() - t)
            assert r.status_code == 200, r.get_data()[:300]
            size = len(r.get_data())
            for _ in range(3):
                t = time.perf_counter()
                client.get(url, query_string=params(n), headers={"Accept-Encoding": "gzip, deflate"})
                warms.append(time.perf_counter() - t)
        out[name] = dict(cold_ms=statistics.median(colds) * 1e3, warm_ms=statistics.median(warms) * 1e3, bytes=size)
    tb = TensorBoardProcess(logdir, "--load_fast=false", "--reload_interval", "1")
    try:
        tb.start(timeout=120)
        tb.wait_for(lambda: tb.plugin("index").json()["runs"], timeout=120, what="the record listed")
        for name, params in requests.items():
            assert tb.get(f"/data/plugin/attention/{routes[name]}", params(n)).status == 200
        import psutil

        p = psutil.Process(tb.proc.pid)
        out["tensorboard_rss"] = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
    finally:
        tb.stop()
    return out


def machine() -> str:
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    return (f"{datetime.date.today()}, nproc {os.cpu_count()}, {cpu}, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
            f"Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"load average {os.getloadavg()[0]:.1f}")


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n / 2**10:,.0f} KB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2048,4096,8192")
    ap.add_argument("--llama", default="8192,32768")
    ap.add_argument("--quick", action="store_true", help="2048 and 4096 / 8192 only")
    ap.add_argument("--passes", type=int, default=0, metavar="N",
                    help="only: one layer's time per pass at N tokens, fused and pure paths, vs sdpa")
    args = ap.parse_args()
    if args.passes:
        print(f"Machine: {machine()}")
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        subprocess.run([sys.executable, "-c", _PASSES, str(args.passes), str(AS_CAP_GB)], env=env, check=True,
                       cwd=ROOT)
        return
    sizes = [2048, 4096] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    llama = [8192] if args.quick else [int(s) for s in args.llama.split(",") if s]
    work = tempfile.mkdtemp(prefix="bench_long_")
    started = time.perf_counter()
    try:
        print(f"Machine: {machine()}\n")
        print("**12 x 12 BERT-shaped model** (hidden 384, head_dim 32, random weights, one sequence), "
              "`capture_attention` + `log_attention`; forward = the model's own sdpa without capture:\n")
        print("| tokens | layout | forward s | capture s | write s | (capture + write) / forward | "
              "writer peak RSS increase | stored with q/k | stored without q/k |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        cases = [(n, "long") for n in sizes] + ([(2048, "dense")] if 2048 in sizes else [])
        for n, mode in cases:
            runs = {}
            for qk in ("qk", "noqk"):
                out = os.path.join(work, f"bert_{n}_{mode}_{qk}")
                runs[qk] = run_case(_BERT, str(n), mode, out, qk, str(AS_CAP_GB))
                shutil.rmtree(out, ignore_errors=True)
            r, r2 = runs["qk"], runs["noqk"]
            if "error" in r:
                print(f"| {n} | {mode} | {r['error'][:80]} |||||||")
                continue
            ratio = (r["capture"] + r["write"]) / r["forward"]
            print(f"| {n} | {mode} | {r['forward']:.1f} | {r['capture']:.1f} | {r['write']:.1f} | {ratio:.1f}x | "
                  f"{mb(r['peak_increase'])} | {mb(r['stored'])} | "
                  f"{mb(r2['stored']) if 'stored' in r2 else r2.get('error', '')[:60]} |", flush=True)
        print("\n**LLaMA-shaped layer** (32 query heads, 8 key/value heads, head_dim 128, float16 q/k from "
              "`llama_qk`), written with `log_attention(None, tokens, queries=, keys=)`; backend: TensorBoard's "
              "WSGI app in process (cold = fresh app, median of 3; warm = median of 9), browser encodings:\n")
        print("| tokens | stored per layer | inputs (q + k) | writer peak RSS | write s | exact row cold / warm ms | "
              "512 x 512 window cold / warm ms | overview cold / warm ms | tensorboard RSS after serving |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in llama:
            out = os.path.join(work, f"llama_{n}")
            r = run_case(_LLAMA, str(n), out, str(AS_CAP_GB), os.path.join(ROOT, "bench"))
            if "error" in r:
                print(f"| {n} | {r['error'][:80]} ||||||||")
                continue
            s = serve_llama(out)
            cell = lambda name: f"{s[name]['cold_ms']:.0f} / {s[name]['warm_ms']:.0f}"  # noqa: E731
            print(f"| {n} | {mb(r['stored'])} | {mb(r['inputs'])} | {mb(r['peak'])} | {r['write']:.0f} | "
                  f"{cell('one exact row')} | {cell('512 x 512 exact window')} | "
                  f"{cell('whole-head overview (pyramid)')} | {mb(s['tensorboard_rss'])} |", flush=True)
            shutil.rmtree(out, ignore_errors=True)
        print(f"\nwhole bench: {time.perf_counter() - started:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
