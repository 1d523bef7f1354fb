"""End to end: a real ``tensorboard`` process (``python -m tensorboard.main``), under both loaders.

``--load_fast=true`` is the Rust data server (the plugin gets no multiplexer), ``--load_fast=false`` the
Python multiplexer. The plugin is found through its ``tensorboard_plugins`` entry point, so the package
must be installed (``pip install -e .``).
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from browser_util import launch as launch_chromium
from conftest import ATTENTION_TOLERANCE, check_minilm, write_attention_run
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard_plugin_attention import format as fmt
from tensorboard_plugin_attention.metadata import PLUGIN_NAME

CHECKPOINTS = 25
LOADERS = [pytest.param("true", id="rust"), pytest.param("false", id="python")]


def _entry_point_installed() -> bool:
    from importlib.metadata import entry_points

    return any(ep.name == PLUGIN_NAME for ep in entry_points(group="tensorboard_plugins"))


pytestmark = pytest.mark.skipif(not _entry_point_installed(),
                                reason="tensorboard_plugins entry point missing: pip install -e .")


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """``ckpts``: 25 checkpoints x two examples of one tag; ``damaged``: its asset files deleted and a
    future-version index record; ``truncated``: a cut event file. The damage must hide only itself."""
    root = tmp_path_factory.mktemp("e2e")
    ckpts = write_attention_run(root / "ckpts", steps=range(CHECKPOINTS), examples=("0", "1"), layers=2, heads=2,
                                tokens=5)
    write_attention_run(root / "damaged", steps=(0, 1), layers=1, heads=1, tokens=4, seed=3)
    shutil.rmtree(root / "damaged" / "plugins")
    payload = json.dumps({"version": 99, "tag": "probes", "example": "0", "step": 2,
                          "asset": {"file": "x.attn", "offset": 0, "length": 1}}).encode()
    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
        plugin_name=PLUGIN_NAME, content=json.dumps({"version": 1, "tag": "probes", "example": "0"}).encode()))
    w = EventFileWriter(str(root / "damaged"), filename_suffix=".v99")
    w.add_event(event_pb2.Event(step=2, wall_time=2e9, summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag="probes/0", metadata=meta, tensor=tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, tensor_shape=tensor_shape_pb2.TensorShapeProto(), string_val=[payload]))])))
    w.close()
    # ``truncated``: its event file cut inside the last index record (a writer killed mid-write)
    write_attention_run(root / "truncated", steps=range(4), layers=1, heads=1, tokens=4, seed=5)
    (events,) = [p for p in (root / "truncated").iterdir() if p.name.startswith("events")]
    offsets, pos = [], 0
    for raw in event_file_loader.RawEventFileLoader(str(events)).Load():
        if any(v.metadata.plugin_data.plugin_name == PLUGIN_NAME for v in event_pb2.Event.FromString(raw).summary.value):
            offsets.append(pos)
        pos += len(raw) + 16
    with open(events, "r+b") as f:
        f.truncate(offsets[-1] + 40)
    return root, ckpts


def index_steps(tb) -> dict:
    """{(run, tag, example): steps} from /index."""
    r = tb.plugin("index")
    assert r.status == 200, r.body[:300]
    return {(run["run"], t["tag"], e["example"]): e["steps"]
            for run in r.json()["runs"] for t in run["tags"] for e in t["examples"]}


def wait_active(tb):
    tb.wait_for(lambda: tb.get("/data/plugins_listing").json()[PLUGIN_NAME]["enabled"], what="attention active")


def decoded(resp) -> np.ndarray:
    assert resp.status == 200, resp.body[:300]
    assert resp.headers["X-Attention-Codec"] == "log8"
    shape = tuple(int(x) for x in resp.headers["X-Attention-Shape"].split(","))
    return fmt.LUT[np.frombuffer(resp.body, np.uint8).reshape(shape)]


@pytest.mark.parametrize("load_fast", LOADERS)
def test_every_checkpoint_kept_and_served(tensorboard, logs, load_fast):
    root, ckpts = logs
    tb = tensorboard(str(root), f"--load_fast={load_fast}", "--reload_interval", "1")
    wait_active(tb)
    listing = tb.get("/data/plugins_listing").json()[PLUGIN_NAME]
    assert listing["tab_name"] == "Attention" and listing["loading_mechanism"]["type"] == "IFRAME"
    everything = list(range(CHECKPOINTS))
    steps = tb.wait_for(lambda: (lambda s: s if s.get(("ckpts", "probes", "0")) == everything
                                 and s.get(("ckpts", "probes", "1")) == everything else None)(index_steps(tb)),
                        what="all 25 checkpoints in /index")
    # the damaged run lists what its index records say (unreadable version 99 hidden) ...
    assert steps.get(("damaged", "probes", "0")) == [0, 1]
    assert steps.get(("truncated", "probes", "0")) == [0, 1, 2]  # the cut record only
    r = tb.plugin("attention", run="truncated", tag="probes", example="0", step=2, kind="encoder", layer=0)
    assert r.status == 200
    # ... and its arrays are a JSON 404, not a 500
    r = tb.plugin("attention", run="damaged", tag="probes", example="0", step=1, kind="encoder", layer=0)
    assert r.status == 404 and "error" in r.json()
    for step in (0, 12, CHECKPOINTS - 1):
        layers = {}
        for example in ("0", "1"):
            for layer in range(2):
                got = decoded(tb.plugin("attention", run="ckpts", tag="probes", example=example, step=step,
                                        kind="encoder", layer=layer))
                expected = ckpts.examples[(example, step)].attention[layer]
                assert got.shape == expected.shape
                assert np.abs(got - expected).max() <= ATTENTION_TOLERANCE
                layers[(example, layer)] = got
        assert not np.allclose(layers[("0", 0)], layers[("1", 0)])  # two examples, one tag, one step
    ex = ckpts.examples[("1", 7)]
    r = tb.plugin("qk", run="ckpts", tag="probes", example="1", step=7, kind="encoder", layer=1, head=1)
    assert r.status == 200
    q_len, k_len, d = (int(x) for x in r.headers["X-QK-Shape"].split(","))
    data = np.frombuffer(r.body, "<f2")
    np.testing.assert_array_equal(data[: q_len * d].reshape(q_len, d), ex.queries[1][1].astype(np.float16))
    np.testing.assert_array_equal(data[q_len * d:].reshape(k_len, d), ex.keys[1][1].astype(np.float16))
    ov = tb.plugin("overview", run="ckpts", tag="probes", example="0", step=3, kind="encoder")
    assert decoded(ov).shape == (2, 2, 5, 5)
    # errors are JSON under the real server too
    for params, status in ((dict(run="ckpts"), 400), (dict(run="ckpts", tag="probes", example="0", step="x"), 400),
                           (dict(run="nope", tag="probes", example="0", step=0, kind="encoder", layer=0), 404)):
        r = tb.plugin("attention", **params)
        assert r.status == status and r.headers["Content-Type"].startswith("application/json") and r.json()["error"]
    r = tb.get("/data/plugin/attention/static/../../../etc/passwd")
    assert r.status in (400, 404)
    # the module TensorBoard loads into the tab's iframe: the committed bundle, or a JSON 404 before it exists
    bundle = os.path.join(os.path.dirname(fmt.__file__), "static", "index.js")
    r = tb.get(listing["loading_mechanism"]["module_path"])
    if os.path.isfile(bundle):
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/javascript")
        with open(bundle, "rb") as f:
            assert r.body == f.read()
    else:
        assert r.status == 404 and r.json()["error"]


@pytest.mark.parametrize("load_fast", LOADERS)
def test_user_samples_per_plugin_respected(tensorboard, logs, load_fast):
    root, _ = logs
    tb = tensorboard(str(root / "ckpts"), f"--load_fast={load_fast}", "--reload_interval", "1",
                     "--samples_per_plugin=attention=5")
    wait_active(tb)
    # reservoir sampling keeps the latest step: wait until it is loaded, then count
    steps = tb.wait_for(lambda: (lambda s: s if all(v and v[-1] == CHECKPOINTS - 1 for v in s.values())
                                 and len(s) == 2 else None)(index_steps(tb)), what="latest step loaded")
    for key, v in steps.items():
        assert 1 <= len(v) <= 5, (key, v)


@pytest.mark.parametrize("load_fast", LOADERS)
def test_new_checkpoints_appear_while_running(tensorboard, tmp_path, load_fast):
    logdir = tmp_path / "live"
    run = write_attention_run(logdir / "train", steps=(0, 1, 2), layers=1, heads=2, tokens=4)
    tb = tensorboard(str(logdir), f"--load_fast={load_fast}", "--reload_interval", "1")
    wait_active(tb)
    tb.wait_for(lambda: index_steps(tb).get(("train", "probes", "0")) == [0, 1, 2], what="first checkpoints")
    write_attention_run(logdir / "train", steps=(3, 4), layers=1, heads=2, tokens=4, run=run)  # a new writer
    tb.wait_for(lambda: index_steps(tb).get(("train", "probes", "0")) == [0, 1, 2, 3, 4], timeout=60,
                what="new checkpoints in /index")
    got = decoded(tb.plugin("attention", run="train", tag="probes", example="0", step=4, kind="encoder", layer=0))
    assert np.abs(got - run.examples[("0", 4)].attention[0]).max() <= ATTENTION_TOLERANCE
    # a new run appears too
    write_attention_run(logdir / "second", steps=(10,), layers=1, heads=1, tokens=3, seed=9)
    tb.wait_for(lambda: ("second", "probes", "0") in index_steps(tb), what="new run in /index")


@pytest.mark.parametrize("load_fast", LOADERS)
def test_minilm_round_trip_over_http(tensorboard, minilm_logs, load_fast):
    logdir, expected = minilm_logs
    tb = tensorboard(logdir, f"--load_fast={load_fast}")
    wait_active(tb)
    tb.wait_for(lambda: len(index_steps(tb)) == len(expected), what="MiniLM examples in /index")

    def fetch(route, **params):
        r = tb.plugin(route.lstrip("/"), **params)
        return r.status, r.headers, r.body

    check_minilm(fetch, expected)


@pytest.mark.parametrize("load_fast", LOADERS)
def test_across_training_routes(tensorboard, logs, load_fast):
    """/metrics (every step, from the index records), /divergence and /rollout over real HTTP."""
    from tensorboard_plugin_attention import metrics

    root, ckpts = logs
    tb = tensorboard(str(root), f"--load_fast={load_fast}", "--reload_interval", "1")
    wait_active(tb)
    everything = list(range(CHECKPOINTS))
    tb.wait_for(lambda: index_steps(tb).get(("ckpts", "probes", "1")) == everything, what="all checkpoints")
    base = dict(run="ckpts", tag="probes", example="1")
    r = tb.plugin("metrics", **base)
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["steps"] == everything
    for step in (0, 13, CHECKPOINTS - 1):
        header = tb.plugin("header", **base, step=step).json()
        for name, grids in body["kinds"]["encoder"].items():
            assert grids[step] == header["metrics"]["encoder"][name]
    want = metrics.layer_metrics(ckpts.examples[("1", 13)].attention)
    np.testing.assert_allclose(body["kinds"]["encoder"]["sink"][13], want["sink"], atol=1e-6)

    js = tb.plugin("divergence", **base, kind="encoder", step_a=3, step_b=20).json()
    assert js["unit"] == "nats" and js["same_tokens"] is True
    for layer in range(2):
        a, b = (decoded(tb.plugin("attention", **base, step=s, kind="encoder", layer=layer)) for s in (3, 20))
        np.testing.assert_allclose(js["js"][layer], [metrics.jensen_shannon(a[h], b[h]) for h in range(2)],
                                   rtol=1e-9, atol=1e-12)
    assert tb.plugin("divergence", **base, kind="encoder", step_a=3, step_b=99).status == 404

    r = tb.plugin("rollout", **base, step=20, kind="encoder", residual="0.3", fusion="max")
    got = decoded(r)
    layers = [decoded(tb.plugin("attention", **base, step=20, kind="encoder", layer=l)) for l in range(2)]
    assert got.shape == (1, 5, 5)
    assert np.abs(got[0] - metrics.rollout(layers, residual=0.3, head_fusion="max")).max() <= ATTENTION_TOLERANCE
    for params in (dict(kind="cross"), dict(kind="encoder", residual="2"), dict(kind="encoder", fusion="sum")):
        r = tb.plugin("rollout", **base, step=20, **params)
        assert r.status == 400 and r.json()["error"]


@pytest.mark.browser
def test_browser_decodes_stored_chunks(tensorboard, tmp_path):
    """Chromium's fetch() decodes what the plugin sends it (Content-Encoding: deflate, the stored zlib chunks
    spliced), for chunks written now and chunks written before compress_chunk (plain zlib.compress)."""
    import zlib

    from playwright.sync_api import sync_playwright

    write_attention_run(tmp_path / "new", steps=(0,), layers=2, heads=12, tokens=120)
    real = fmt.compress_chunk
    fmt.compress_chunk = lambda data, level=1: zlib.compress(data, level)
    try:
        write_attention_run(tmp_path / "old", steps=(0,), layers=2, heads=12, tokens=120, seed=3)
    finally:
        fmt.compress_chunk = real
    tb = tensorboard(str(tmp_path), "--load_fast=false")
    wait_active(tb)
    tb.wait_for(lambda: len(index_steps(tb)) == 2, what="both runs")
    fetch = """async (url) => { const r = await fetch(url); const b = new Uint8Array(await r.arrayBuffer());
        return {status: r.status, encoding: r.headers.get('content-encoding'), data: Array.from(b)}; }"""
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            page.goto(tb.url + "/data/plugins_listing")
            for run, full in (("new", "deflate"), ("old", "gzip")):
                base = dict(run=run, tag="probes", example="0", step="0", kind="encoder")
                for route, extra, enc in (("attention", dict(layer="1"), full),
                                          ("attention", dict(layer="1", head="7"), "deflate"),
                                          ("overview", {}, "deflate")):
                    params = dict(base, **extra)
                    qs = "&".join(f"{k}={v}" for k, v in params.items())
                    got = page.evaluate(fetch, f"{tb.url}/data/plugin/attention/{route}?{qs}")
                    plain = tb.get(f"/data/plugin/attention/{route}", params, gzip_ok=False)
                    assert got["status"] == 200 and got["encoding"] == enc, (run, route, extra, got["encoding"])
                    assert bytes(got["data"]) == plain.body, (run, route, extra)
        finally:
            browser.close()


@pytest.mark.parametrize("load_fast", LOADERS)
def test_attention_writer_beside_another_live_writer(tensorboard, tmp_path, load_fast):
    """A run with two live event files (our writer + the training loop's): records appended to the OLDER
    file while TensorBoard runs still appear (fix_flags turns on --reload_multifile for the Python loader)."""
    from tensorboard_plugin_attention import AttentionWriter

    run = tmp_path / "logs" / "train"
    rng = np.random.default_rng(0)
    att = [rng.dirichlet(np.ones(4), size=(2, 4)).astype(np.float32)]
    ours = AttentionWriter(str(run), background=False)
    ours.add_attention("probes", att, ["a", "b", "c", "d"], 0)
    ours.flush()
    loss = EventFileWriter(str(run))  # the loop's own writer: a newer event file in the same run
    loss.add_event(event_pb2.Event(step=0, wall_time=1.0, file_version="brain.Event:2"))
    loss.flush()
    tb = tensorboard(str(tmp_path / "logs"), f"--load_fast={load_fast}", "--reload_interval", "1")
    wait_active(tb)
    tb.wait_for(lambda: index_steps(tb).get(("train", "probes", "0")) == [0], what="step 0")
    ours.add_attention("probes", att, ["a", "b", "c", "d"], 1)  # into the older file
    ours.flush()
    tb.wait_for(lambda: index_steps(tb).get(("train", "probes", "0")) == [0, 1], timeout=60,
                what="a record appended to the older event file")
    ours.close()
    loss.close()


# ------------------------------------------------------------------------------- hardening (issue 10)
def _flip_in_index_payload(events_path, step: int, old: bytes, new: bytes) -> None:
    """Change ``old`` to ``new`` (same length) inside the index payload of ``step``, leaving the event's
    TFRecord CRCs as they were (a bit flip on disk): the Rust loader parses such events anyway."""
    data = bytearray(open(events_path, "rb").read())
    pos = 0
    for raw in event_file_loader.RawEventFileLoader(str(events_path)).Load():
        ev = event_pb2.Event.FromString(raw)
        if ev.step == step and any(v.metadata.plugin_data.plugin_name == PLUGIN_NAME for v in ev.summary.value):
            at = data.index(old, pos + 12)
            data[at:at + len(old)] = new
            open(events_path, "wb").write(bytes(data))
            return
        pos += len(raw) + 16
    raise AssertionError(f"no index record of step {step}")


@pytest.mark.parametrize("load_fast", LOADERS)
def test_flipped_index_record_is_never_served(tensorboard, tmp_path, load_fast):
    """A token changed on disk inside an index record: the Python loader drops the event (TFRecord CRC), the
    Rust loader parses it anyway; our own index checksum hides it there. Before format v2 the Rust loader
    served the changed token."""
    run = write_attention_run(tmp_path / "r", steps=(0, 1, 2), layers=1, heads=1, tokens=5)
    (events,) = [p for p in (tmp_path / "r").iterdir() if p.name.startswith("events")]
    _flip_in_index_payload(events, 1, b'"tok2"', b'"tok7"')
    tb = tensorboard(str(tmp_path), f"--load_fast={load_fast}", "--reload_interval", "1")
    wait_active(tb)
    # The Python loader stops reading a file at a failed CRC (TensorBoard's behaviour: step 2 is lost too).
    expect = [0, 2] if load_fast == "true" else [0]
    tb.wait_for(lambda: index_steps(tb).get(("r", "probes", "0")) == expect, what=f"steps {expect} only")
    assert tb.plugin("header", run="r", tag="probes", example="0", step=1).status == 404
    for step in expect:
        h = tb.plugin("header", run="r", tag="probes", example="0", step=step).json()
        assert h["sequences"]["input"] == run.examples[("0", step)].tokens
    if load_fast == "true":
        (bad,) = tb.plugin("index").json()["unreadable"]
        assert bad["run"] == "r" and bad["tag"] == "probes/0" and "checksum" in bad["reason"]


def test_logdir_spec_serves_every_view(tensorboard, tmp_path):
    """Under --logdir_spec run names are not paths (``a/r``, ``b/r``): arrays are found through the
    multiplexer's run paths (before: every /attention was a 404). The spec forces the Python loader."""
    a = write_attention_run(tmp_path / "first" / "r", steps=(0, 1), layers=1, heads=2, tokens=5, seed=1)
    b = write_attention_run(tmp_path / "second" / "r", steps=(0,), layers=1, heads=2, tokens=5, seed=2)
    spec = f"a:{tmp_path / 'first'},b:{tmp_path / 'second'}"
    tb = tensorboard(None, "--logdir_spec", spec, "--reload_interval", "1")
    wait_active(tb)
    tb.wait_for(lambda: index_steps(tb).get(("a/r", "probes", "0")) == [0, 1] and ("b/r", "probes", "0") in index_steps(tb),
                what="both spec runs listed")
    for run, logged, step in (("a/r", a, 1), ("b/r", b, 0)):
        got = decoded(tb.plugin("attention", run=run, tag="probes", example="0", step=step, kind="encoder", layer=0))
        assert np.abs(got - logged.examples[("0", step)].attention[0]).max() <= ATTENTION_TOLERANCE
        assert tb.plugin("overview", run=run, tag="probes", example="0", step=step, kind="encoder").status == 200
        assert tb.plugin("qk", run=run, tag="probes", example="0", step=step, kind="encoder", layer=0, head=1).status == 200
        assert tb.plugin("rollout", run=run, tag="probes", example="0", step=step, kind="encoder").status == 200
    assert tb.plugin("divergence", run="a/r", tag="probes", example="0", kind="encoder", step_a=0, step_b=1).status == 200


# ------------------------------------------------------------------------------- long context (issue 11)
@pytest.fixture(scope="module")
def long_logs(tmp_path_factory):
    """One 16384-token causal layer (2 heads sharing one key head) logged from q/k: a long layer. Written in a
    subprocess under a 4 GB address-space cap (a regression that allocated n x n would fail cleanly)."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("long16k")
    out = subprocess.run([sys.executable, "-c", _WRITE_16K, str(root / "long")], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return root


_WRITE_16K = r'''
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, resource.RLIM_INFINITY))
import numpy as np
from tensorboard_plugin_attention import AttentionWriter
rng = np.random.default_rng(0)
n, d = 16384, 16
q = rng.normal(size=(2, n, d)).astype(np.float16)
k = rng.normal(size=(1, n, d)).astype(np.float16)
with AttentionWriter(sys.argv[1]) as w:
    w.add_attention("ctx", None, [f"w{i % 97}" for i in range(n)], 7, queries=[q], keys=[k], kind="decoder")
'''


@pytest.mark.parametrize("load_fast", LOADERS)
def test_16k_record_listed_and_exact_window_served(tensorboard, long_logs, load_fast):
    from tensorboard_plugin_attention import read_attention

    tb = tensorboard(str(long_logs), f"--load_fast={load_fast}", "--reload_interval", "1")
    wait_active(tb)
    tb.wait_for(lambda: index_steps(tb).get(("long", "ctx", "0")) == [7], what="the 16k record in /index")
    header = tb.plugin("header", run="long", tag="ctx", example="0", step=7).json()
    assert header["kinds"]["decoder"]["q_len"] == 16384 and header["kinds"]["decoder"]["layout"] == "long"
    resp = tb.plugin("window", run="long", tag="ctx", example="0", step=7, kind="decoder", layer=0, head=1,
                     rows="16000:16128", cols="0:16384", dtype="float32")
    assert resp.status == 200, resp.body[:300]
    got = np.frombuffer(resp.body, "<f4").reshape(128, 16384)
    (ex,) = read_attention(str(long_logs), rows=(16000, 16128), cols=(0, 16384), queries_keys=False)
    np.testing.assert_array_equal(got, ex.attention["decoder"][0, 1])
    assert abs(got.sum(-1) - 1).max() < 0.03 and (got[:, 16129:] == 0).all()  # causal
    assert tb.plugin("pyramid", run="long", tag="ctx", example="0", step=7, kind="decoder", layer=0, head=0).status == 200


# ------------------------------------------------------------------------ live writing (issue 18)
_LIVE_WRITER = r"""
import sys, time
import numpy as np
from tensorboard_plugin_attention import AttentionWriter
rng = np.random.default_rng(0)
tokens = ["[CLS]", "a", "b", "[SEP]"]
with AttentionWriter(sys.argv[1], background=False, flush_secs=1) as w:
    for step in range(int(sys.argv[2])):
        for example in ("0", "1"):
            att = [rng.dirichlet(np.ones(4), size=(2, 4)).astype(np.float32)]
            w.add_attention("probes", att, tokens, step, example=example)
        w.flush()
        time.sleep(0.5)
"""


def test_every_listed_step_is_served_while_a_run_is_written(tensorboard, tmp_path):
    """Python loader: a writer logs a checkpoint every 0.5 s while a client polls /index and reads each step
    it lists. Whatever /index lists must be served (it answered 404 for steps it had just listed)."""
    import subprocess
    import sys
    import time

    logdir = tmp_path / "live"
    (logdir / "train").mkdir(parents=True)
    tb = tensorboard(str(logdir), "--load_fast=false", "--reload_interval", "0.2")
    writer = subprocess.Popen([sys.executable, "-c", _LIVE_WRITER, str(logdir / "train"), "40"],
                              env=dict(os.environ))
    failures, reads, seen = [], 0, set()
    try:
        deadline = time.monotonic() + 45
        while writer.poll() is None and time.monotonic() < deadline:
            listed = index_steps(tb)
            for (run, tag, example), steps in listed.items():
                for step in steps[-3:]:  # the newest steps: those the reload is racing with
                    r = tb.plugin("header", run=run, tag=tag, example=example, step=step)
                    reads += 1
                    seen.add(step)
                    if r.status != 200:
                        failures.append((example, step, r.status, r.body[:200]))
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait(10)
    assert writer.returncode == 0
    assert len(seen) >= 20 and reads >= 100, (len(seen), reads)
    assert not failures, f"{len(failures)} of {reads} reads of listed steps failed: {failures[:5]}"
