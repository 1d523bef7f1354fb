"""Browser tests of the views across training: "Heads over training" and "Rollout" (headless chromium, Python
playwright, on the Attention tab of a real ``tensorboard`` process).

Data: run ``sharp``, written with ``AttentionWriter``: 2 layers x 4 heads x 8 tokens at steps 0, 5 and 10,
where exactly one head (layer 1, head 2) goes from diffuse (uniform rows) at step 0 through a half-way mix at
step 5 to a sharp previous-token pattern at step 10, while every other head logs the very same arrays at every
step. So the Jensen-Shannon divergence between steps 0 and 10 is zero for every head but (1, 2), whose
previous-token score goes from 1/8 to 1: the tests know what the views must show. And run ``induction``: the
induction demo's 2-layer, 4-head LLaMA trained from scratch for a few steps (``train_induction``; real captured
causal attention with repeated tokens), trained in a subprocess while the other tests run; its test checks what
the tab shows against what the server computes. (The demo's 120-step / 8-checkpoint run takes ~45 s of CPU
here, too slow for this file's budget; 30 steps / 5 checkpoints take ~12 s.)

What the views drew is read from the canvases' pixels and from the drawn-data counters of
``frontend/README.md`` ("Hooks for browser tests"); every test waits for those attributes (never sleeps) and
checks that the page logged no console error, opened no dialog and requested nothing outside localhost.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.parse

import numpy as np
import pytest

from browser_util import ROOT, canvas_digest, dataset, open_tab, wait_attr, wait_idle
from conftest import TensorBoardProcess, softmax_attention

pytestmark = pytest.mark.browser

RUN = {"run": "sharp", "tag": "probes", "example": "0"}
LAYERS, HEADS, TOKENS = 2, 4, 8
STEPS = [0, 5, 10]
CHANGED = (1, 2)  # the one head that changes between steps
TRAINING = '[data-testid="training-heatmap"]'
CANVAS = '[data-testid="training-canvas"]'
TRAJ = '[data-testid="training-trajectory"]'
ROLLOUT = '[data-testid="rollout-canvas"]'
HEAD = '[data-testid="head-view"]'
NEURON = '[data-testid="neuron-view"]'


# ------------------------------------------------------------------------------------------------ data
def previous_token(n: int) -> np.ndarray:
    """Row i on token i - 1 (row 0 on itself): the sharp pattern the changed head learns."""
    a = np.zeros((n, n), np.float32)
    a[0, 0] = 1
    a[np.arange(1, n), np.arange(n - 1)] = 1
    return a


def write_sharp_run(run_dir: str) -> dict:
    """Logs ``sharp`` (see the module docstring); returns ``{step: [layer (heads, q, k)]}`` as logged."""
    from tensorboard_plugin_attention.summary import AttentionWriter, log_attention

    rng = np.random.default_rng(3)
    base = [softmax_attention(rng, HEADS, TOKENS, TOKENS) for _ in range(LAYERS)]  # shared by every step
    diffuse = np.full((TOKENS, TOKENS), 1 / TOKENS, np.float32)
    sharp = previous_token(TOKENS)
    tokens = ["[CLS]"] + [f"w{i}" for i in range(1, TOKENS - 1)] + ["[SEP]"]
    logged = {}
    with AttentionWriter(run_dir) as w:
        for step, mix in zip(STEPS, (0.0, 0.5, 1.0)):
            layers = [a.copy() for a in base]  # identical arrays for every head ...
            layers[CHANGED[0]][CHANGED[1]] = (1 - mix) * diffuse + mix * sharp  # ... but this one
            log_attention(w, RUN["tag"], layers, tokens, step, example=RUN["example"], model_name="sharp-synthetic")
            logged[step] = layers
    return logged


INDUCTION = {"run": "induction", "tag": "sequences", "example": "repeat0"}
INDUCTION_ARGS = dict(steps=30, checkpoints=5, probes=1)
# train in a child process (one torch thread: the browser and tensorboard need the other cores)
TRAIN_INDUCTION = """
import json, sys, torch
torch.set_num_threads(1)
from tensorboard_plugin_attention.demo.induction import train_induction
print(json.dumps(train_induction(sys.argv[1], **json.loads(sys.argv[2]))))
"""


# -------------------------------------------------------------------------------------------- fixtures
def listed(tb: TensorBoardProcess, ref: dict):
    """The /index entry of (run, tag, example), or None while TensorBoard has not loaded it."""
    for r in tb.plugin("index").json()["runs"]:
        for t in r["tags"]:
            for e in t["examples"]:
                if (r["run"], t["tag"], e["example"]) == (ref["run"], ref["tag"], ref["example"]):
                    return e
    return None


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    """``(logdir, process)``: the induction run being trained into ``logdir/induction`` (started first)."""
    root = tmp_path_factory.mktemp("browser_training")
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_INDUCTION, str(root / INDUCTION["run"]),
                             json.dumps(INDUCTION_ARGS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        yield str(root), proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def server(trainer):
    """One TensorBoard on a logdir with ``sharp`` (ready when /index lists all its steps) and, later,
    ``induction``."""
    root, _ = trainer
    write_sharp_run(os.path.join(root, RUN["run"]))
    tb = TensorBoardProcess(root, "--load_fast=false", "--reload_interval=1").start(90)
    try:
        tb.wait_for(lambda: (listed(tb, RUN) or {}).get("steps") == STEPS, timeout=90,
                    what=f"/index to list steps {STEPS} of {RUN}")
        yield tb
    finally:
        tb.stop()


@pytest.fixture(scope="module")
def induction(trainer, server) -> list:
    """Waits for the induction run's training and for TensorBoard to list all its steps; returns them."""
    _, proc = trainer
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == 0, f"train_induction failed:\n{err[-4000:]}"
    steps = json.loads(out.strip().splitlines()[-1])
    server.wait_for(lambda: (listed(server, INDUCTION) or {}).get("steps") == steps, timeout=90,
                    what=f"/index to list steps {steps} of {INDUCTION}")
    return steps


