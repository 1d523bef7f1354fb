"""Screenshots of the Attention tab for the README: one command.

    .venv/bin/python -m tensorboard_plugin_attention demo --logdir runs/demo      # the demo's MiniLM run
    .venv/bin/python bench/screenshots.py --logdir runs/demo --out docs/images

Starts ``tensorboard --logdir DIR`` on a free port, opens ``/#attention`` in headless chromium (Debian's,
``/usr/bin/chromium`` or ``$CHROMIUM``; light theme, 1200 px wide) and saves, for one example of the run:

* ``head-view.png``: the head view of one layer, all heads, at the latest step;
* ``head-view-hover.png``: the same with a query token hovered (its lines, and per-head bars on the keys);
* ``model-view.png``: every layer x head thumbnail, with one head's detail opened beside the grid;
* ``neuron-view.png``: queries, keys, q ⊙ k, q·k and the recomputed softmax for a pinned query token;
* ``compare-diff.png``: the head view's difference B − A between the first and the latest step;
* ``compare-side.png``: the model view of the first and the latest step side by side.
* ``image-view.png`` (when the logdir has the demo's ``vit`` run): the image view of one probe image, the
  latest step beside the first, [CLS]'s attention to the patches for one head.

Each image is cropped to the drawing (TensorBoard's header included) and kept under ~300 KB (a palette PNG
via Pillow when a screenshot is larger, if Pillow is installed).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))  # conftest.TensorBoardProcess, browser_util

from browser_util import PageWatch, dataset, hover_token, launch, open_tab, wait_attr, wait_idle  # noqa: E402
from conftest import TensorBoardProcess  # noqa: E402

MAX_BYTES = 300_000
HEAD = '[data-testid="head-view"]'


def _crop_height(page: Any, frame: Any, selector: str, pad: int = 16) -> int:
    """Page y of the bottom of ``selector`` inside the plugin iframe (plus ``pad``)."""
    iframe_top = page.locator('iframe[src*="plugin_entry.html"]').bounding_box()["y"]
    bottom = frame.locator(selector).first.evaluate("e => e.getBoundingClientRect().bottom")
    return int(iframe_top + bottom + pad)


def _save(page: Any, frame: Any, selector: str, path: str, *, min_height: int = 300) -> None:
    vw = page.viewport_size
    height = max(min_height, min(vw["height"], _crop_height(page, frame, selector)))
    png = page.screenshot(clip={"x": 0, "y": 0, "width": vw["width"], "height": height}, animations="disabled")
    if len(png) > MAX_BYTES:
        png = _shrink(png)
    with open(path, "wb") as f:
        f.write(png)
    print(f"{path}: {vw['width']}x{height}, {len(png) / 1000:.0f} KB")


def _shrink(png: bytes) -> bytes:
    try:
        from PIL import Image
    except ImportError:
        print("  (over 300 KB and Pillow is not installed: kept as is)")
        return png
    img = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _settle(frame: Any) -> None:
    wait_idle(frame)
    # two animation frames: everything drawn has been composited
    frame.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logdir", required=True, help="a logdir with the demo's run (python -m "
                    "tensorboard_plugin_attention demo --logdir DIR)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "images"))
    ap.add_argument("--run", default="minilm")
    ap.add_argument("--tag", default="probes")
    # defaults: the demo's "swap" probe ("The dog chased the cat." / "The cat chased the dog."), where layer 2
    # head 9 of the fine-tuned MiniLM aligns sentence B's words with the same words in sentence A
    ap.add_argument("--example", default="swap", help="a sentence-pair probe of the demo")
    ap.add_argument("--layer", type=int, default=2, help="head view layer")
    ap.add_argument("--heads", default="0,4,9", help="heads shown in the head views (all: '')")
    ap.add_argument("--hover", type=int, default=9, help="query token hovered in head-view-hover.png")
    ap.add_argument("--detail", default="2.9", help="model view head detail, LAYER.HEAD")
    ap.add_argument("--neuron-layer", type=int, default=2)
    ap.add_argument("--neuron-head", type=int, default=9)
    ap.add_argument("--neuron-query", type=int, default=9, help="query token pinned in the neuron view")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--image-run", default="vit", help="the demo's ViT run (image-view.png), if present")
    ap.add_argument("--image-example", default="square1")
    ap.add_argument("--image-layer", type=int, default=1)
    ap.add_argument("--image-head", type=int, default=1)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    out = lambda name: os.path.join(args.out, name)  # noqa: E731

    from playwright.sync_api import sync_playwright

    t0 = time.time()
    tb = TensorBoardProcess(args.logdir).start(90)
    tb.wait_for(lambda: any(r["run"] == args.run for r in tb.plugin("index").json()["runs"]), timeout=120,
                what=f"run {args.run} in /index")
    index = tb.plugin("index").json()
    run = next(r for r in index["runs"] if r["run"] == args.run)
    ex = next(e for t in run["tags"] if t["tag"] == args.tag for e in t["examples"] if e["example"] == args.example)
    first_step = ex["steps"][0]
    base = {"run": args.run, "tag": args.tag, "example": args.example}
    watch = PageWatch()
    try:
        with sync_playwright() as p:
            browser = launch(p)
            ctx = browser.new_context(viewport={"width": args.width, "height": 1000}, color_scheme="light",
                                      device_scale_factor=1)
            page = watch.attach(ctx.new_page())
            page.set_default_timeout(60_000)

            # head view, at rest and hovered
            heads = {"heads": args.heads} if args.heads else {}
            frame = open_tab(page, tb.url, {**base, "layer": args.layer, **heads})
            _settle(frame)
            _save(page, frame, HEAD, out("head-view.png"))
            hover_token(frame, HEAD, args.hover, "left")
            wait_attr(frame, HEAD, "data-hover", lambda v: v == f"left:{args.hover}")
            _settle(frame)
            _save(page, frame, HEAD, out("head-view-hover.png"))
            page.mouse.move(1, 1)

            # model view with a head detail
            frame = open_tab(page, tb.url, {**base, "view": "model", "detail": args.detail})
            frame.locator('[data-testid="model-detail-head-0"]').wait_for()
            _settle(frame)
            _save(page, frame, '[data-testid="model-view"]', out("model-view.png"))

            # neuron view, a pinned query
            frame = open_tab(page, tb.url, {**base, "view": "neuron", "layer": args.neuron_layer,
                                             "nhead": args.neuron_head, "q": args.neuron_query})
            wait_attr(frame, '[data-testid="neuron-view"]', "data-selected", lambda v: v == str(args.neuron_query))
            _settle(frame)
            _save(page, frame, '[data-testid="neuron-view"]', out("neuron-view.png"))

            # compare: B − A in the head view (first step vs the latest), the model view side by side
            frame = open_tab(page, tb.url, {**base, "layer": args.layer, **heads, "step": first_step,
                                             "crun": args.run, "cmode": "diff"})
            _settle(frame)
            _save(page, frame, HEAD, out("compare-diff.png"))
            frame = open_tab(page, tb.url, {**base, "view": "model", "step": first_step, "crun": args.run})
            frame.locator('[data-testid="pane-1"]').wait_for()
            _settle(frame)
            _save(page, frame, '[data-testid="main"] .panes', out("compare-side.png"))

            # the image view: the latest step beside the first (the demo's ViT run)
            vit = next((r for r in index["runs"] if r["run"] == args.image_run), None)
            if vit is not None:
                steps = next(e["steps"] for t in vit["tags"] for e in t["examples"] if e["example"] == args.image_example)
                frame = open_tab(page, tb.url, {"run": args.image_run, "tag": "probes", "example": args.image_example,
                                                 "view": "image", "layer": args.image_layer, "ia": "head",
                                                 "nhead": args.image_head, "crun": args.image_run,
                                                 "cstep": steps[0]})
                wait_attr(frame, '[data-testid="image-view-b"]', "data-image", lambda v: v == "decoded")
                _settle(frame)
                _save(page, frame, '[data-testid="main"] .panes', out("image-view.png"))
            browser.close()
    finally:
        tb.stop()
    watch.check()
    print(f"done in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
