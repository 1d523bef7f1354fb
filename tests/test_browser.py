"""Browser tests: headless chromium (Python playwright) on the Attention tab of a real ``tensorboard`` process.

Data: the demo's MiniLM run in miniature (``conftest.write_minilm_training_run``: the real all-MiniLM-L6-v2
fine-tuned on the demo's task, its 5 probes incl. 4 sentence pairs, attention + q/k at 5 steps; ``demo
--quick`` itself took 67 s idle and 211 s on this shared 2-core machine, so the logs are written directly), a
run whose token and example name are an HTML injection attempt, and a 2048-token synthetic run
(``bench/synthetic.py``). Every test also checks that the page logged no console
error, raised nothing, opened no dialog and requested nothing outside localhost.

What the views drew is read from the canvases' pixels (``canvas_digest``: drawn pixels and a hash) and from
the drawn-data counters the frontend publishes (``frontend/README.md``, "Hooks for browser tests"): every
interaction must change them, not merely not fail.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest

from browser_util import (ROOT, canvas_digest, dataset, hover_token, open_tab, plugin_frame, wait_attr, wait_idle,
                          wait_ready)
from conftest import TensorBoardProcess

pytestmark = pytest.mark.browser

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
HOSTILE = "<img src=x onerror=alert(1)>"
HEAD = '[data-testid="head-view"]'
HEAD_B = '[data-testid="head-view-b"]'
MODEL = '[data-testid="model-view"]'
NEURON = '[data-testid="neuron-view"]'
DEMO = {"run": "minilm", "tag": "probes"}
STEPS = 5  # write_minilm_training_run logs steps 0..4


def step_label(i: int) -> str:
    return f"{i} ({i + 1}/{STEPS})"


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def logdir(minilm_training_logs, tmp_path_factory) -> str:
    """The MiniLM run ``minilm``, plus ``xss``: one small example whose name and a token are HTML."""
    from tensorboard_plugin_attention.summary import AttentionWriter, log_attention

    root = tmp_path_factory.mktemp("browser_logs")
    shutil.copytree(os.path.join(minilm_training_logs, "minilm"), root / "minilm")
    rng = np.random.default_rng(7)
    tokens = ["[CLS]", "hello", HOSTILE, "world", "[SEP]"]
    att = [rng.dirichlet(np.ones(len(tokens)), size=(2, len(tokens))).astype(np.float32) for _ in range(2)]
    with AttentionWriter(str(root / "xss")) as w:
        log_attention(w, "probes", att, tokens, 0, example=HOSTILE, model_name=HOSTILE, metric_scalars=False)
    return str(root)


@pytest.fixture(scope="module")
def long_logdir(tmp_path_factory) -> str:
    """2 layers x 12 heads x 2048 tokens of structured synthetic attention (``bench/synthetic.py``)."""
    sys.path.insert(0, os.path.join(REPO, "bench"))
    from synthetic import structured_attention

    from tensorboard_plugin_attention.summary import AttentionWriter, log_attention

    root = tmp_path_factory.mktemp("browser_long")
    n = 2048
    tokens = ["[CLS]"] + [f"w{i}" for i in range(1, n - 1)] + ["[SEP]"]
    with AttentionWriter(str(root / "long")) as w:
        log_attention(w, "long", list(structured_attention(2, 12, n)), tokens, 0, example="2048",
                      model_name="synthetic", metrics=False)
    return str(root)


@pytest.fixture(scope="module")
def servers(logdir):
    """``servers(load_fast)``: one TensorBoard per loader on ``logdir``, started on first use."""
    started: dict = {}

    def get(load_fast: str = "false", path: str = logdir) -> TensorBoardProcess:
        key = (load_fast, path)
        if key not in started:
            tb = started[key] = TensorBoardProcess(path, f"--load_fast={load_fast}").start(90)
            # TensorBoard answers before it has read the logdir; the tab would first show "no data yet"
            runs = sorted(os.listdir(path))
            tb.wait_for(lambda: [r["run"] for r in tb.plugin("index").json()["runs"]] == runs, timeout=90,
                        what=f"/index to list {runs}")
        return started[key]

    yield get
    for tb in started.values():
        tb.stop()


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


# -------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("load_fast", ["false", "true"], ids=["python-loader", "rust-loader"])
def test_tab_appears_and_head_view_draws(page, servers, load_fast):
    pg, watch = page
    tb = servers(load_fast)
    pg.goto(tb.url + "/#attention")
    # TensorBoard's header lists the plugin's tab (tab_name "Attention"), and #attention selected it
    tab = pg.get_by_role("tab", name="Attention")
    tab.wait_for()
    assert tab.get_attribute("aria-selected") == "true"
    frame = wait_ready(pg)
    assert frame.get_attribute(ROOT, "data-view") == "head"
    d = dataset(frame, HEAD)
    assert int(d["rows"]) == int(d["cols"]) > 5  # MiniLM word pieces of the first probe, [CLS] ... [SEP]
    assert int(d["linesRest"]) > 100 and d["linesDrawn"] == d["linesRest"]
    assert d["activeHeads"] == ",".join(map(str, range(12)))
    digest = canvas_digest(frame, HEAD)
    shown = [c for c in digest["canvases"] if not c["hidden"]]  # (the minimap shows only beside virtual columns)
    assert len(shown) == 3 and all(c["drawn"] > 0 for c in shown[1:]), digest  # hover layer, lines, text
    # lines and text are shown as bitmaps ('bitmaprenderer': no 2D context), which the compositor takes once
    # instead of copying them at every hover's frame; the hover layer is a 2D canvas
    kinds = frame.locator(f'{HEAD} [data-testid="head-canvas"]').evaluate(
        "(s) => [...s.querySelectorAll('canvas')].map((c) => (c.getContext('2d') ? '2d' : 'bitmap'))")
    assert kinds == ["2d", "bitmap", "bitmap"], kinds
    status = frame.locator('[data-testid="status"]').text_content()
    assert "all-MiniLM-L6-v2" in status and "6 layers × 12 heads" in status
    assert pg.url.split("#", 1)[1].startswith("attention&") and "p.attention.run=minilm" in pg.url
    assert any("/data/plugin/attention/attention?" in u for u in watch.requests)  # the watch sees requests
    watch.check()


def test_head_view_click_hover_step_and_compare_change_the_drawing(page, servers):
    pg, watch = page
    frame = open_tab(pg, servers().url, {**DEMO, "example": "swap"})
    rest = canvas_digest(frame, HEAD)
    d0 = dataset(frame, HEAD)
    assert rest["drawn"] > 0

    # clicking a head swatch turns that head off: fewer lines, other pixels
    frame.locator('[data-testid="head-swatch-0"]').click()
    wait_attr(frame, HEAD, "data-active-heads", lambda v: v == ",".join(map(str, range(1, 12))))
    one_off = digest_changed(frame, HEAD, rest, "clicking head 0")
    d1 = dataset(frame, HEAD)
    assert int(d1["linesRest"]) < int(d0["linesRest"])
    frame.locator('[data-testid="head-swatch-0"]').click()  # back on: the same drawing as before
    wait_attr(frame, HEAD, "data-active-heads", lambda v: v == d0["activeHeads"])
    assert canvas_digest(frame, HEAD)["hash"] == rest["hash"]
    assert one_off["hash"] != rest["hash"]

    # hovering a query token: only its lines (and bars on the keys); hovering a key: the transposed view
    hover_token(frame, HEAD, 2, "left")
    wait_attr(frame, HEAD, "data-hover", lambda v: v == "left:2")
    hovered = digest_changed(frame, HEAD, rest, "hovering query token 2")
    drawn = int(dataset(frame, HEAD)["linesDrawn"])
    assert 0 < drawn < int(d0["linesRest"])
    hover_token(frame, HEAD, 5, "right")
    wait_attr(frame, HEAD, "data-hover", lambda v: v == "right:5")
    digest_changed(frame, HEAD, hovered, "hovering key token 5")
    pg.mouse.move(1, 1)  # leave: back to rest
    wait_attr(frame, HEAD, "data-hover", lambda v: v == "")
    assert canvas_digest(frame, HEAD)["hash"] == rest["hash"]

    # the step slider: step 0 (before fine-tuning) draws other lines than the latest step
    frame.locator('[data-testid="step-slider"]').fill("0")
    frame.locator('[data-testid="step-label"]').filter(has_text=step_label(0)).wait_for()
    wait_idle(frame)
    step0 = digest_changed(frame, HEAD, rest, "moving the step slider to step 0")
    assert "p.attention.step=0" in pg.url

    # compare with the latest step of the same run: side by side, then the difference B - A
    frame.locator('[data-testid="compare-run"]').select_option("minilm")
    frame.locator(HEAD_B).wait_for()
    wait_idle(frame)
    side_a, side_b = canvas_digest(frame, HEAD), canvas_digest(frame, HEAD_B)
    assert side_a["hash"] == step0["hash"] and side_b["hash"] == rest["hash"]  # A: step 0, B: the latest
    frame.locator('[data-testid="compare-mode"]').select_option("diff")
    frame.locator(HEAD_B).wait_for(state="detached")
    wait_idle(frame)
    diff = digest_changed(frame, HEAD, side_a, "switching compare mode to B − A")
    assert diff["hash"] not in (rest["hash"], step0["hash"]) and diff["drawn"] > 0
    assert int(dataset(frame, HEAD)["linesRest"]) > 0
    assert "B − A" in frame.locator(f"{HEAD} .legend").text_content()
    assert "p.attention.cmode=diff" in pg.url
    frame.locator('[data-testid="compare-mode"]').select_option("side")
    frame.locator(HEAD_B).wait_for()
    wait_idle(frame)
    assert canvas_digest(frame, HEAD)["hash"] == side_a["hash"]
    watch.check()


def test_model_and_neuron_views_draw_and_answer(page, servers):
    pg, watch = page
    frame = open_tab(pg, servers().url, {**DEMO, "example": "passive"})

    frame.locator('[data-testid="view-model"]').click()
    frame.locator(MODEL).wait_for()
    wait_idle(frame)
    d = dataset(frame, MODEL)
    assert d["cells"] == str(6 * 12) and int(d["linesDrawn"]) > 0
    grid = canvas_digest(frame, '[data-testid="model-grid"]')
    assert grid["drawn"] > 0
    # click thumbnail (layer 2, head 3): its head detail opens beside the grid
    tw, th, gap = int(d["thumbWidth"]), int(d["thumbHeight"]), int(d["gap"])
    x = int(d["gridLeft"]) + 3 * (tw + gap) + tw // 2
    y = int(d["gridTop"]) + 2 * (th + gap) + th // 2
    frame.locator('[data-testid="model-grid"] .canvas-stack').click(position={"x": x, "y": y})
    wait_attr(frame, MODEL, "data-detail", lambda v: v == "2.3")
    detail = '[data-testid="model-detail-head-0"]'
    frame.locator(detail).wait_for()
    assert int(dataset(frame, detail)["linesRest"]) > 0 and canvas_digest(frame, detail)["drawn"] > 0
    assert "p.attention.detail=2.3" in pg.url
    # the thumbnail style: heatmaps instead of lines
    grid_lines = canvas_digest(frame, '[data-testid="model-grid"]')
    frame.locator('[data-testid="thumb-style"]').select_option("heat")
    wait_attr(frame, MODEL, "data-style", lambda v: v == "heat")
    digest_changed(frame, '[data-testid="model-grid"]', grid_lines, "heatmap thumbnails")

    frame.locator('[data-testid="view-neuron"]').click()
    frame.locator(NEURON).wait_for()
    wait_idle(frame)
    n = dataset(frame, NEURON)
    assert int(n["rows"]) > 5 and n["selected"] == ""
    before = canvas_digest(frame, NEURON)
    assert before["drawn"] > 0
    assert frame.locator('[data-testid="qk-missing"]').count() == 0  # q/k logged at every step
    # hover query token 3: its q·k products and the recomputed softmax next to the stored attention
    stack = frame.locator(f"{NEURON} .canvas-stack").first
    stack.hover(position={"x": float(n["leftX"]), "y": float(n["top"]) + 3.5 * float(n["rowHeight"])})
    wait_attr(frame, NEURON, "data-selected", lambda v: v == "3")
    digest_changed(frame, NEURON, before, "hovering query token 3 in the neuron view")
    assert int(dataset(frame, NEURON)["linesDrawn"]) > 0
    # softmax(q·k × scaling) from the logged float16 q/k equals the stored attention (8-bit codec, fp16)
    assert float(dataset(frame, NEURON)["recomputedMaxDiff"]) < 0.05
    # another head redraws
    hovered = canvas_digest(frame, NEURON)
    frame.locator('[data-testid="neuron-head-select"]').select_option("7")
    wait_idle(frame)
    digest_changed(frame, NEURON, hovered, "choosing neuron head 7")
    watch.check()


def test_reload_restores_the_selection(page, servers):
    pg, watch = page
    frame = open_tab(pg, servers().url)
    frame.locator('[data-testid="example-select"]').select_option("synonym")
    wait_idle(frame)
    frame.locator('[data-testid="layer-select"]').select_option("3")
    wait_idle(frame)
    frame.locator('[data-testid="head-swatch-5"]').dblclick()  # solo head 5
    wait_attr(frame, HEAD, "data-active-heads", lambda v: v == "5")
    frame.locator('[data-testid="step-slider"]').fill("2")
    frame.locator('[data-testid="step-label"]').filter(has_text=step_label(2)).wait_for()
    wait_idle(frame)
    head_before = canvas_digest(frame, HEAD)
    frame.locator('[data-testid="view-neuron"]').click()
    frame.locator(NEURON).wait_for()
    wait_idle(frame)
    frame.locator('[data-testid="neuron-head-select"]').select_option("7")
    wait_idle(frame)
    neuron_before = canvas_digest(frame, NEURON)
    url = pg.url
    for key in ("example=synonym", "layer=3", "heads=5", "step=2", "view=neuron", "nhead=7"):
        assert f"p.attention.{key}" in url, (key, url)

    pg.reload()
    frame = wait_ready(pg)
    assert pg.url == url
    assert frame.get_attribute(ROOT, "data-view") == "neuron"
    assert frame.locator('[data-testid="example-select"]').input_value() == "synonym"
    assert frame.locator('[data-testid="layer-select"]').input_value() == "3"
    assert frame.locator('[data-testid="neuron-head-select"]').input_value() == "7"
    assert frame.locator('[data-testid="step-label"]').text_content() == step_label(2)
    assert canvas_digest(frame, NEURON)["hash"] == neuron_before["hash"]
    frame.locator('[data-testid="view-head"]').click()
    frame.locator(HEAD).wait_for()
    wait_idle(frame)
    assert dataset(frame, HEAD)["activeHeads"] == "5"
    assert canvas_digest(frame, HEAD)["hash"] == head_before["hash"]

    # a shared link (a new page opening the URL) reopens the same view too
    pg.goto("about:blank")
    pg.goto(url)
    frame = wait_ready(pg)
    assert frame.get_attribute(ROOT, "data-view") == "neuron"
    assert canvas_digest(frame, NEURON)["hash"] == neuron_before["hash"]
    watch.check()


def test_html_in_tokens_and_names_is_shown_as_text(page, servers):
    pg, watch = page
    frame = open_tab(pg, servers().url, {"run": "xss", "tag": "probes", "example": HOSTILE})
    # the example name is an <option>'s text, the model name part of the status line: text, not markup
    options = frame.locator('[data-testid="example-select"] option').all_text_contents()
    assert options == [HOSTILE]
    assert frame.locator('[data-testid="example-select"]').input_value() == HOSTILE
    status = frame.locator('[data-testid="status"]').text_content()
    assert f"example {HOSTILE}" in status and status.count(HOSTILE) == 2  # example, model name
    assert frame.get_by_text(HOSTILE, exact=False).count() >= 1
    d = dataset(frame, HEAD)
    assert d["rows"] == "5" and int(d["linesRest"]) > 0
    # hovering the token shows it, literally, as the canvas's tooltip
    hover_token(frame, HEAD, 2, "left")
    wait_attr(frame, HEAD, "data-hover", lambda v: v == "left:2")
    title = frame.locator(f'{HEAD} [data-testid="head-canvas"] canvas').last.get_attribute("title")
    assert title == HOSTILE
    for view in ("neuron", "model"):
        frame.locator(f'[data-testid="view-{view}"]').click()
        frame.locator(f'[data-testid="{view}-view"]').wait_for()
        wait_idle(frame)
    # nothing was parsed as HTML: no <img> anywhere (ours or TensorBoard's page), no alert
    pg.wait_for_timeout(300)  # an onerror handler would have fired by now (src=x fails at once)
    assert frame.locator("img").count() == 0
    assert pg.locator("img[src=x]").count() == 0
    assert watch.dialogs == []
    watch.check()


def test_2048_tokens_head_view_renders_and_answers_hover(page, servers, long_logdir):
    pg, watch = page
    tb = servers("true", long_logdir)
    frame = open_tab(pg, tb.url, {"run": "long", "tag": "long", "example": "2048"}, timeout=150_000)
    d = dataset(frame, HEAD)
    assert d["rows"] == d["cols"] == "2048" and d["rowHeight"] == "12"
    assert int(d["linesRest"]) > 0
    rest = canvas_digest(frame, HEAD)
    assert rest["drawn"] > 0
    # virtualised: the canvases cover a band of the 24 k px tall view, not all of it
    assert all(c["height"] < 2048 * 12 for c in rest["canvases"])
    hover_token(frame, HEAD, 10, "left")
    wait_attr(frame, HEAD, "data-hover", lambda v: v == "left:10")
    digest_changed(frame, HEAD, rest, "hovering token 10 of 2048")
    drawn = int(dataset(frame, HEAD)["linesDrawn"])
    assert 0 < drawn != int(d["linesRest"])
    hover_token(frame, HEAD, 20, "right")
    wait_attr(frame, HEAD, "data-hover", lambda v: v == "right:20")
    watch.check()


# ------------------------------------------------------------------ live logdirs: reloads, re-logged steps
def _settings_script(period_ms: int = 5000) -> str:
    """TensorBoard's stored settings (auto-reload on, a short period), set before its page loads."""
    return ("localStorage.setItem('_tb_global_settings', JSON.stringify("
            f"{{autoReload: true, autoReloadPeriodInMs: {period_ms}}}));")