# ----------------------------------------------------------------------------------------------- helpers
def url_keys(page) -> dict:
    """The ``p.attention.<key>`` values of TensorBoard's URL hash."""
    frag = urllib.parse.urlsplit(page.url).fragment
    out = {}
    for part in frag.split("&"):
        k, sep, v = part.partition("=")
        if sep and k.startswith("p.attention."):
            out[k[len("p.attention."):]] = urllib.parse.unquote(v)
    return out


def open_training(page, base_url: str, **selection) -> tuple:
    """Opens the heads-over-training view; waits until the heatmap is drawn; returns (frame, its dataset)."""
    if page.url != "about:blank":
        page.goto("about:blank")  # a new hash alone would not reload TensorBoard's page
    frame = open_tab(page, base_url, {**RUN, "view": "training", **selection})
    wait_attr(frame, TRAINING, "data-cells", lambda v: v == str(LAYERS * HEADS), what="(heatmap drawn)")
    return frame, dataset(frame, TRAINING)


def cell_point(d: dict, layer: int, head: int) -> dict:
    """Where cell (layer, head) is on ``training-canvas`` (content coordinates), from the heatmap's dataset."""
    return {"x": float(d["left"]) + (head + 0.5) * float(d["cellWidth"]),
            "y": float(d["top"]) + (layer + 0.5) * float(d["cellHeight"])}


def hover_cell(frame, layer: int, head: int) -> None:
    d = dataset(frame, TRAINING)
    frame.locator(CANVAS).hover(position=cell_point(d, layer, head))
    wait_attr(frame, TRAINING, "data-hover", lambda v: v == f"{layer},{head}", what=f"(hover L{layer} H{head})")


