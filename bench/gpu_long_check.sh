#!/usr/bin/env bash
# GPU check of long-layer capture (issue 21, item 1), about 1-3 minutes on one GPU:
#   1. the fused path and the pure-torch path of long_layers.summarize give the same record within the
#      documented bounds (docs/format.md "Long layers") on CUDA: dense, causal, sliding-window, grouped-query
#      and softcapped layers at 4096 tokens, a LLaMA-shaped layer at 8192;
#   2. timing: summarize (fused and pure) vs torch's own sdpa forward of the same layer, on CUDA.
# Run from the repository root:  PYTHONPATH=. bash bench/gpu_long_check.sh
# Needs torch with CUDA and numpy; google-crc32c is stubbed if missing (nothing is written here).
set -euo pipefail
timeout 600 python - <<'EOF'
import importlib.util, os, sys, time, types

if importlib.util.find_spec("google_crc32c") is None:  # only the writer needs it; nothing is written here
    stub = types.ModuleType("google_crc32c")
    stub.value = lambda data: 0
    sys.modules["google_crc32c"] = stub

import numpy as np
import torch

from tensorboard_plugin_attention import long_layers, metrics as metrics_mod

# LONG_CHECK_DEVICE=cpu LONG_CHECK_DIV=16: a smoke run of this script on a CPU at 1/16 of the lengths
dev = torch.device(os.environ.get("LONG_CHECK_DEVICE", "cuda"))
DIV = int(os.environ.get("LONG_CHECK_DIV", "1"))
if dev.type == "cuda":
    assert torch.cuda.is_available(), "no CUDA device"
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}", flush=True)
else:
    torch.cuda.synchronize = lambda: None
    torch.cuda.empty_cache = lambda: None
    torch.cuda.max_memory_allocated = lambda: 0
    torch.cuda.reset_peak_memory_stats = lambda: None
BOUND = 0.004  # log8 bound (docs/format.md)


def same(a, b, what):
    """The checks of tests/test_long.py::_assert_same_record, with the measured differences printed."""
    d_lse = float(np.abs(a.lse - b.lse).max())
    d_pyr = float(np.abs(a.pyramid - b.pyramid).max())
    d_top = float(np.abs(a.topk_value - b.topk_value).max())
    strong = a.topk_value[..., 0] > a.topk_value[..., 1] + 1e-4
    top_ok = bool((a.topk_index[..., 0] == b.topk_index[..., 0])[strong].all())
    d_met = max(float(np.nanmax(np.abs(a.metrics[k] - b.metrics[k]))) if np.isfinite(a.metrics[k]).any() else 0.0
                for k in metrics_mod.METRIC_NAMES)
    nan_ok = all((np.isnan(a.metrics[k]) == np.isnan(b.metrics[k])).all() for k in metrics_mod.METRIC_NAMES)
    ok = d_lse <= 1e-4 and d_pyr <= BOUND and d_top <= BOUND and top_ok and d_met <= 1e-4 and nan_ok \
        and np.array_equal(a.queries, b.queries) and np.array_equal(a.keys, b.keys)
    print(f"  {what:40s} lse {d_lse:.1e} pyramid {d_pyr:.1e} topk {d_top:.1e} top1 {top_ok} metrics {d_met:.1e} "
          f"-> {'OK' if ok else 'FAIL'}", flush=True)
    return ok


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    r = fn()
    torch.cuda.synchronize()
    return r, time.perf_counter() - t


failures = 0
print("1. fused == pure on CUDA", flush=True)
cases = {  # name: heads, kv_heads, n, d, causal, window, softcap, dtype
    "dense (non-causal), 4096": (12, 12, 4096, 64, False, None, None, torch.float32),
    "causal, 4096": (12, 12, 4096, 64, True, None, None, torch.float32),
    "sliding window 512, 4096": (8, 8, 4096, 64, True, 512, None, torch.bfloat16),
    "grouped-query 32/8 float16, 8192": (32, 8, 8192, 128, True, None, None, torch.float16),
    "softcap 30 grouped 8/4, 4096": (8, 4, 4096, 64, True, None, 30.0, torch.bfloat16),
}
for name, (h, kv, n, d, causal, window, softcap, dtype) in cases.items():
    n //= DIV
    g = torch.Generator(device=dev).manual_seed(0)
    q = (torch.randn(h, n, d, device=dev, generator=g) * 0.5).to(dtype)
    k = (torch.randn(kv, n, d, device=dev, generator=g) * 0.5).to(dtype)
    v = torch.randn(kv, n, d, device=dev, generator=g).to(dtype)
    tokens = list(np.random.default_rng(0).integers(0, 2000, n))
    kw = dict(scaling=d ** -0.5, causal=causal, sliding_window=window, softcap=softcap, token_ids=tokens)
    (fused, out_f), t_f = timed(lambda: long_layers.summarize(q, k, v, path="fused", **kw))
    (pure, out_p), t_p = timed(lambda: long_layers.summarize(q, k, v, path="pure", **kw))
    failures += not same(fused, pure, name)
    d_out = float((out_f.float() - out_p.float()).abs().max())
    print(f"    output max diff {d_out:.1e}; fused {t_f:.2f} s, pure {t_p:.2f} s", flush=True)
    del q, k, v, out_f, out_p
    torch.cuda.empty_cache()

print("2. timing on CUDA: summarize vs the layer's own sdpa forward (median of 3, after one warm-up)", flush=True)
for name, (h, kv, n, d, causal, dtype) in {
    "BERT-shaped 12 heads d64 float32, 8192": (12, 12, 8192, 64, False, torch.float32),
    "LLaMA-shaped 32/8 d128 bfloat16 causal, 8192": (32, 8, 8192, 128, True, torch.bfloat16),
}.items():
    n //= DIV
    q = (torch.randn(h, n, d, device=dev) * 0.5).to(dtype)
    k = (torch.randn(kv, n, d, device=dev) * 0.5).to(dtype)
    v = torch.randn(kv, n, d, device=dev).to(dtype)
    ke, ve = (x.repeat_interleave(h // kv, 0)[None] for x in (k, v))
    sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(q[None], ke, ve, is_causal=causal)  # noqa: E731
    row = {}
    for label, fn in (("sdpa", sdpa),
                      ("fused", lambda: long_layers.summarize(q, k, v, scaling=d ** -0.5, causal=causal, path="fused")),
                      ("pure", lambda: long_layers.summarize(q, k, v, scaling=d ** -0.5, causal=causal, path="pure"))):
        fn()
        row[label] = sorted(timed(fn)[1] for _ in range(3))[1]
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"  {name}: sdpa {row['sdpa'] * 1e3:.1f} ms, summarize fused {row['fused'] * 1e3:.0f} ms "
          f"({row['fused'] / row['sdpa']:.1f}x), pure {row['pure'] * 1e3:.0f} ms ({row['pure'] / row['sdpa']:.1f}x); "
          f"peak device memory {peak:.1f} GiB", flush=True)
    del q, k, v, ke, ve
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()

print("GPU LONG CHECK:", "PASS" if not failures else f"FAIL ({failures} cases)")
sys.exit(1 if failures else 0)
EOF