def _listed(tb: TensorBoardProcess, run: str) -> dict:
    """The index entry of ``run``'s only example (``{}`` while not listed)."""
    for r in tb.plugin("index").json()["runs"]:
        if r["run"] == run:
            return r["tags"][0]["examples"][0]
    return {}


def test_open_tab_follows_auto_reload_and_shows_a_relogged_step(page, tmp_path):
    """Issue 10, defects 8 and 9: without any click or page reload, the open tab picks up (a) step 0 logged
    again with other attention (the arrays are cached per /index revision: before, the tab kept drawing the
    first write's lines) and (b) a new checkpoint (the tab polls /index at TensorBoard's auto-reload period:
    before, only TensorBoard's reload button reached it)."""
    from tensorboard_plugin_attention.summary import AttentionWriter, log_attention

    pg, watch = page
    tokens = ["[CLS]", "a", "b", "c", "d", "[SEP]"]
    n = len(tokens)
    sharp = [np.tile(np.eye(n, dtype=np.float32), (2, 1, 1)) for _ in range(2)]  # 2 layers x (2 heads, n, n)
    flat = [np.full((2, n, n), 1.0 / n, dtype=np.float32) for _ in range(2)]
    run = tmp_path / "live"
    with AttentionWriter(str(run)) as w:
        log_attention(w, "probes", sharp, tokens, 0, metric_scalars=False)
    tb = TensorBoardProcess(str(tmp_path), "--load_fast=false", "--reload_interval=1").start(90)
    try:
        tb.wait_for(lambda: _listed(tb, "live").get("steps") == [0], timeout=90, what="step 0 listed")
        first_rev = _listed(tb, "live")["revisions"]
        pg.context.add_init_script(_settings_script())
        frame = open_tab(pg, tb.url, {"run": "live"})
        assert dataset(frame, HEAD)["linesRest"] == str(2 * n)  # one line per token and head
        before = canvas_digest(frame, HEAD)

        with AttentionWriter(str(run)) as w:  # the same step again: the latest write wins
            log_attention(w, "probes", flat, tokens, 0, metric_scalars=False)
        tb.wait_for(lambda: _listed(tb, "live").get("revisions") not in (None, first_rev), timeout=60,
                    what="a new revision of step 0")
        wait_attr(frame, HEAD, "data-lines-rest", lambda v: v == str(2 * n * n), timeout=40_000,
                  what="(the re-logged uniform attention drawn)")
        assert canvas_digest(frame, HEAD)["hash"] != before["hash"]
        assert int(frame.get_attribute(ROOT, "data-polls") or 0) >= 1

        with AttentionWriter(str(run)) as w:  # a new checkpoint: the tab (showing "latest") moves to it
            log_attention(w, "probes", sharp, tokens, 1, metric_scalars=False)
        frame.locator('[data-testid="step-label"]').filter(has_text="1 (2/2)").wait_for(timeout=40_000)
        wait_attr(frame, HEAD, "data-lines-rest", lambda v: v == str(2 * n), what="(step 1 drawn)")
        assert "p.attention.step" not in pg.url

        # another run appearing reaches the run selector without redrawing the shown view (a hover stays)
        hover_token(frame, HEAD, 2)
        wait_attr(frame, HEAD, "data-hover", lambda v: v == "left:2")
        with AttentionWriter(str(tmp_path / "other")) as w:
            log_attention(w, "probes", sharp, tokens, 0, metric_scalars=False)
        frame.locator('[data-testid="run-select"] option[value="other"]').wait_for(state="attached", timeout=40_000)
        assert dataset(frame, HEAD)["hover"] == "left:2"
        assert frame.get_attribute(ROOT, "data-state") == "ready"
    finally:
        tb.stop()
    watch.check()