_HIT_TEST_JS = """
(root) => {
  const canvases = root.querySelectorAll('canvas');
  const top = canvases[canvases.length - 1];  // the overlay canvas gets the pointer events
  const r = top.getBoundingClientRect();
  const hits = {};
  for (let y = 0; y < r.height; y += 3) for (let x = 0; x < r.width; x += 2) {
    top.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + x, clientY: r.top + y, bubbles: true}));
    const step = root.dataset.hover;
    if (step) (hits[step] = hits[step] || []).push([x, y]);
  }
  top.dispatchEvent(new MouseEvent('mouseleave'));
  const out = {};
  for (const [step, xy] of Object.entries(hits)) {
    const xs = xy.map((p) => p[0]).sort((a, b) => a - b), ys = xy.map((p) => p[1]).sort((a, b) => a - b);
    out[step] = {x: xs[xs.length >> 1], y: ys[ys.length >> 1]};
  }
  return out;
}
"""


def trajectory_points(frame) -> dict:
    """``{step: {x, y}}``: where the trajectory chart answers a hover with each step (the median of the
    positions that hit it), found with synthetic mouse moves over the chart; chart coordinates."""
    points = frame.locator(TRAJ).evaluate(_HIT_TEST_JS)
    wait_attr(frame, TRAJ, "data-hover", lambda v: v == "")
    return points


def digest_changed(frame, selector: str, before: dict, what: str, timeout: float = 20_000) -> dict:
    """Waits until the canvases under ``selector`` differ from ``before``; returns the new digest."""
    waited = 0
    while True:
        now = canvas_digest(frame, selector)
        if now["hash"] != before["hash"]:
            return now
        if waited > timeout:
            raise AssertionError(f"{what}: the drawing did not change")
        frame.wait_for_timeout(100)
        waited += 100


# ------------------------------------------------------------------------------------ the data, as served
def test_the_backend_sees_exactly_one_changed_head(server):
    """Preconditions of the browser tests, from the HTTP API: only (1, 2) diverges, its previous-token score
    rises from 1/8 to 1, every other head's metrics are the same at every step."""
    p = dict(RUN, kind="encoder")
    div = server.plugin("divergence", **p, step_a="0", step_b="10").json()
    js = np.array(div["js"], float)
    assert js.shape == (LAYERS, HEADS)
    assert js[CHANGED] > 0.3  # uniform vs one-hot rows over 8 tokens: about 0.45 nats
    others = np.delete(js.ravel(), CHANGED[0] * HEADS + CHANGED[1])
    assert np.all(others == 0), js
    metrics = server.plugin("metrics", **p).json()
    assert metrics["steps"] == STEPS
    prev = np.array(metrics["kinds"]["encoder"]["prev_token"], float)  # (steps, layers, heads)
    assert prev[0][CHANGED] == pytest.approx(1 / TOKENS, abs=0.01) and prev[-1][CHANGED] == pytest.approx(1, abs=0.01)
    assert prev[0][CHANGED] < prev[1][CHANGED] < prev[2][CHANGED]
    mask = np.ones((LAYERS, HEADS), bool)
    mask[CHANGED] = False
    for name, series in metrics["kinds"]["encoder"].items():
        s = np.array(series, float)
        if np.isnan(s).all():
            continue
        np.testing.assert_array_equal(s[0][mask], s[-1][mask], err_msg=name)


