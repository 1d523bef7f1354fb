"""Browser test of sparse peaks in the overview (issue 21, item 5): headless chromium on the Attention tab of a
real ``tensorboard`` serving a 32768-token layer logged from q/k (written in a subprocess under an address-space
cap). One query of one head reads one key ~20,000 tokens back almost exclusively (a retrieval head's needle:
1 cell of a 64 x 64 block of a pyramid pixel). In the whole-head overview with the max pyramid
(``magg=max``) that pixel is the brightest of its neighbourhood by a wide margin, and brighter than in the mean
overview, read back from the canvas.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from browser_util import dataset, open_tab, wait_attr, wait_idle
from conftest import TensorBoardProcess

pytestmark = pytest.mark.browser

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
N, R, J = 32768, 30000, 9000  # query R reads key J
MATRIX = '[data-testid="matrix-view"]'
SEL = {"run": "peaks", "tag": "ctx", "example": "0", "step": 0, "view": "matrix"}

WRITER = r"""
import resource, sys
import numpy as np
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # nothing n^2 may be allocated whole
from tensorboard_plugin_attention import AttentionWriter, log_attention

out, n, r, j = sys.argv[1], *map(int, sys.argv[2:5])
rng = np.random.default_rng(0)
d = 32
q = (rng.normal(size=(1, n, d)) * 0.3).astype(np.float32)
k = (rng.normal(size=(1, n, d)) * 0.3).astype(np.float32)
u = rng.normal(size=d)
u /= np.linalg.norm(u)
q[0, r] += 12.0 * u
k[0, j] += 12.0 * u
with AttentionWriter(out + "/peaks") as w:
    log_attention(w, "ctx", None, [f"t{i}" for i in range(n)], 0, queries=[q.astype(np.float16)],
                  keys=[k.astype(np.float16)], kind="decoder", layer_info={"causal": True, "scaling": d ** -0.5})
"""

# brightness (0-255, mean of R, G, B) of the plot's pixels in a (2s+1)^2 square around (x, y)
_PATCH_JS = """(el, [x, y, s]) => { const c = el.querySelector('canvas');
  const px = c.getContext('2d').getImageData(x - s, y - s, 2 * s + 1, 2 * s + 1).data; const out = [];
  for (let o = 0; o < px.length; o += 4) out.push((px[o] + px[o + 1] + px[o + 2]) / 3);
  return out; }"""


@pytest.fixture(scope="module")
def tb(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser_peaks")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", WRITER, str(root), str(N), str(R), str(J)], check=True, env=env,
                   timeout=900)
    t = TensorBoardProcess(str(root), "--load_fast=false").start(90)
    t.wait_for(lambda: len(t.plugin("index").json()["runs"]) == 1, timeout=90, what="the record in /index")
    yield t
    t.stop()


def link_patch(frame, s: int = 7) -> np.ndarray:
    """The plot's brightness around the planted link's pixel, ``(2s+1, 2s+1)``, the link at the centre."""
    d = dataset(frame, MATRIX)
    assert float(d["x0"]) == 0 and float(d["x1"]) == N  # the whole head is in view
    x = int(float(d["left"]) + (J + 0.5) / N * float(d["width"]))
    y = int(float(d["top"]) + (R + 0.5) / N * float(d["height"]))
    values = frame.locator(MATRIX).evaluate(_PATCH_JS, [x, y, s])
    return np.asarray(values).reshape(2 * s + 1, 2 * s + 1)


def test_a_planted_link_is_visible_in_the_max_overview(page, tb):
    pg, watch = page
    frame = open_tab(pg, tb.url, {**SEL, "magg": "max"})
    wait_idle(frame)
    wait_attr(frame, MATRIX, "data-agg", lambda v: v == "max", what="the max overview")
    assert not frame.locator('[data-testid="matrix-agg"]').is_disabled()
    assert "largest weight per block" in frame.locator(MATRIX).text_content()
    peak = link_patch(frame)
    centre = peak[7, 7]
    ring = np.delete(peak.ravel(), 7 * 15 + 7)
    assert centre >= ring.max() and centre > np.median(ring) + 60, peak  # one pixel stands out

    frame = open_tab(pg, tb.url, SEL)  # the mean overview: the same pixel holds the block's mass
    wait_idle(frame)
    wait_attr(frame, MATRIX, "data-agg", lambda v: v == "mean", what="the mean overview")
    mean = link_patch(frame)
    assert mean[7, 7] < centre - 30, (mean[7, 7], centre)
    watch.check()
