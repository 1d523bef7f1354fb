"""Driving the Attention tab in headless chromium (Python playwright) against a real TensorBoard.

Shared by ``tests/test_browser.py`` and ``bench/screenshots.py``. Chromium is Debian's (``/usr/bin/chromium``,
installed by ``make test``): ``playwright install`` cannot download browsers here, so we launch it by path.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PLUGIN_IFRAME = 'iframe[src*="plugin_entry.html"]'
ROOT = '[data-testid="attention-root"]'


def chromium_path() -> Optional[str]:
    """``$CHROMIUM`` or Debian's chromium; None if neither exists."""
    for c in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser")):
        if c and os.path.exists(c):
            return c
    return None


def launch(playwright: Any, **kwargs: Any) -> Any:
    path = chromium_path()
    if path is None:
        raise RuntimeError("chromium not found: `make test` installs it (apt-get install -y chromium), "
                           "or set $CHROMIUM to a chromium binary")
    return playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS, **kwargs)


def hash_for(selection: dict) -> str:
    """TensorBoard URL hash for the Attention tab with a selection (``p.attention.<key>`` keys)."""
    parts = ["attention"] + [f"p.attention.{k}={urllib.parse.quote(str(v), safe='')}" for k, v in selection.items()]
    return "#" + "&".join(parts)


@dataclass
class PageWatch:
    """Everything a test must not see: console errors, uncaught exceptions, requests leaving the machine,
    dialogs (``alert`` & co., which are dismissed so the page does not hang).

    TensorBoard's Content-Security-Policy (``connect-src 'self'`` …) blocks most outside requests before
    they are sent (no ``request`` event), but chromium then logs a console error, which fails the test too.
    """

    errors: list = field(default_factory=list)
    remote_requests: list = field(default_factory=list)
    dialogs: list = field(default_factory=list)
    requests: list = field(default_factory=list)

    def attach(self, page: Any) -> "PageWatch":
        page.on("console", self._on_console)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("request", self._on_request)
        page.on("dialog", self._on_dialog)
        return page

    def _on_console(self, msg: Any) -> None:
        loc = msg.location or {}
        url = loc.get("url", "") if isinstance(loc, dict) else ""
        if msg.type == "error":
            self.errors.append(f"console.error: {msg.text} ({url})")
        elif msg.type == "warning" and "/data/plugin/attention/" in url:
            # TensorBoard's own bundle warns on every load ("Multiple instances of Three.js being imported":
            # its projector and mesh plugins each bundle three.js); warnings from our module are failures.
            self.errors.append(f"console.warning from the plugin: {msg.text} ({url})")

    def _on_request(self, req: Any) -> None:
        url = req.url
        self.requests.append(url)
        p = urllib.parse.urlsplit(url)
        if p.scheme in ("data", "blob", "about"):
            return
        if p.scheme in ("http", "https", "ws", "wss") and p.hostname in ("127.0.0.1", "localhost", "::1"):
            return
        self.remote_requests.append(url)

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        try:
            dialog.dismiss()
        except Exception:  # noqa: BLE001 - the page may be gone
            pass

    def check(self) -> None:
        assert not self.errors, "console errors / page errors:\n" + "\n".join(self.errors)
        assert not self.remote_requests, "requests left localhost:\n" + "\n".join(self.remote_requests)
        assert not self.dialogs, "dialogs opened: " + "; ".join(self.dialogs)


def plugin_frame(page: Any, timeout: float = 60_000) -> Any:
    """The Attention iframe's frame, found through its element (``page.frames`` can lag behind TensorBoard)."""
    handle = page.locator(PLUGIN_IFRAME).element_handle(timeout=timeout)
    frame = handle.content_frame()
    deadline = timeout
    while frame is None and deadline > 0:  # the element exists before its document does
        page.wait_for_timeout(100)
        deadline -= 100
        frame = handle.content_frame()
    assert frame is not None, "the plugin iframe has no frame"
    return frame


def open_tab(page: Any, base_url: str, selection: Optional[dict] = None, *, timeout: float = 90_000) -> Any:
    """Opens TensorBoard at ``#attention`` (plus a selection) and waits until the tab is ready; returns its frame."""
    page.goto(base_url + "/" + hash_for(selection or {}))
    return wait_ready(page, timeout=timeout)