def test_newer_version_records_say_upgrade_the_plugin(page, tmp_path):
    """Issue 10, defect 6: a logdir whose only records are of a newer format says "upgrade the plugin" (it
    said "No attention data in this logdir yet"); once readable records appear beside them, the tab draws
    those and keeps a small note about the others."""
    from conftest import write_attention_run, write_index_record
    from tensorboard_plugin_attention import format as fmt

    pg, watch = page
    payload = fmt.encode_index({"version": 99, "tag": "probes", "example": "v99", "step": 0,
                                "asset": {"file": "future.attn", "offset": 0, "length": 1}})
    write_index_record(tmp_path / "future", "probes", "v99", 0, payload,
                       json.dumps({"version": 99, "tag": "probes", "example": "v99"}).encode())
    tb = TensorBoardProcess(str(tmp_path), "--load_fast=false", "--reload_interval=1").start(90)
    try:
        tb.wait_for(lambda: any(u["newer_version"] for u in tb.plugin("index").json().get("unreadable", [])),
                    timeout=90, what="/index to report the newer record")
        pg.context.add_init_script(_settings_script())
        pg.goto(tb.url + "/#attention")
        frame = plugin_frame(pg)
        frame.wait_for_selector(f'{ROOT}[data-state="empty"]', timeout=90_000)
        empty = frame.locator('[data-testid="empty"]')
        assert empty.get_attribute("data-reason") == "upgrade"
        text = empty.text_content()
        assert "newer version of tensorboard-plugin-attention" in text, text
        assert "pip install -U tensorboard-plugin-attention" in text, text
        assert "No attention data" not in text

        write_attention_run(str(tmp_path / "now"), steps=(0,), layers=1, heads=2, tokens=5)
        frame.wait_for_selector(f'{ROOT}[data-state="ready"]', timeout=60_000)  # the next poll finds it
        notice = frame.locator('[data-testid="unreadable-notice"]')
        assert notice.is_visible()
        assert "upgrade the plugin" in notice.text_content()
        assert "future / probes/v99" in notice.text_content()
        assert int(dataset(frame, HEAD)["linesRest"]) > 0
    finally:
        tb.stop()
    watch.check()