# -------------------------------------------------------------------------------------- heads over training
def test_heatmap_renders_every_head_and_hover_shows_its_trajectory(page, server):
    pg, watch = page
    frame, d = open_training(pg, server.url)
    assert (d["layers"], d["heads"], d["nan"], d["step"], d["metric"]) == (str(LAYERS), str(HEADS), "0", "10", "entropy")
    heat = canvas_digest(frame, CANVAS)
    assert heat["drawn"] > LAYERS * HEADS * 100, heat  # every cell is filled (at least 14 x 12 px each)
    # before any hover, the trajectory shows a head (the one with the largest value) with one point per step
    assert d["trajectoryPoints"] == str(len(STEPS))
    t = dataset(frame, TRAJ)
    assert t["trajectoryPoints"] == str(len(STEPS)) and t["head"] != ""
    traj = canvas_digest(frame, TRAJ)
    assert traj["drawn"] > 0

    # hovering a cell: its value under the heatmap, and its trajectory (every step) in the chart
    for layer, head in (CHANGED, (0, 1)):
        if f"{layer},{head}" == dataset(frame, TRAJ)["head"]:
            continue  # already shown: hovering it would not redraw the chart
        hover_cell(frame, layer, head)
        wait_attr(frame, TRAJ, "data-head", lambda v: v == f"{layer},{head}", what="(trajectory follows hover)")
        assert dataset(frame, TRAJ)["trajectoryPoints"] == str(len(STEPS))
        assert dataset(frame, TRAINING)["trajectoryPoints"] == str(len(STEPS))
        readout = frame.locator('[data-testid="training-hover"]').text_content()
        assert readout.startswith(f"L{layer} H{head} · entropy ") and readout.endswith("at step 10"), readout
        assert f"Layer {layer}, head {head}" in frame.locator('[data-testid="training-trajectory-title"]').text_content()
        traj = digest_changed(frame, TRAJ, traj, f"hovering L{layer} H{head}")
    # leaving the heatmap: no hovered cell, but the trajectory stays on the last hovered head
    pg.mouse.move(1, 1)
    wait_attr(frame, TRAINING, "data-hover", lambda v: v == "")
    assert dataset(frame, TRAJ)["head"] == "0,1"

    # another metric redraws the heatmap; the changed head is a perfect previous-token head at step 10
    frame.locator('[data-testid="training-metric"]').select_option("prev_token")
    wait_attr(frame, TRAINING, "data-metric", lambda v: v == "prev_token")
    wait_idle(frame)
    wait_attr(frame, TRAINING, "data-cells", lambda v: v == str(LAYERS * HEADS))
    digest_changed(frame, CANVAS, heat, "switching the metric to previous token")
    assert url_keys(pg)["metric"] == "prev_token"
    hover_cell(frame, *CHANGED)
    readout = frame.locator('[data-testid="training-hover"]').text_content()
    assert readout == "L1 H2 · previous token 1 at step 10", readout
    watch.check()


