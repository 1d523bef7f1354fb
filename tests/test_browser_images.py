"""The image view in Chromium on a real ``tensorboard``: the overlay puts each patch's weight on exactly that
patch's pixels (read back from the overlay canvas for a planted pattern), equal to a ViT's eager attention
reshaped onto its grid; B - A across two checkpoints; a corrupt image costs only the image view; patch tokens
are labelled by grid position in the head view. Images are generated in the test."""

from __future__ import annotations

import os

import numpy as np
import pytest

from browser_util import PIXELS_JS, dataset, open_tab, wait_attr, wait_idle
from test_images import make_image, processor, tiny_vit

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.browser

IMAGE = '[data-testid="image-view"]'
ROWS = COLS = 4
PLANTED = {0: (1, 2), 1: (3, 0)}  # step -> the patch [CLS] attends to in every head


def planted(patch: tuple) -> list:
    """2 layers x 2 heads over [CLS] + 16 patches: [CLS] puts 0.9 on ``patch`` and 0.1 on itself; every other
    row attends to itself."""
    n = 1 + ROWS * COLS
    att = np.tile(np.eye(n, dtype=np.float32), (2, 1, 1))
    att[:, 0] = 0
    att[:, 0, 0] = 0.1
    att[:, 0, 1 + patch[0] * COLS + patch[1]] = 0.9
    return [att, att.copy()]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    from tensorboard_plugin_attention import AttentionWriter, capture_attention, log_attention
    from tensorboard_plugin_attention.images import PatchLayout

    from conftest import TensorBoardProcess

    root = tmp_path_factory.mktemp("browser_images")
    tokens = PatchLayout(ROWS, COLS, 1).tokens()
    with AttentionWriter(str(root / "planted")) as w:
        for step, patch in PLANTED.items():
            log_attention(w, "images", planted(patch), tokens, step, image=make_image(), patches=(ROWS, COLS, 1),
                          metric_scalars=False)
    model, proc = tiny_vit(), processor()
    pixel_values = proc(images=make_image(seed=3), return_tensors="pt")["pixel_values"]
    with torch.no_grad(), capture_attention(model) as cap:
        model(pixel_values=pixel_values)
    with AttentionWriter(str(root / "vit")) as w:
        log_attention(w, "images", cap, tokens, 0, image=pixel_values[0], processor=proc, metric_scalars=False)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        eager = [a[0].numpy() for a in model(pixel_values=pixel_values, output_attentions=True).attentions]
    # a third run whose image chunk is corrupt (one flipped byte in the middle of the PNG)
    with AttentionWriter(str(root / "corrupt")) as w:
        log_attention(w, "images", planted((0, 0)), tokens, 0, image=make_image(), patches=(ROWS, COLS, 1),
                      metric_scalars=False)
    asset = next(os.path.join(d, f) for d, _, fs in os.walk(root / "corrupt") for f in fs if f.endswith(".attn"))
    data = bytearray(open(asset, "rb").read())
    start = data.find(b"\x89PNG")
    data[start + (len(data) - start) // 2] ^= 0xFF
    open(asset, "wb").write(bytes(data))
    # 512 px at 16 px: 1025 tokens, above the dense limit: long layers, [CLS]'s row rebuilt from q/k
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    big = ViTModel(ViTConfig(image_size=512, patch_size=16, hidden_size=32, num_hidden_layers=1,
                             num_attention_heads=2, intermediate_size=64)).eval()
    big_image = make_image(512, 512, seed=5)
    big_pixels = torch.tensor(big_image, dtype=torch.float32).permute(2, 0, 1)[None] / 127.5 - 1
    with torch.no_grad(), capture_attention(big) as cap:
        big(pixel_values=big_pixels)
    with AttentionWriter(str(root / "long")) as w:
        log_attention(w, "images", cap, PatchLayout(32, 32, 1).tokens(), 0, image=big_image, metric_scalars=False)
    big.set_attn_implementation("eager")
    with torch.no_grad():
        eager.append(big(pixel_values=big_pixels, output_attentions=True).attentions[0][0].numpy())
    tb = TensorBoardProcess(str(root), "--load_fast=false").start(90)
    tb.wait_for(lambda: len(tb.plugin("index").json()["runs"]) == 4, timeout=90, what="four runs")
    yield tb, eager
    tb.stop()


def overlay(frame, testid: str = "image-heat") -> tuple:
    """(RGBA pixels of the overlay canvas as (h, w, 4), the image rectangle's left/top/width/height in it)."""
    d = dataset(frame, IMAGE)
    px = frame.evaluate("""(id) => { const c = document.querySelector(`[data-testid="${id}"]`), pixels = """ + PIXELS_JS + """;
        return {w: c.width, h: c.height, data: Array.from(pixels(c, 0, 0, c.width, c.height))}; }""", testid)
    pixels = np.array(px["data"], np.uint8).reshape(px["h"], px["w"], 4)
    return pixels, tuple(float(d[k]) for k in ("left", "top", "width", "height"))


def patch_alpha(pixels: np.ndarray, rect: tuple) -> np.ndarray:
    """(rows, cols): the overlay's alpha at each patch's centre and its minimum over the patch's inner pixels
    equal (each patch is one flat rectangle)."""
    left, top, width, height = rect  # canvas pixels are CSS pixels (device pixel ratio 1)
    out = np.zeros((ROWS, COLS))
    for r in range(ROWS):
        for c in range(COLS):
            x0, x1 = left + c * width / COLS, left + (c + 1) * width / COLS
            y0, y1 = top + r * height / ROWS, top + (r + 1) * height / ROWS
            block = pixels[int(y0) + 1:int(y1) - 1, int(x0) + 1:int(x1) - 1, 3]
            assert block.min() == block.max(), f"patch ({r},{c}) is not one flat rectangle"
            out[r, c] = block[0, 0]
    return out


def test_overlay_puts_each_weight_on_its_patch_and_follows_the_step(page, servers):
    pg, watch = page
    tb, _ = servers
    frame = open_tab(pg, tb.url, {"run": "planted", "tag": "images", "example": "0", "step": 0, "view": "image",
                                  "iq": 0, "ia": "head", "nhead": 0})
    wait_attr(frame, IMAGE, "data-image", lambda v: v == "decoded", what="the image decoded")
    assert dataset(frame, IMAGE)["grid"] == "4,4"
    for step, patch in PLANTED.items():
        if step:
            frame.evaluate("(s) => window.attentionApp.update({step: s})", step)
            wait_idle(frame)
        pixels, rect = overlay(frame)
        alpha = patch_alpha(pixels, rect)
        hot = np.unravel_index(np.argmax(alpha), alpha.shape)
        assert hot == patch, (step, alpha)
        assert (alpha > 0).sum() == 1  # every other patch has weight 0: nothing drawn over it
    watch.check()


def test_overlay_of_a_vit_equals_its_eager_attention_on_the_grid(page, servers):
    """Opacity is sqrt(w / max) (the legend's rule): the drawn alpha per patch, squared, is proportional to
    the ViT's eager attention from [CLS] to that patch (layer 1, head 2)."""
    pg, watch = page
    tb, eager = servers
    frame = open_tab(pg, tb.url, {"run": "vit", "tag": "images", "example": "0", "step": 0, "view": "image",
                                  "layer": 1, "iq": 0, "ia": "head", "nhead": 2, "io": 1})
    wait_attr(frame, IMAGE, "data-image", lambda v: v == "decoded", what="the image decoded")
    pixels, rect = overlay(frame)
    drawn = (patch_alpha(pixels, rect) / 255.0) ** 2
    want = eager[1][2, 0, 1:].reshape(ROWS, COLS)
    want = want / want.max()
    assert np.abs(drawn - want).max() < 0.05, (drawn, want)  # 8-bit alpha of a 1/256-coded weight
    legend = frame.locator('[data-testid="image-legend"]').text_content()
    assert "opacity" in legend.lower()
    watch.check()


def test_long_image_record_draws_the_exact_row_from_qk(page, servers):
    """1025 tokens (32 x 32 patches + CLS) are stored as a long layer: the view draws [CLS]'s row rebuilt from
    q/k, equal to the model's eager attention on the grid (alpha = 255 * sqrt(w / max) at opacity 1)."""
    pg, watch = page
    tb, eager = servers
    frame = open_tab(pg, tb.url, {"run": "long", "tag": "images", "example": "0", "step": 0, "view": "image",
                                  "iq": 0, "ia": "head", "nhead": 1, "io": 1})
    wait_attr(frame, IMAGE, "data-image", lambda v: v == "decoded", what="the image decoded")
    d = dataset(frame, IMAGE)
    assert d["grid"] == "32,32" and int(d["patches"]) > 0
    pixels, rect = overlay(frame)
    left, top, width, height = rect
    want = eager[-1][1, 0, 1:].reshape(32, 32)
    want = want / want.max()
    drawn = np.zeros((32, 32))
    for r in range(32):
        for c in range(32):
            drawn[r, c] = pixels[int(top + (r + 0.5) * height / 32), int(left + (c + 0.5) * width / 32), 3] / 255.0
    assert np.abs(drawn ** 2 - want).max() < 0.05
    assert "exact row" in frame.locator('[data-testid="status"]').text_content()
    watch.check()


def test_b_minus_a_across_checkpoints_and_patch_labels(page, servers):
    pg, watch = page
    tb, _ = servers
    frame = open_tab(pg, tb.url, {"run": "planted", "tag": "images", "example": "0", "step": 1, "view": "image",
                                  "iq": 0, "ia": "head", "nhead": 0, "crun": "planted", "cstep": 0,
                                  "cmode": "diff"})
    wait_attr(frame, IMAGE, "data-signed", lambda v: v in ("1", "true"), what="B - A drawn")
    pixels, rect = overlay(frame)
    alpha = patch_alpha(pixels, rect)
    assert alpha[PLANTED[0]] > 0 and alpha[PLANTED[1]] > 0 and (alpha > 0).sum() == 2
    left, top, width, height = rect
    colour = {}
    for step, (r, c) in PLANTED.items():
        x, y = int(left + (c + 0.5) * width / COLS), int(top + (r + 0.5) * height / ROWS)
        colour[step] = pixels[y, x, :3].astype(int)
    # A is the selection (step 1), B the compared step 0: red where A attends more, blue where B does
    assert colour[1][0] > colour[1][2] and colour[0][2] > colour[0][0], colour
    # the head view labels patch tokens by grid position, not by their raw strings
    frame.evaluate("() => window.attentionApp.update({view: 'head'})")
    wait_idle(frame)
    labels = frame.evaluate("() => window.attentionApp.current.header.sequences.input.slice(0, 3)")
    assert labels[0] == "[CLS]"
    watch.check()


def test_a_corrupt_image_costs_only_the_image_view(page, servers):
    pg, watch = page
    tb, _ = servers
    frame = open_tab(pg, tb.url, {"run": "corrupt", "tag": "images", "example": "0", "step": 0})
    assert int(dataset(frame, '[data-testid="head-view"]')["linesRest"]) > 0
    frame.evaluate("() => window.attentionApp.update({view: 'image'})")
    frame.wait_for_function("() => (document.querySelector('[data-testid=\"error\"]')?.textContent || '')"
                            ".includes('could not be loaded')", timeout=30_000)
    frame.evaluate("() => window.attentionApp.update({view: 'head'})")
    wait_idle(frame)
    assert int(dataset(frame, '[data-testid="head-view"]')["linesRest"]) > 0
    # chromium logs the failed /image request (404) as a console error: only that may be there
    assert all("404" in e for e in watch.errors), watch.errors
    assert not watch.remote_requests and not watch.dialogs