def wait_ready(page: Any, *, timeout: float = 90_000) -> Any:
    frame = plugin_frame(page, timeout)
    frame.wait_for_selector(f'{ROOT}[data-state="ready"]', timeout=timeout)
    return frame


def wait_attr(frame: Any, selector: str, attr: str, predicate: Callable[[Optional[str]], bool], *,
              timeout: float = 30_000, what: str = "") -> str:
    """Polls ``selector``'s attribute until ``predicate(value)`` holds; returns the value."""
    step = 50
    waited = 0.0
    value = None
    while waited <= timeout:
        value = frame.evaluate("([s, a]) => { const e = document.querySelector(s); return e ? e.getAttribute(a) : null; }",
                               [selector, attr])
        if predicate(value):
            return value
        frame.wait_for_timeout(step)
        waited += step
        step = min(step * 2, 250)
    raise AssertionError(f"timed out waiting for {selector} [{attr}] {what} (last value: {value!r})")


def wait_idle(frame: Any, timeout: float = 60_000) -> None:
    """Waits until the app is not loading (a selection change sets data-state=loading until drawn)."""
    frame.wait_for_function(
        "() => { const r = document.querySelector('[data-testid=\"attention-root\"]');"
        " return r && r.dataset.state !== 'loading'; }", timeout=timeout)
    state = frame.get_attribute(ROOT, "data-state")
    if state != "ready":
        err = frame.locator('[data-testid="error"]').text_content()
        raise AssertionError(f"the tab is {state!r}: {err}")


# The pixels of canvas `c` (a 2D canvas or a bitmap layer, 'bitmaprenderer': copied onto a scratch canvas).
PIXELS_JS = """(c, x, y, w, h) => { const s = document.createElement('canvas'); s.width = c.width; s.height = c.height;
  const g = s.getContext('2d'); g.drawImage(c, 0, 0); return g.getImageData(x, y, w, h).data; }"""

# A digest of every canvas under an element: per canvas, the number of drawn (alpha > 0) pixels; overall,
# an FNV-1a hash of all pixels and of each layer's visibility (the head view hides its rest layer on hover).
_CANVAS_JS = """
(root) => {
  const pixels = """ + PIXELS_JS + """;
  let h = 2166136261 >>> 0;
  const canvases = [];
  for (const c of root.querySelectorAll('canvas')) {
    const hidden = c.hidden || getComputedStyle(c).visibility === 'hidden' || getComputedStyle(c).display === 'none';
    let drawn = 0;
    if (c.width && c.height) {
      const px = new Uint32Array(pixels(c, 0, 0, c.width, c.height).buffer);
      for (let i = 0; i < px.length; i++) {
        const v = px[i];
        if (v >>> 24) drawn++;
        h = Math.imul(h ^ v, 16777619) >>> 0;
      }
    }
    h = Math.imul(h ^ (hidden ? 0x55 : 0xaa) ^ c.width ^ (c.height << 16), 16777619) >>> 0;
    canvases.push({width: c.width, height: c.height, drawn, hidden});
  }
  return {hash: h.toString(16), canvases, drawn: canvases.reduce((a, c) => a + (c.hidden ? 0 : c.drawn), 0)};
}
"""


def canvas_digest(frame: Any, selector: str) -> dict:
    """``{hash, drawn, canvases: [{width, height, drawn, hidden}]}`` of the canvases under ``selector``."""
    return frame.locator(selector).first.evaluate(_CANVAS_JS)


def dataset(frame: Any, selector: str) -> dict:
    return frame.locator(selector).first.evaluate("e => Object.assign({}, e.dataset)")


def hover_token(frame: Any, view_selector: str, index: int, side: str = "left") -> None:
    """Moves the mouse onto token ``index`` of the head view's query (left) or key (right) column."""
    d = dataset(frame, view_selector)
    x = float(d["leftX"] if side == "left" else d["rightX"])
    y = float(d["top"]) + (index + 0.5) * float(d["rowHeight"])
    stack = frame.locator(f'{view_selector} [data-testid="head-canvas"]').first
    # position is relative to the stack (content coordinates); the top canvas inside it gets the event
    stack.hover(position={"x": x, "y": y}, timeout=15_000)
