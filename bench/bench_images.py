"""The image view: stored bytes per image, first paint and hover in headless Chromium on a real tensorboard.

    .venv/bin/python bench/bench_images.py [--repeats 3] [--hovers 40]

Cases: a ViT-shaped model (12 layers x 12 heads, hidden 192, random weights) on a generated 224 x 224 image
with 16-px patches (197 tokens: dense layers) and on a 512 x 512 image (1025 tokens: above the dense limit,
so long layers, the query's row rebuilt exactly from q/k by ``/window``). Each repeat logs a distinct
example, so first paints are cold (neither TensorBoard's cache nor the tab's has the record).

* **bytes**: the stored image (PNG) and the whole record (attention or long-layer summaries, q/k, image);
* **first paint**: ``update({example})`` until the image view holds the new record's image decoded and
  painted (``data-image=decoded``, ``data-state=ready``) and the next frame (rAF + setTimeout 0);
* **hover**: a ``mousemove`` dispatched in the page over a patch centre (random patches) until ``data-hover``
  names that patch and the next frame (rAF + setTimeout 0, so one frame wait is included); p50 / p95.
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
sys.path.insert(0, os.path.join(ROOT, "tests"))

from browser_util import launch, open_tab, wait_attr, wait_idle  # noqa: E402
from conftest import TensorBoardProcess  # noqa: E402

IMAGE = '[data-testid="image-view"]'


def write_case(logdir: str, size: int, repeats: int) -> dict:
    """Log ``repeats`` examples of a random ViT on generated ``size`` x ``size`` images; returns bytes."""
    import torch
    from transformers import ViTConfig, ViTModel

    from tensorboard_plugin_attention import AttentionWriter, capture_attention, log_attention
    from tensorboard_plugin_attention.images import PatchLayout

    torch.manual_seed(0)
    model = ViTModel(ViTConfig(image_size=size, patch_size=16, hidden_size=192, num_hidden_layers=12,
                               num_attention_heads=12, intermediate_size=384)).eval()
    rng = np.random.default_rng(size)
    layout = PatchLayout(size // 16, size // 16, 1)
    with AttentionWriter(logdir) as w:
        for i in range(repeats):
            y, x = np.mgrid[0:size, 0:size]
            img = np.stack([x * 255 // size, y * 255 // size, rng.integers(0, 256, (size, size))], -1).astype(np.uint8)
            pixels = torch.tensor(img, dtype=torch.float32).permute(2, 0, 1)[None] / 127.5 - 1
            with torch.no_grad(), capture_attention(model) as cap:
                model(pixel_values=pixels, interpolate_pos_encoding=True)
            log_attention(w, "images", cap, layout.tokens(), 0, example=str(i), image=img, metric_scalars=False)
    from tensorboard_plugin_attention import read_attention

    recs = read_attention(logdir, queries_keys=False)
    record = os.path.getsize(next(os.path.join(d, f) for d, _, fs in os.walk(logdir) for f in fs
                                  if f.endswith(".attn"))) / repeats
    return {"tokens": layout.patches + 1, "image_bytes": statistics.mean(len(r.image) for r in recs),
            "record_bytes": record, "layout": recs[0].header["kinds"]["encoder"].get("layout", "dense")}


_NEXT_FRAME = "() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))"


def first_paint(frame, example: str) -> float:
    t0 = time.perf_counter()
    frame.evaluate("(e) => window.attentionApp.update({example: e})", example)
    frame.wait_for_function(f"""(e) => {{ const r = document.querySelector('[data-testid="attention-root"]');
        const v = document.querySelector('{IMAGE}');
        return r && r.dataset.state === 'ready' && v && v.dataset.image === 'decoded'
          && window.attentionApp.current && window.attentionApp.current.ref.example === e; }}""", arg=example,
                            timeout=60_000)
    frame.evaluate(_NEXT_FRAME)
    return time.perf_counter() - t0


_HOVER_JS = """([x, y, want]) => new Promise((resolve) => {
  const view = document.querySelector('[data-testid="image-view"]');
  const canvases = view.querySelectorAll('[data-testid="image-view-canvas"] canvas');
  const top = canvases[canvases.length - 1];
  const box = top.getBoundingClientRect();
  const t0 = performance.now();
  top.dispatchEvent(new MouseEvent('mousemove', {clientX: box.left + x, clientY: box.top + y, bubbles: true}));
  const check = () => view.dataset.hover === want
    ? requestAnimationFrame(() => setTimeout(() => resolve(performance.now() - t0), 0))
    : requestAnimationFrame(check);
  check();
})"""


def hovers(frame, n: int) -> list:
    """Seconds from a dispatched ``mousemove`` over a patch until the view names it and the next frame."""
    d = frame.locator(IMAGE).first.evaluate("e => Object.assign({}, e.dataset)")
    rows, cols = (int(x) for x in d["grid"].split(","))
    left, top, width, height = (float(d[k]) for k in ("left", "top", "width", "height"))
    rng = np.random.default_rng(0)
    times = []
    for _ in range(n):
        r, c = int(rng.integers(rows)), int(rng.integers(cols))
        x, y = left + (c + 0.5) * width / cols, top + (r + 0.5) * height / rows
        times.append(frame.evaluate(_HOVER_JS, [x, y, f"{r},{c}"]) / 1000)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hovers", type=int, default=40)
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    rows = []
    with tempfile.TemporaryDirectory() as root:
        cases = {size: write_case(os.path.join(root, f"vit{size}"), size, args.repeats + 1) for size in (224, 512)}
        tb = TensorBoardProcess(root, "--load_fast=false").start(90)
        try:
            tb.wait_for(lambda: len(tb.plugin("index").json()["runs"]) == 2, timeout=120, what="both runs")
            with sync_playwright() as p:
                browser = launch(p)
                page = browser.new_page(viewport={"width": 1300, "height": 900})
                for size, info in cases.items():
                    frame = open_tab(page, tb.url, {"run": f"vit{size}", "tag": "images", "example": "0",
                                                    "view": "image", "layer": 11})
                    wait_attr(frame, IMAGE, "data-image", lambda v: v == "decoded", timeout=60_000)
                    wait_idle(frame)
                    paints = [first_paint(frame, str(i)) for i in range(1, args.repeats + 1)]
                    hover = sorted(hovers(frame, args.hovers))
                    p95 = hover[min(len(hover) - 1, int(round(0.95 * (len(hover) - 1))))]
                    rows.append((size, info, statistics.median(paints), max(paints), statistics.median(hover), p95))
                browser.close()
        finally:
            tb.stop()
    print(f"ViT-shaped 12 x 12, random weights; {args.repeats} cold first paints, {args.hovers} hovers; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| image | tokens | layers stored | image bytes | record bytes | first paint median / max (s) | "
          "hover p50 / p95 (ms) |")
    print("|---|---|---|---|---|---|---|")
    for size, info, med, mx, h50, h95 in rows:
        print(f"| {size} x {size} | {info['tokens']} | {info['layout']} | {info['image_bytes']:,.0f} | "
              f"{info['record_bytes']:,.0f} | {med:.2f} / {mx:.2f} | {h50 * 1000:.0f} / {h95 * 1000:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
