"""Head view benchmark in headless chromium: `npm run dev && ../.venv/bin/python dev/bench.py` (from frontend/).

Prints, per input length and top-k, the time to draw the head view at rest and to hover a token, on dense
synthetic attention (12 heads). Needs playwright (the project's test extra) and /usr/bin/chromium.
"""
import json
import pathlib
import sys

from playwright.sync_api import sync_playwright

page = pathlib.Path(__file__).resolve().parent / "bench.html"
query = sys.argv[1] if len(sys.argv) > 1 else ""
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
    pg = browser.new_page(viewport={"width": 1300, "height": 900})
    pg.goto(page.as_uri() + query)
    pg.wait_for_function("document.body.dataset.bench", timeout=300_000)
    for row in json.loads(pg.evaluate("document.body.dataset.bench")):
        print(json.dumps(row))
    browser.close()