def test_trajectory_of_the_selected_head_and_the_step_marker(page, server):
    """With a head selected in the URL (layer + one head), the chart shows it before any hover; another step
    moves the heatmap (other colours for the changed head only) and the chart's marker."""
    pg, watch = page
    frame, d = open_training(pg, server.url, layer=CHANGED[0], heads=CHANGED[1], metric="prev_token", step=0)
    assert d["step"] == "0" and d["trajectoryPoints"] == str(len(STEPS))
    assert dataset(frame, TRAJ)["head"] == "1,2"
    readout = frame.locator('[data-testid="training-hover"]').text_content()
    assert re.fullmatch(r"L1 H2 · previous token 0\.1[23] at step 0", readout), readout  # 1/8, 2 digits
    heat0, traj0 = canvas_digest(frame, CANVAS), canvas_digest(frame, TRAJ)
    frame.locator('[data-testid="step-slider"]').fill("2")  # index 2: step 10
    wait_attr(frame, TRAINING, "data-step", lambda v: v == "10")
    wait_idle(frame)
    digest_changed(frame, CANVAS, heat0, "step 0 -> 10 in the heatmap")
    digest_changed(frame, TRAJ, traj0, "step 0 -> 10 marker in the trajectory")
    assert dataset(frame, TRAJ)["head"] == "1,2"
    assert frame.locator('[data-testid="training-hover"]').text_content() == "L1 H2 · previous token 1 at step 10"

    # the chart's points: found by hit-testing the chart (its layout is not published), hovered and clicked
    points = trajectory_points(frame)
    assert sorted(points, key=int) == [str(s) for s in STEPS], points
    traj10 = canvas_digest(frame, TRAJ)
    frame.locator(TRAJ).hover(position=points["5"])
    wait_attr(frame, TRAJ, "data-hover", lambda v: v == "5", what="(hover the step-5 point)")
    digest_changed(frame, TRAJ, traj10, "hovering the step-5 point")
    assert frame.locator(TRAJ).locator("canvas").last.get_attribute("title").startswith("step 5: ")
    # the log(1 + step) axis moves the points
    frame.locator('[data-testid="training-logx"]').check()
    wait_attr(frame, TRAJ, "data-log-x", lambda v: v == "1")
    assert url_keys(pg).get("logx") == "1"
    logx = trajectory_points(frame)
    assert logx["0"]["x"] == pytest.approx(points["0"]["x"], abs=3) and logx["5"]["x"] > points["5"]["x"] + 20, (points, logx)
    frame.locator(TRAJ).click(position=logx["5"])
    frame.locator(HEAD).wait_for()
    wait_idle(frame)
    wait_attr(frame, HEAD, "data-active-heads", lambda v: v == "2")
    assert frame.locator('[data-testid="layer-select"]').input_value() == "1"
    assert frame.locator('[data-testid="step-label"]').text_content().startswith("5 (2/3)")
    assert (url_keys(pg).get("step"), url_keys(pg).get("view")) == ("5", None)
    watch.check()


def test_clicking_a_cell_opens_the_head_view_at_that_layer_head_and_step(page, server):
    pg, watch = page
    frame, d = open_training(pg, server.url, step=5)
    assert d["step"] == "5"
    frame.locator(CANVAS).click(position=cell_point(d, *CHANGED))
    frame.locator(HEAD).wait_for()
    wait_idle(frame)
    assert frame.get_attribute(ROOT, "data-view") == "head"
    wait_attr(frame, HEAD, "data-active-heads", lambda v: v == "2")
    assert frame.locator('[data-testid="layer-select"]').input_value() == "1"
    assert frame.locator('[data-testid="step-label"]').text_content().startswith("5 (2/3)")
    keys = url_keys(pg)
    assert (keys.get("layer"), keys.get("heads"), keys.get("nhead"), keys.get("step")) == ("1", "2", "2", "5"), keys
    assert "view" not in keys  # the head view is the default
    h = dataset(frame, HEAD)
    assert h["rows"] == h["cols"] == str(TOKENS) and int(h["linesRest"]) > 0
    assert canvas_digest(frame, HEAD)["drawn"] > 0
    # the neuron view, from there, shows the same head (nhead was set too)
    frame.locator('[data-testid="view-neuron"]').click()
    frame.locator(NEURON).wait_for()
    wait_idle(frame)
    assert frame.locator('[data-testid="neuron-head-select"]').input_value() == "2"
    assert frame.locator('[data-testid="layer-select"]').input_value() == "1"

    # back to the training view: the opened head is now the selection's, so its trajectory shows first
    frame.locator('[data-testid="view-training"]').click()
    wait_attr(frame, TRAINING, "data-cells", lambda v: v == str(LAYERS * HEADS))
    wait_idle(frame)
    assert dataset(frame, TRAJ)["head"] == "1,2"
    # Shift-click opens the other view (the neuron view) at layer 0, head 3, step 5
    d = dataset(frame, TRAINING)
    frame.locator(CANVAS).click(position=cell_point(d, 0, 3), modifiers=["Shift"])
    frame.locator(NEURON).wait_for()
    wait_idle(frame)
    assert frame.get_attribute(ROOT, "data-view") == "neuron"
    assert frame.locator('[data-testid="neuron-head-select"]').input_value() == "3"
    assert frame.locator('[data-testid="layer-select"]').input_value() == "0"
    assert frame.locator('[data-testid="step-label"]').text_content().startswith("5 (2/3)")
    keys = url_keys(pg)
    assert (keys.get("view"), keys.get("layer"), keys.get("heads"), keys.get("nhead"), keys.get("step")) == \
        ("neuron", None, "3", "3", "5"), keys  # layer 0 is the default: not written
    assert int(dataset(frame, NEURON)["rows"]) == TOKENS
    watch.check()


