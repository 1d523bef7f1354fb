"""Browser test of value-weighted attention (issue 20): headless chromium on the Attention tab of a real
``tensorboard``. A LLaMA-shaped model with grouped-query attention (random weights, built here) is captured with
``values=True`` twice: at 24 tokens (a dense record) and at 40 tokens with a dense limit of 16 (a long record,
rebuilt from q/k); a third record is captured without value norms. Checked: the toolbar's weighting toggle puts
``weighting=value`` in the URL, the matrix view's hovered cells then hold exactly what the backend serves
value-weighted (and that differs from the weights), which equals the model's eager attention value-weighted
within the codec's bound; a long record's exact rows are value-weighted too; the toggle is disabled, with the
reason, for a record without value norms.
"""

from __future__ import annotations

import numpy as np
import pytest

from browser_util import dataset, open_tab, wait_attr, wait_idle, wait_ready
from conftest import TensorBoardProcess

pytestmark = pytest.mark.browser

torch = pytest.importorskip("torch")

MATRIX = '[data-testid="matrix-view"]'
TOGGLE = '[data-testid="weighting"]'


def _model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2,
                                        max_position_embeddings=64)).eval()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tensorboard_plugin_attention.capture import capture_attention
    from tensorboard_plugin_attention.metrics import value_weighted
    from tensorboard_plugin_attention.summary import AttentionWriter, log_attention

    root = tmp_path_factory.mktemp("browser_values")
    model = _model()
    expected = {}
    with AttentionWriter(str(root / "vals")) as w:
        for tag, n, limit in (("dense", 24, 1024), ("long", 40, 16)):
            ids = torch.randint(1, 100, (1, n), generator=torch.Generator().manual_seed(n))
            with torch.no_grad(), capture_attention(model, values=True, dense_limit=limit) as cap:
                model(input_ids=ids)
            log_attention(w, tag, cap.last, [f"t{int(t)}" for t in ids[0]], 0)
            with torch.no_grad(), capture_attention(model, values=True) as ref:  # the dense reference
                model(input_ids=ids)
            layer = ref.last.example(0).kinds["decoder"][1]
            expected[tag] = value_weighted(layer.attention, layer.value_norms)
    with AttentionWriter(str(root / "plain")) as w:
        ids = torch.randint(1, 100, (1, 24), generator=torch.Generator().manual_seed(5))
        with torch.no_grad(), capture_attention(model) as cap:
            model(input_ids=ids)
        log_attention(w, "dense", cap.last, [f"t{int(t)}" for t in ids[0]], 0)
    tb = TensorBoardProcess(str(root), "--load_fast=false").start(90)
    try:
        tb.wait_for(lambda: len(tb.plugin("index").json()["runs"]) == 2, timeout=90, what="both runs listed")
        yield tb, expected
    finally:
        tb.stop()


def hover_cell(frame, i: int, j: int) -> dict:
    d = dataset(frame, MATRIX)
    x0, x1, y0, y1 = (float(d[k]) for k in ("x0", "x1", "y0", "y1"))
    px = float(d["left"]) + (j + 0.5 - x0) / (x1 - x0) * float(d["width"])
    py = float(d["top"]) + (i + 0.5 - y0) / (y1 - y0) * float(d["height"])
    frame.locator('[data-testid="matrix-canvas"]').hover(position={"x": px, "y": py})
    wait_attr(frame, MATRIX, "data-hover", lambda v: v == f"{i},{j}", what=f"hovering cell {i},{j}")
    wait_attr(frame, MATRIX, "data-hover-exact", lambda v: v == "1", what=f"the exact value of {i},{j}")
    return dataset(frame, MATRIX)


def served(tb, lut, tag: str, n: int, weighting: str) -> np.ndarray:
    """Layer 1, head 0 as the backend serves it (``/window``: both layouts), decoded."""
    r = tb.plugin("window", run="vals", tag=tag, example="0", step=0, kind="decoder", layer=1, head=0,
                  rows=f"0:{n}", cols=f"0:{n}", weighting=weighting)
    assert r.status == 200, r.body[:200]
    return lut[np.frombuffer(r.body, np.uint8)].reshape(n, n)


CELLS = ((5, 2), (23, 0), (23, 17), (12, 12), (9, 4))


@pytest.mark.parametrize("tag,n", [("dense", 24), ("long", 40)])
def test_the_toggle_shows_value_weighted_attention(page, server, tag, n):
    pg, watch = page
    tb, expected = server
    lut = np.asarray(tb.plugin("index").json()["codec"]["lut"], np.float32)
    frame = open_tab(pg, tb.url, {"run": "vals", "tag": tag, "example": "0", "step": 0, "view": "matrix", "layer": 1})
    wait_idle(frame)
    toggle = frame.locator(TOGGLE)
    assert not toggle.is_disabled() and toggle.input_value() == "weights"
    raw = served(tb, lut, tag, n, "weights")
    for i, j in CELLS[:2]:
        assert np.float32(float(hover_cell(frame, i, j)["hoverValue"])) == raw[i, j]

    toggle.select_option("value")
    wait_idle(frame)
    assert "weighting=value" in pg.url  # the choice is in TensorBoard's page URL
    weighted = served(tb, lut, tag, n, "value")
    assert np.abs(weighted - raw).max() > 0.05  # the norms do change what is shown
    assert np.abs(weighted - expected[tag][0]).max() < 0.02  # the model's attention, value-weighted
    for i, j in CELLS:
        got = hover_cell(frame, i, j)
        assert np.float32(float(got["hoverValue"])) == weighted[i, j], (i, j, got["hoverValue"])

    # a reload keeps the weighting
    pg.reload()
    frame = wait_ready(pg)
    wait_idle(frame)
    assert frame.locator(TOGGLE).input_value() == "value"
    watch.check()


def test_the_toggle_says_why_a_record_cannot_be_value_weighted(page, server):
    pg, watch = page
    tb, _ = server
    frame = open_tab(pg, tb.url, {"run": "plain", "tag": "dense", "example": "0", "step": 0, "view": "matrix"})
    wait_idle(frame)
    toggle = frame.locator(TOGGLE)
    assert toggle.is_disabled()
    assert "values=True" in (toggle.get_attribute("title") or ""), toggle.get_attribute("title")
    watch.check()