def test_rollout_error_leaves_no_previous_drawing(page, tmp_path):
    """Issue 10, defect 9: switching the rollout view to a kind it cannot show (cross-attention) shows the
    error alone (the previous rollout stayed drawn under the banner)."""
    from tensorboard_plugin_attention.summary import AttentionWriter, log_attention

    pg, watch = page
    enc = ["▁a", "▁b", "▁c", "</s>"]
    dec = ["<pad>", "▁x", "▁y"]
    rng = np.random.default_rng(3)
    att = {"encoder": [rng.dirichlet(np.ones(4), size=(2, 4)).astype(np.float32)],
           "decoder": [rng.dirichlet(np.ones(3), size=(2, 3)).astype(np.float32)],
           "cross": [rng.dirichlet(np.ones(4), size=(2, 3)).astype(np.float32)]}
    with AttentionWriter(str(tmp_path / "t5")) as w:
        log_attention(w, "probes", att, enc, 0, decoder_tokens=dec, metric_scalars=False)
    tb = TensorBoardProcess(str(tmp_path), "--load_fast=false").start(90)
    try:
        tb.wait_for(lambda: _listed(tb, "t5").get("steps") == [0], timeout=90, what="t5 listed")
        frame = open_tab(pg, tb.url, {"view": "rollout", "kind": "encoder"})
        wait_attr(frame, '[data-testid="rollout-canvas"]', "data-cells", lambda v: v == "16", what="(rollout drawn)")
        frame.locator('[data-testid="kind-select"]').select_option("cross")
        frame.wait_for_selector(f'{ROOT}[data-state="error"]')
        assert "self-attention" in frame.locator('[data-testid="error"]').text_content()
        assert frame.locator('[data-testid="rollout-view"]').count() == 0
        assert frame.locator('[data-testid="main"] canvas').count() == 0
        frame.locator('[data-testid="kind-select"]').select_option("decoder")  # and back to a drawing
        wait_idle(frame)
        wait_attr(frame, '[data-testid="rollout-canvas"]', "data-cells", lambda v: v == "9", what="(decoder rollout)")
        assert frame.locator('[data-testid="error"]').is_hidden()
    finally:
        tb.stop()
    watch.check()