def test_divergence_ranking_puts_the_changed_head_first(page, server):
    pg, watch = page
    # default checkpoints: the first step (0) and the selected one (the latest, 10)
    frame, d = open_training(pg, server.url)
    wait_attr(frame, TRAINING, "data-ranking", lambda v: v == "1,2", what="(top head by divergence)")
    assert frame.locator('[data-testid="div-step-a"]').input_value() == "0"
    assert frame.locator('[data-testid="div-step-b"]').input_value() == "10"
    first = frame.locator('[data-testid="div-rank-0"]')
    assert first.get_attribute("data-head") == "1,2"
    assert first.text_content().startswith("L1 H2 0.") and first.text_content().endswith(" nats")
    # every other head did not change at all: ranked after it with 0 (ties by layer, then head)
    ranked = [frame.locator(f'[data-testid="div-rank-{i}"]') for i in range(1, LAYERS * HEADS)]
    assert [r.get_attribute("data-head") for r in ranked] == ["0,0", "0,1", "0,2", "0,3", "1,0", "1,1", "1,3"]
    assert all(r.text_content().endswith(" 0 nats") for r in ranked)
    div = frame.locator('[data-testid="div-heatmap"]')
    assert div.get_attribute("data-cells") == str(LAYERS * HEADS)
    assert canvas_digest(frame, '[data-testid="div-heatmap"]')["drawn"] > 0
    assert frame.locator('[data-testid="div-message"]').is_hidden()
    # hovering a ranked head highlights its cell (and shows its trajectory); leaving it clears the highlight
    frame.locator('[data-testid="div-rank-3"]').hover()
    wait_attr(frame, TRAINING, "data-hover", lambda v: v == "0,2", what="(ranked head highlighted)")
    wait_attr(frame, TRAJ, "data-head", lambda v: v == "0,2")
    pg.mouse.move(1, 1)
    wait_attr(frame, TRAINING, "data-hover", lambda v: v == "", what="(highlight cleared on leaving the ranking)")
    assert dataset(frame, TRAJ)["head"] == "0,2"  # the trajectory stays on the last hovered head

    # steps 0 -> 5 (half way) still rank it first; the URL keeps the choice
    before = canvas_digest(frame, '[data-testid="div-heatmap"]')
    frame.locator('[data-testid="div-step-b"]').select_option("5")
    wait_idle(frame)
    wait_attr(frame, TRAINING, "data-ranking", lambda v: v == "1,2")
    digest_changed(frame, '[data-testid="div-heatmap"]', before, "divergence 0 -> 5")
    assert url_keys(pg).get("sb") == "5"
    assert frame.locator('[data-testid="div-rank-0"]').text_content().startswith("L1 H2 ")
    # the same step twice: no divergence, no ranking, a message
    frame.locator('[data-testid="div-step-a"]').select_option("5")
    wait_idle(frame)
    wait_attr(frame, TRAINING, "data-ranking", lambda v: v == "", what="(no ranking for one step)")
    assert "Both checkpoints are step 5" in frame.locator('[data-testid="div-message"]').text_content()
    assert frame.locator('[data-testid="div-rank-0"]').count() == 0

    # clicking the top ranked head (checkpoints 0 -> 10) opens it at the second checkpoint
    frame, _ = open_training(pg, server.url, sa=0, sb=10)
    wait_attr(frame, TRAINING, "data-ranking", lambda v: v == "1,2")
    frame.locator('[data-testid="div-rank-0"]').click()
    frame.locator(HEAD).wait_for()
    wait_idle(frame)
    wait_attr(frame, HEAD, "data-active-heads", lambda v: v == "2")
    assert frame.locator('[data-testid="layer-select"]').input_value() == "1"
    assert frame.locator('[data-testid="step-label"]').text_content().startswith("10 (3/3)")
    keys = url_keys(pg)
    assert (keys.get("layer"), keys.get("heads"), keys.get("step", "latest")) == ("1", "2", "latest"), keys
    watch.check()


