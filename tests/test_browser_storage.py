"""The Attention tab over an s3:// logdir (moto's S3 server on 127.0.0.1; headless Chromium): every checkpoint
is in the tab, a checkpoint logged to the bucket while the tab is open appears, and after a page reload."""

from __future__ import annotations

import numpy as np
import pytest

from browser_util import ROOT, PageWatch, chromium_path, dataset, launch, open_tab, wait_attr
from conftest import TensorBoardProcess, softmax_attention
from storage_util import s3  # noqa: F401 (session fixture)

pytestmark = pytest.mark.browser

HEAD = '[data-testid="head-view"]'
LABEL = '[data-testid="step-label"]'
TOKENS = ["[CLS]", "a", "b", "c", "d", "[SEP]"]


def _log(step: int) -> None:
    from tensorboard_plugin_attention.summary import AttentionWriter, log_attention

    rng = np.random.default_rng(step)
    with AttentionWriter("s3://bucket/browser/live") as w:
        log_attention(w, "probes", [softmax_attention(rng, 2, 6, 6) for _ in range(2)], TOKENS, step,
                      metric_scalars=False)


def test_tab_over_s3_shows_every_checkpoint_and_new_ones(s3):
    if chromium_path() is None:
        pytest.fail("chromium not found at /usr/bin/chromium (apt-get install -y chromium; or set $CHROMIUM)")
    from playwright.sync_api import sync_playwright

    for step in (0, 1, 2):
        _log(step)
    tb = TensorBoardProcess("s3://bucket/browser", "--load_fast=false", "--reload_interval=1", env=s3.env()).start(90)
    try:
        with sync_playwright() as p:
            browser = launch(p)
            context = browser.new_context(viewport={"width": 1400, "height": 900}, service_workers="block")
            watch = PageWatch()
            page = watch.attach(context.new_page())
            page.set_default_timeout(60_000)
            context.add_init_script("localStorage.setItem('_tb_global_settings', JSON.stringify("
                                    "{autoReload: true, autoReloadPeriodInMs: 2000}));")
            frame = open_tab(page, tb.url, {"run": "live"})
            frame.locator(LABEL).filter(has_text="2 (3/3)").wait_for(timeout=40_000)  # every checkpoint
            assert dataset(frame, HEAD)["linesRest"]  # the head view drew from the bucket
            _log(3)  # a new checkpoint in the bucket reaches the open tab (it follows auto-reload)
            frame.locator(LABEL).filter(has_text="3 (4/4)").wait_for(timeout=40_000)
            frame = open_tab(page, tb.url, {"run": "live"})  # the page loaded again
            frame.locator(LABEL).filter(has_text="3 (4/4)").wait_for(timeout=40_000)
            wait_attr(frame, HEAD, "data-lines-rest", lambda v: bool(v), what="(step 3 drawn)")
            assert frame.get_attribute(ROOT, "data-state") == "ready"
            browser.close()
            watch.check()
    finally:
        tb.stop()
