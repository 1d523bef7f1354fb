"""Browser tests of long context (issue 12): headless chromium on the Attention tab of a real ``tensorboard``
serving a 16384-token record logged from q/k (format v3: pyramid, top-k, exact windows from q/k).

The record (written once per module, in a subprocess under an address-space cap): one causal layer, two query
heads reading one key head, with a planted attention sink on token 0, a planted long-range retrieval link
(query ``R`` reads key ``J`` ~9000 tokens back), a token ``NEEDLE`` at ``J`` and an HTML-injection token; step
1 moves the link to key ``J2`` (so B − A has a sign to show). A second, 8192-token record serves the head
view. Checked: the matrix view draws the sink column and the link where they were planted, a zoom shows
the exact values ``/window`` serves, find-a-token jumps to the needle, the head view at 8192 draws lines at
rest and its hovered row equals the exact row, B − A works in the matrix view, the neuron view lists the
link first; no page errors, nothing requested off localhost, the hostile token stays text.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from browser_util import canvas_digest, dataset, open_tab, wait_attr, wait_idle
from conftest import TensorBoardProcess

pytestmark = pytest.mark.browser

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
N, N8 = 16384, 8192
R, J, J2 = 12000, 3000, 5000  # the planted link: query R reads key J (step 0) / J2 (step 1)
R8, J8 = 6000, 1000  # the 8192-token record's link
HOSTILE = "<img src=x onerror=alert(1)>"
MATRIX = '[data-testid="matrix-view"]'
HEAD = '[data-testid="head-view"]'
SEL = {"run": "long", "tag": "ctx", "example": "0"}

WRITER = r"""
import resource, sys
import numpy as np
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # nothing n^2 may be allocated whole
from tensorboard_plugin_attention import AttentionWriter, log_attention

def qk(n, r, j, seed):
    rng = np.random.default_rng(seed)
    d = 32
    q = (rng.normal(size=(2, n, d)) * 0.3).astype(np.float32)
    k = (rng.normal(size=(1, n, d)) * 0.3).astype(np.float32)
    q[:, :, 0] = 1.0
    k[0, :, 0] = 0.0
    k[0, 0, 0] = 40.0  # the sink: every query reads token 0
    u = rng.normal(size=d - 1)
    u /= np.linalg.norm(u)
    q[:, r, 1:] += 12.0 * u  # the retrieval link: query r reads key j, far back
    k[0, j, 1:] += 12.0 * u
    return q.astype(np.float16), k.astype(np.float16)

out, n, n8, r, j, j2, r8, j8, hostile = sys.argv[1], *map(int, sys.argv[2:9]), sys.argv[9]
info = {"causal": True, "scaling": 32 ** -0.5}
toks = [f"t{i}" for i in range(n)]
toks[j] = "NEEDLE"
toks[5] = hostile
with AttentionWriter(out + "/long") as w:
    for step, key in ((0, j), (1, j2)):
        q, k = qk(n, r, key, 0)
        log_attention(w, "ctx", None, toks, step, queries=[q], keys=[k], kind="decoder", layer_info=info)
    q, k = qk(n8, r8, j8, 1)
    log_attention(w, "ctx", None, [f"u{i}" for i in range(n8)], 0, example="8k", queries=[q], keys=[k],
                  kind="decoder", layer_info=info)