# ------------------------------------------------------------------------------------------------ rollout
def test_rollout_renders_and_hover_changes_the_bars(page, server):
    pg, watch = page
    frame = open_tab(pg, server.url, {**RUN, "view": "rollout"})
    wait_attr(frame, ROLLOUT, "data-cells", lambda v: v == str(TOKENS * TOKENS), what="(rollout drawn)")
    d = dataset(frame, ROLLOUT)
    assert (d["rows"], d["cols"], d["hover"], d["pinned"]) == (str(TOKENS), str(TOKENS), "", "")
    rest = canvas_digest(frame, ROLLOUT)
    assert rest["drawn"] > TOKENS * TOKENS * float(d["cell"]) ** 2 * 0.9, rest  # the heatmap, labels, bars
    assert "Abnar & Zuidema" in frame.locator('[data-testid="rollout-help"]').text_content()
    assert frame.locator('[data-testid="rollout-readout"]').text_content().startswith("Bars: rollout of the last query token “[SEP]”")
    assert frame.locator('[data-testid="compare-unsupported"]').count() == 1

    cell = float(d["cell"])

    def at(row: int, col: int) -> dict:
        return {"x": float(d["left"]) + (col + 0.5) * cell, "y": float(d["top"]) + (row + 0.5) * cell}

    stack = frame.locator(ROLLOUT)
    stack.hover(position=at(3, 1))
    wait_attr(frame, ROLLOUT, "data-hover", lambda v: v == "3", what="(hover row 3)")
    hovered = digest_changed(frame, ROLLOUT, rest, "hovering row 3")
    readout = frame.locator('[data-testid="rollout-readout"]').text_content()
    assert readout.startswith("R[3, 1] (“w3” ← “w1”) = ") and "Query 3 “w3”: top input tokens " in readout, readout
    stack.hover(position=at(6, 2))
    wait_attr(frame, ROLLOUT, "data-hover", lambda v: v == "6")
    digest_changed(frame, ROLLOUT, hovered, "hovering row 6")
    # click pins the row; leaving keeps the pinned row's bars
    stack.click(position=at(6, 2))
    wait_attr(frame, ROLLOUT, "data-pinned", lambda v: v == "6")
    pg.mouse.move(1, 1)
    wait_attr(frame, ROLLOUT, "data-hover", lambda v: v == "")
    assert dataset(frame, ROLLOUT)["pinned"] == "6"
    assert frame.locator('[data-testid="rollout-readout"]').text_content().startswith("Query 6 “w6”")
    pinned = canvas_digest(frame, ROLLOUT)
    assert pinned["hash"] != rest["hash"]

    # residual 1: Â = I at every layer, the rollout is the identity (other pixels); the URL keeps it
    frame.locator('[data-testid="rollout-residual"]').fill("1")
    wait_idle(frame)
    wait_attr(frame, ROLLOUT, "data-cells", lambda v: v == str(TOKENS * TOKENS))
    digest_changed(frame, ROLLOUT, pinned, "residual 1")
    assert url_keys(pg).get("residual") == "1"
    frame.locator(ROLLOUT).hover(position=at(4, 4))
    wait_attr(frame, ROLLOUT, "data-hover", lambda v: v == "4")
    assert frame.locator('[data-testid="rollout-readout"]').text_content().startswith("R[4, 4] (“w4” ← “w4”) = 1 · ")
    watch.check()


