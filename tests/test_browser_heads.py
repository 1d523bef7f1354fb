"""Browser test of the Heads view (headless chromium, Python playwright, on the Attention tab of a real
``tensorboard`` process): the table sorted by each head's mean over a probe set, sorting reversed, a head
chosen, and its best example opened in the head view.

Data: run ``probes``, 6 examples x steps 0 and 10, 2 layers x 3 heads x 8 tokens. Head (1, 2) puts a share
``(i + 1) / 8`` of every row on the first token in example ``i`` at step 10 (a sink head whose strength grows
with the example's index); every other head is a random softmax of the same examples. The expected sink scores
are computed here with ``metrics.layer_metrics`` from the logged arrays.
"""

from __future__ import annotations

import urllib.parse

import numpy as np
import pytest

from browser_util import ROOT, dataset, open_tab, wait_attr, wait_idle
from conftest import TensorBoardProcess, softmax_attention
from tensorboard_plugin_attention import metrics as metrics_mod

pytestmark = pytest.mark.browser

RUN = {"run": "probes", "tag": "probes", "example": "0"}
LAYERS, HEADS, TOKENS, N = 2, 3, 8, 6
SINK = (1, 2)
VIEW = '[data-testid="heads-view"]'
HEAD = '[data-testid="head-view"]'


def write_probe_set(run_dir: str) -> dict:
    """Logs the probe set (module docstring); returns ``{(example, step): sink (layers, heads)}``."""
    from tensorboard_plugin_attention.summary import AttentionWriter, log_attention

    rng = np.random.default_rng(9)
    tokens = ["[CLS]"] + [f"w{i}" for i in range(1, TOKENS)]
    sink = {}
    with AttentionWriter(run_dir) as w:
        for step in (0, 10):
            for i in range(N):
                layers = [softmax_attention(rng, HEADS, TOKENS, TOKENS) for _ in range(LAYERS)]
                if step == 10:
                    share = (i + 1) / 8
                    a = np.full((TOKENS, TOKENS), (1 - share) / TOKENS, np.float32)
                    a[:, 0] += share
                    layers[SINK[0]][SINK[1]] = a
                log_attention(w, RUN["tag"], layers, tokens, step, example=str(i))
                sink[(str(i), step)] = metrics_mod.layer_metrics(layers, tokens)["sink"]
    return sink


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser_heads")
    sink = write_probe_set(str(root / RUN["run"]))
    tb = TensorBoardProcess(str(root), "--load_fast=false").start(90)
    try:
        tb.wait_for(lambda: len(tb.plugin("index").json()["runs"]) == 1, timeout=90, what="the probe set listed")
        yield tb, sink
    finally:
        tb.stop()


def url_keys(page) -> dict:
    frag = urllib.parse.urlsplit(page.url).fragment
    return {k[len("p.attention."):]: urllib.parse.unquote(v) for k, _, v in (p.partition("=") for p in frag.split("&"))
            if k.startswith("p.attention.")}


def table(frame) -> list:
    """(layer, head, mean) of the table's rows, in order."""
    rows = frame.evaluate("""() => [...document.querySelectorAll('[data-testid^="heads-row-"]')]
        .map((r) => [r.dataset.head, r.dataset.mean])""")
    return [(*map(int, h.split(",")), float(m) if m else None) for h, m in rows]


def test_sorting_and_jumping_to_the_best_example(page, server):
    pg, watch = page
    tb, sink = server
    frame = open_tab(pg, tb.url, {**RUN, "view": "heads", "step": 10, "hm": "sink"})
    wait_attr(frame, '[data-testid="heads-heatmap"]', "data-cells", lambda v: v == str(LAYERS * HEADS), what="(heatmap)")
    wait_idle(frame)
    d = dataset(frame, VIEW)
    assert (d["metric"], d["step"], d["examples"], d["sort"]) == ("sink", "10", str(N), "mean:desc")
    ref = np.mean([sink[(str(i), 10)] for i in range(N)], axis=0)  # (layers, heads)
    rows = table(frame)
    assert len(rows) == LAYERS * HEADS
    assert [(l, h) for l, h, _ in rows] == sorted(((l, h) for l in range(LAYERS) for h in range(HEADS)),
                                                  key=lambda lh: -ref[lh])
    assert rows[0][:2] == SINK and abs(rows[0][2] - ref[SINK]) < 0.01  # the stored codec's error at most
    assert d["chosen"] == "1,2"  # the top row is chosen by default
    # the chosen head's examples, best first: the strongest sink is the last example
    best = sorted(range(N), key=lambda i: -sink[(str(i), 10)][SINK])
    wait_attr(frame, '[data-testid="heads-example-0"]', "data-example", lambda v: v == str(best[0]))
    assert int(dataset(frame, '[data-testid="heads-trend"]')["points"]) == 2

    # reversing the sort: ascending means, the sink head last
    frame.locator('[data-testid="heads-sort-mean"]').click()
    wait_attr(frame, VIEW, "data-sort", lambda v: v == "mean:asc")
    rows = table(frame)
    means = [m for _, _, m in rows]
    assert means == sorted(means) and rows[-1][:2] == SINK
    assert url_keys(pg).get("ha") == "1"

    # another head chosen from the table, then back to the sink head, and its best example opened
    frame.locator('[data-testid="heads-row-0"]').click()
    wait_attr(frame, VIEW, "data-chosen", lambda v: v == "%d,%d" % rows[0][:2])
    frame.locator(f'[data-testid^="heads-row-"][data-head="{SINK[0]},{SINK[1]}"]').click()
    wait_attr(frame, VIEW, "data-chosen", lambda v: v == "1,2")
    wait_attr(frame, '[data-testid="heads-example-0"]', "data-example", lambda v: v == str(best[0]))
    frame.locator('[data-testid="heads-example-0"]').click()
    frame.locator(HEAD).wait_for()
    wait_idle(frame)
    assert frame.get_attribute(ROOT, "data-view") == "head"
    keys = url_keys(pg)
    assert (keys.get("example"), keys.get("layer"), keys.get("heads"), keys.get("step")) == (str(best[0]), "1", "2", "10"), keys
    wait_attr(frame, HEAD, "data-active-heads", lambda v: v == "2")  # head 2 alone
    assert frame.locator('[data-testid="example-select"]').input_value() == str(best[0])
    watch.check()


def test_the_view_says_when_it_does_not_apply(page, server, tmp_path):
    """Records logged without metrics: the Heads button is disabled with the reason."""
    from tensorboard_plugin_attention.summary import AttentionWriter, log_attention

    pg, watch = page
    rng = np.random.default_rng(0)
    with AttentionWriter(str(tmp_path / "plain")) as w:
        log_attention(w, "t", [softmax_attention(rng, 2, 4, 4)], list("abcd"), 0, metrics=False)
    tb = TensorBoardProcess(str(tmp_path), "--load_fast=false").start(90)
    try:
        tb.wait_for(lambda: tb.plugin("index").json()["runs"], timeout=90, what="the run listed")
        frame = open_tab(pg, tb.url, {"run": "plain", "tag": "t"})
        button = frame.locator('[data-testid="view-heads"]')
        assert button.is_disabled()
        assert "metrics" in (button.get_attribute("title") or "")
        watch.check()
    finally:
        tb.stop()