"""


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def long_logdir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("browser_long16k")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", WRITER, str(root), *map(str, (N, N8, R, J, J2, R8, J8)), HOSTILE],
                   check=True, env=env, timeout=600)
    return str(root)


@pytest.fixture(scope="module")
def tb(long_logdir):
    t = TensorBoardProcess(long_logdir, "--load_fast=false").start(90)
    t.wait_for(lambda: any(e["example"] == "8k" for r in t.plugin("index").json()["runs"] for tg in r["tags"]
                           for e in tg["examples"]), timeout=90, what="the long records in /index")
    yield t
    t.stop()


@pytest.fixture(scope="module")
def lut(tb) -> np.ndarray:
    return np.asarray(tb.plugin("index").json()["codec"]["lut"], np.float32)


VIEWPORT = (1300, 1000)


def window(tb, lut, rows, cols, step=0, head=0, example="0") -> np.ndarray:
    """What /window serves (log8 codes, as the tab asks for them), decoded."""
    r = tb.plugin("window", run="long", tag="ctx", example=example, step=step, kind="decoder", layer=0, head=head,
                  rows=f"{rows[0]}:{rows[1]}", cols=f"{cols[0]}:{cols[1]}")
    assert r.status == 200, r.body[:200]
    return lut[np.frombuffer(r.body, np.uint8)].reshape(rows[1] - rows[0], cols[1] - cols[0])


def hover_cell(frame, i: int, j: int) -> dict:
    """Moves the pointer onto cell (query i, key j) of the matrix view; returns its dataset once it is exact."""
    d = dataset(frame, MATRIX)
    x0, x1, y0, y1 = (float(d[k]) for k in ("x0", "x1", "y0", "y1"))
    w, h = float(d["width"]), float(d["height"])
    px = float(d["left"]) + (j + 0.5 - x0) / (x1 - x0) * w
    py = float(d["top"]) + (i + 0.5 - y0) / (y1 - y0) * h
    frame.locator('[data-testid="matrix-canvas"]').hover(position={"x": px, "y": py})
    wait_attr(frame, MATRIX, "data-hover", lambda v: v == f"{i},{j}", what=f"hovering cell {i},{j}")
    wait_attr(frame, MATRIX, "data-hover-exact", lambda v: v == "1", what=f"the exact value of {i},{j}")
    return dataset(frame, MATRIX)


def plot_columns(frame) -> np.ndarray:
    """Mean brightness (0-255) of each pixel column of the matrix plot, over its lower half."""
    js = """(el) => { const d = el.dataset; const c = el.querySelector('canvas');
      const x = +d.left, y = +d.top + (+d.height) / 2, w = +d.width, h = (+d.height) / 2;
      const px = c.getContext('2d').getImageData(x, y, w, h).data; const out = new Array(w).fill(0);
      for (let r = 0; r < h; r++) for (let p = 0; p < w; p++) { const o = 4 * (r * w + p);
        out[p] += (px[o] + px[o + 1] + px[o + 2]) / 3 / h; }
      return out; }"""
    return np.asarray(frame.locator(MATRIX).evaluate(js))


def wait_exact(frame) -> dict:
    wait_attr(frame, MATRIX, "data-source", lambda v: v == "exact", what="exact tiles")
    wait_attr(frame, MATRIX, "data-pending", lambda v: v == "0", what="every tile loaded")
    return dataset(frame, MATRIX)


# -------------------------------------------------------------------------------------------- tests
def test_matrix_view_sink_link_and_exact_zoom(page, tb, lut):
    pg, watch = page
    frame = open_tab(pg, tb.url, {**SEL, "step": 0, "view": "matrix"}, timeout=120_000)
    d = dataset(frame, MATRIX)
    assert d["q"] == d["k"] == str(N) and d["source"] == "pyramid" and int(d["maskedPixels"]) > 0
    status = frame.locator('[data-testid="status"]').text_content()
    assert "pyramid level 0" in status and "16384 query" in status
    # the sink: over the lower half (queries N/2..N) key 0's column is the brightest of the unmasked left half
    cols = plot_columns(frame)[: int(d["width"]) // 2]
    assert cols[0] == cols.max() and cols[0] > np.median(cols[1:]) + 15, cols[:8]

    # wheel zoom at the link's cell until exact tiles draw it
    before = canvas_digest(frame, MATRIX)
    x0, x1 = float(d["x0"]), float(d["x1"])
    px = float(d["left"]) + (J + 0.5) / N * float(d["width"])
    py = float(d["top"]) + (R + 0.5) / N * float(d["height"])
    canvas = frame.locator('[data-testid="matrix-canvas"]')
    canvas.hover(position={"x": px, "y": py})
    for _ in range(40):
        pg.mouse.wheel(0, -400)  # wheel up: zoom in
        frame.wait_for_timeout(30)
        if dataset(frame, MATRIX)["source"] == "exact":
            break
    z = wait_exact(frame)
    assert float(z["x1"]) - float(z["x0"]) <= 1024 < x1 - x0
    assert float(z["x0"]) <= J <= float(z["x1"]) and float(z["y0"]) <= R <= float(z["y1"])
    assert canvas_digest(frame, MATRIX)["hash"] != before["hash"]
    assert "exact from q/k" in frame.locator('[data-testid="status"]').text_content()
    assert "p.attention.mz=" in pg.url  # the viewport is in the URL

    # a known block: every hovered cell shows the value /window serves for it
    frame = open_tab(pg, tb.url, {**SEL, "step": 0, "view": "matrix", "mz": f"{R - 8}:{R + 8},{J - 8}:{J + 8}"})
    wait_exact(frame)
    # the tab asks for 256-aligned tiles (log8 codes dither values under 1.3e-4 per request: same window)
    r0, c0 = R // 256 * 256, J // 256 * 256
    served = window(tb, lut, (r0, r0 + 256), (c0, c0 + 256))
    for i, j in ((R, J), (R, J + 3), (R - 5, J - 7), (R + 7, J + 7), (R - 1, J)):
        got = hover_cell(frame, i, j)
        assert np.float32(float(got["hoverValue"])) == served[i - r0, j - c0], (i, j, got["hoverValue"])
    # the planted link is where it was planted: the brightest cell of the block, and its row's strongest key
    block = served[R - 8 - r0:R + 8 - r0, J - 8 - c0:J + 8 - c0]
    assert block.argmax() == np.ravel_multi_index((8, 8), block.shape) and block[8, 8] > 0.5
    got = hover_cell(frame, R, J)
    wait_attr(frame, MATRIX, "data-row-top", lambda v: bool(v), what="the hovered row")
    assert dataset(frame, MATRIX)["rowTop"].split(",")[0].split(":")[0] == str(J)
    watch.check()


def test_find_a_token_and_hostile_token(page, tb):
    pg, watch = page
    frame = open_tab(pg, tb.url, {**SEL, "step": 0, "view": "matrix"}, timeout=120_000)
    box = frame.locator('[data-testid="find-input"]')
    box.fill("NEEDLE")
    box.press("Enter")
    wait_attr(frame, MATRIX, "data-found", lambda v: v == str(J), what="the needle found")
    d = dataset(frame, MATRIX)
    assert float(d["x0"]) <= J < float(d["x1"]) and float(d["y0"]) <= J < float(d["y1"])
    assert float(d["x1"]) - float(d["x0"]) <= 64
    assert frame.locator('[data-testid="find-match-0"]').text_content() == f"{J} NEEDLE"
    # a position works too
    box.fill(f"#{R}")
    box.press("Enter")
    wait_attr(frame, MATRIX, "data-found", lambda v: v == str(R), what="position R")
    # the hostile token: found and listed as text, never markup
    box.fill("<img")
    box.press("Enter")
    match = frame.locator('[data-testid="find-match-0"]')
    assert match.text_content() == f"5 {HOSTILE}"
    assert frame.locator("img[src=x]").count() == 0 and pg.locator("img[src=x]").count() == 0
    wait_idle(frame)
    watch.check()


def test_head_view_8192_lines_at_rest_and_exact_hover(page, tb, lut):
    pg, watch = page
    frame = open_tab(pg, tb.url, {**SEL, "example": "8k", "view": "head"}, timeout=120_000)
    d = dataset(frame, HEAD)
    assert d["rows"] == d["cols"] == str(N8) and d["long"] == "1" and d["opacity"] == "row:1"
    assert int(d["linesRest"]) > 0 and canvas_digest(frame, HEAD)["drawn"] > 0
    assert "top-8" in frame.locator('[data-testid="status"]').text_content()
    # hover the query of the planted link (scrolled on screen through find-a-token): exact lines arrive
    box = frame.locator('[data-testid="find-input"]')
    box.fill(f"#{R8}")
    box.press("Enter")
    wait_attr(frame, HEAD, "data-hover", lambda v: v == f"left:{R8}", what="the found query hovered")
    wait_attr(frame, HEAD, "data-hover-exact", lambda v: v == "1", what="the exact row")
    top = [(int(a), float(b)) for a, b in (x.split(":") for x in dataset(frame, HEAD)["hoverTop"].split(","))]
    row = window(tb, lut, (R8, R8 + 1), (0, N8), example="8k")[0]
    want = np.argsort(-row, kind="stable")[:5]
    assert [j for j, _ in top] == list(want) and top[0][0] == J8
    assert np.allclose([w for _, w in top], row[want], rtol=1e-3)
    watch.check()


def test_matrix_compare_b_minus_a_and_neuron_keys(page, tb):
    pg, watch = page
    sel = {**SEL, "step": 0, "view": "matrix", "crun": "long", "cstep": 1, "cmode": "diff"}
    frame = open_tab(pg, tb.url, {**sel, "mz": f"{R - 8}:{R + 8},{J - 8}:{J + 8}"}, timeout=120_000)
    d = dataset(frame, MATRIX)
    assert d["signed"] == "1" and frame.locator('[data-testid="matrix-view-b"]').count() == 0
    wait_exact(frame)
    # the link moved from J (step 0, A) to J2 (step 1, B): B − A is negative at J, positive at J2
    assert float(hover_cell(frame, R, J)["hoverValue"]) < -0.5
    frame = open_tab(pg, tb.url, {**sel, "mz": f"{R - 8}:{R + 8},{J2 - 8}:{J2 + 8}"})
    wait_attr(frame, MATRIX, "data-x0", lambda v: v == f"{J2 - 8}.00", what="the second block")
    wait_exact(frame)
    assert float(hover_cell(frame, R, J2)["hoverValue"]) > 0.5
    assert "B − A" in frame.locator('[data-testid="matrix-readout"]').text_content()

    # the neuron view of a long record: the pinned query's keys by weight, the link first
    frame.locator('[data-testid="compare-run"]').select_option("")
    wait_idle(frame)
    frame.locator('[data-testid="view-neuron"]').click()
    frame.locator('[data-testid="neuron-query"]').wait_for()
    q = frame.locator('[data-testid="neuron-query"]')
    q.fill(str(R))
    q.dispatch_event("change")
    wait_attr(frame, '[data-testid="neuron-view"]', "data-top-key", lambda v: v == str(J), what="the link first")
    assert frame.locator('[data-testid="neuron-key-0"]').get_attribute("data-key") == str(J)
    # a diffuse row (the query before): the sink first, its keys a page of 20 at a time
    q.fill(str(R - 1))
    q.dispatch_event("change")
    wait_attr(frame, '[data-testid="neuron-view"]', "data-top-key", lambda v: v == "0", what="the sink first")
    assert int(dataset(frame, '[data-testid="neuron-view"]')["keysListed"]) == 20
    frame.locator('[data-testid="neuron-page-next"]').click()
    frame.locator('[data-testid="neuron-key-20"]').wait_for()
    # jump: the matrix view opens on that cell
    frame.locator('[data-testid="neuron-jump-20"]').click()
    frame.locator(MATRIX).wait_for()
    wait_idle(frame)
    d = dataset(frame, MATRIX)
    assert float(d["y0"]) <= R - 1 < float(d["y1"])
    watch.check()


def test_matrix_small_multiples_share_one_viewport(page, tb):
    pg, watch = page
    multi = '[data-testid="matrix-multi"]'
    frame = open_tab(pg, tb.url, {**SEL, "step": 0, "view": "matrix", "mh": "all", "mz": f"{R - 32}:{R + 32},{J - 32}:{J + 32}"},
                     timeout=120_000)
    frame.locator(multi).wait_for()
    d = dataset(frame, multi)
    assert d["heads"] == "0,1" and float(d["x0"]) <= J < float(d["x1"]) and float(d["y0"]) <= R < float(d["y1"])
    assert "small multiples" in frame.locator('[data-testid="status"]').text_content()
    assert frame.locator('[data-testid="matrix-heads"]').input_value() == "all"
    # hover the link's cell in the second plot: both heads' values are given (each head's pyramid bin)
    side = float(d["side"])
    cells = [tuple(map(float, c.split(":"))) for c in d["cells"].split(",")]
    x0, x1, y0, y1 = (float(d[k]) for k in ("x0", "x1", "y0", "y1"))
    px = cells[1][0] + (J + 0.5 - x0) / (x1 - x0) * side
    py = cells[1][1] + (R + 0.5 - y0) / (y1 - y0) * side
    canvas = frame.locator('[data-testid="matrix-multi-canvas"]')
    canvas.hover(position={"x": px, "y": py})
    wait_attr(frame, multi, "data-hover", lambda v: v == f"{R},{J}", what="the hovered cell")
    values = dataset(frame, multi)["hoverValues"].split(";")
    assert len(values) == 2 and all(v and v not in ("masked", "padding") for v in values), values
    # a wheel on one plot zooms the one viewport all plots share; a crisp render follows the scaled frames
    pg.mouse.wheel(0, 400)
    wait_attr(frame, multi, "data-x0", lambda v: float(v) < x0, what="zoomed out")
    wait_attr(frame, multi, "data-frame", lambda v: v == "full", what="the crisp render at rest")
    # back to one head
    frame.locator('[data-testid="matrix-heads"]').select_option("")
    frame.locator(MATRIX).wait_for()
    watch.check()