# ------------------------------------------------------------------------- a real model: the induction demo
def test_induction_run_training_and_rollout_views_match_the_server(page, server, induction):
    """The demo's 2-layer LLaMA (captured causal attention, repeated tokens): the tab shows the heads, the
    trajectories, the head the server ranks first by divergence and the head with the largest induction score;
    the rollout is causal (the first token only sees itself)."""
    pg, watch = page
    steps = induction
    entry = listed(server, INDUCTION)
    (kind,) = entry["header"]["kinds"]
    k = entry["header"]["kinds"][kind]
    layers, heads, n = k["layers"], k["heads"], k["q_len"]
    assert (layers, heads, n) == (2, 4, 33)
    p = dict(INDUCTION, kind=kind)
    metrics = server.plugin("metrics", **p).json()
    ind = np.array(metrics["kinds"][kind]["induction"][-1], float)  # latest step, layers x heads
    js = np.array(server.plugin("divergence", **p, step_a=str(steps[0]), step_b=str(steps[-1])).json()["js"], float)
    # rankHeads: largest first, ties by layer then head (np.argmax takes the first maximum in C order)
    top_div = np.unravel_index(np.argmax(js), js.shape)
    top_ind = np.unravel_index(np.argmax(ind), ind.shape)

    frame = open_tab(pg, server.url, {**INDUCTION, "view": "training", "metric": "induction"})
    wait_attr(frame, TRAINING, "data-cells", lambda v: v == str(layers * heads), what="(heatmap drawn)")
    wait_attr(frame, TRAINING, "data-ranking", lambda v: v == f"{top_div[0]},{top_div[1]}", what="(server's top head)")
    d = dataset(frame, TRAINING)
    assert (d["layers"], d["heads"], d["metric"], d["step"]) == (str(layers), str(heads), "induction", str(steps[-1]))
    assert d["nan"] == str(int(np.isnan(ind).sum()))
    assert canvas_digest(frame, CANVAS)["drawn"] > 0
    # before any hover: the head with the largest induction score now, over every checkpoint
    assert dataset(frame, TRAJ)["head"] == f"{top_ind[0]},{top_ind[1]}"
    assert d["trajectoryPoints"] == str(len(steps))
    other = (1 - top_ind[0], top_ind[1])
    hover_cell(frame, *other)
    wait_attr(frame, TRAJ, "data-head", lambda v: v == f"{other[0]},{other[1]}")
    assert dataset(frame, TRAJ)["trajectoryPoints"] == str(len(steps))
    assert frame.locator('[data-testid="div-step-a"]').input_value() == str(steps[0])
    assert frame.locator('[data-testid="div-rank-0"]').text_content().startswith(f"L{top_div[0]} H{top_div[1]} ")

    frame.locator('[data-testid="view-rollout"]').click()
    wait_attr(frame, ROLLOUT, "data-cells", lambda v: v == str(n * n), what="(rollout drawn)")
    wait_idle(frame)
    r = dataset(frame, ROLLOUT)
    assert r["rows"] == r["cols"] == str(n)
    rest = canvas_digest(frame, ROLLOUT)
    assert rest["drawn"] > 0
    cell = float(r["cell"])
    frame.locator(ROLLOUT).hover(position={"x": float(r["left"]) + 5.5 * cell, "y": float(r["top"]) + 0.5 * cell})
    wait_attr(frame, ROLLOUT, "data-hover", lambda v: v == "0")
    digest_changed(frame, ROLLOUT, rest, "hovering the first query")
    readout = frame.locator('[data-testid="rollout-readout"]').text_content()
    assert "R[0, 5] (“<s>” ← “t" in readout and "= 0 · Query 0 “<s>”: top input tokens <s> 1, " in readout, readout
    assert url_keys(pg).get("view") == "rollout"
    watch.check()
