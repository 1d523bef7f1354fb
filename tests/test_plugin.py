"""The plugin backend through TensorBoard's own WSGI app (werkzeug test client) over a
``MultiplexerDataProvider`` with no multiplexer handed to the plugin (as under the Rust data server).

Covers every route of docs/http-api.md (bytes decoded and compared to what was logged), a table of bad
parameters (never a 500, always 400/404 with a JSON error), damaged data that hides only what it affects,
the loader's flags, and the index cache.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import shutil
import threading
import time
import zlib

import numpy as np
import pytest
from werkzeug.test import Client

from conftest import ATTENTION_TOLERANCE, check_minilm, write_attention_run, write_index_record
from tensorboard.backend import application
from tensorboard.context import RequestContext
from tensorboard.backend.event_processing import data_provider as mdp
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
from tensorboard.compat.proto import event_pb2
from tensorboard_plugin_attention import format as fmt
from tensorboard_plugin_attention import http_io as web
from tensorboard_plugin_attention import storage
from tensorboard_plugin_attention import plugin as plugin_mod
from tensorboard_plugin_attention import reader
from tensorboard_plugin_attention.metadata import FORMAT_VERSION, PLUGIN_NAME
from tensorboard_plugin_attention.plugin import AttentionLoader, AttentionPlugin

PREFIX = "/data/plugin/attention"
LAYERS, HEADS, TOKENS = 2, 3, 7
STEPS = (0, 5, 10)
QK_STEPS = (0, 10)


# ------------------------------------------------------------------------------------------ helpers
def make_provider(logdir: str) -> mdp.MultiplexerDataProvider:
    m = pem.EventMultiplexer(tensor_size_guidance={PLUGIN_NAME: 0})
    m.AddRunsFromDirectory(str(logdir))
    m.Reload()
    return mdp.MultiplexerDataProvider(m, str(logdir))


def make_flags(logdir: str, **kw) -> argparse.Namespace:
    flags = dict(logdir=str(logdir), samples_per_plugin={PLUGIN_NAME: 0}, window_title="", path_prefix="",
                 attention_cache_mb=16)
    flags.update(kw)
    return argparse.Namespace(**flags)


class App:
    """A TensorBoard WSGI app with only our plugin, and a client."""

    def __init__(self, logdir: str, provider=None, **flags):
        self.logdir = str(logdir)
        self.provider = provider or make_provider(logdir)
        self.wsgi = application.TensorBoardWSGIApp(make_flags(logdir, **flags), [AttentionLoader()], self.provider)
        self.client = Client(self.wsgi)
        self.plugin: AttentionPlugin = next(p for p in self.wsgi._plugins if p.plugin_name == PLUGIN_NAME)

    def get(self, route: str, headers=None, **params):
        return self.client.get(PREFIX + route, query_string={k: v for k, v in params.items() if v is not None},
                               headers=headers or {})

    def raw(self, path: str, headers=None):
        return self.client.get(path, headers=headers or {})

    def reload(self):
        self.provider._multiplexer.Reload()


def body_json(resp):
    data = resp.get_data()
    if resp.headers.get("Content-Encoding") == "gzip":
        data = gzip.decompress(data)
    return json.loads(data)


def body_bytes(resp):
    data = resp.get_data()
    return gzip.decompress(data) if resp.headers.get("Content-Encoding") == "gzip" else data


def assert_json_error(resp, *statuses):
    assert resp.status_code in statuses, (resp.status_code, resp.get_data()[:300])
    assert resp.mimetype == "application/json", resp.headers
    err = body_json(resp)
    assert isinstance(err, dict) and isinstance(err.get("error"), str) and err["error"], err
    return err["error"]


def decode_layer(resp):
    shape = tuple(int(x) for x in resp.headers["X-Attention-Shape"].split(","))
    assert resp.headers["X-Attention-Codec"] == "log8"
    return fmt.LUT[np.frombuffer(body_bytes(resp), dtype=np.uint8).reshape(shape)]


def decode_qk(resp):
    q_len, k_len, d = (int(x) for x in resp.headers["X-QK-Shape"].split(","))
    data = np.frombuffer(body_bytes(resp), dtype="<f2")
    assert data.size == (q_len + k_len) * d
    return data[: q_len * d].reshape(q_len, d), data[q_len * d:].reshape(k_len, d)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """run1: two examples x steps 0/5/10 (q/k at 0 and 10); run2: another tag, 40 tokens, no q/k."""
    root = tmp_path_factory.mktemp("logs")
    run1 = write_attention_run(root / "run1", steps=STEPS, examples=("0", "1"), layers=LAYERS, heads=HEADS,
                               tokens=TOKENS, qk_steps=QK_STEPS)
    run2 = write_attention_run(root / "run2", steps=(3,), examples=("a",), tag="other", layers=1, heads=2,
                               tokens=40, qk=False, seed=7)
    return root, {"run1": run1, "run2": run2}


@pytest.fixture(scope="module")
def app(logged):
    return App(logged[0])


def base_params(**kw):
    p = dict(run="run1", tag="probes", example="0", step="5", kind="encoder", layer="1", head="2")
    p.update(kw)
    return p


# ------------------------------------------------------------------------------------ plugin listing
def test_plugins_listing_active_iframe_tab(app):
    listing = body_json(app.raw("/data/plugins_listing"))
    entry = listing[PLUGIN_NAME]
    assert entry["enabled"] is True
    assert entry["tab_name"] == "Attention"
    assert entry["loading_mechanism"] == {"type": "IFRAME", "module_path": f"{PREFIX}/index.js"}
    assert app.plugin.is_active() is True
    assert app.plugin.frontend_metadata().es_module_path == "/index.js"


def test_inactive_without_attention(tmp_path):
    (tmp_path / "empty").mkdir()
    a = App(tmp_path)
    assert a.plugin.is_active() is False
    assert body_json(a.raw("/data/plugins_listing"))[PLUGIN_NAME]["enabled"] is False
    index = body_json(a.get("/index"))
    assert index["runs"] == [] and index["version"] == plugin_mod.API_VERSION == 1


# ---------------------------------------------------------------------------------------------- index
def test_index_lists_everything(app, logged):
    resp = app.get("/index")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    index = body_json(resp)
    assert index["version"] == 1 and index["format_version"] == FORMAT_VERSION
    assert index["codec"]["name"] == "log8"
    np.testing.assert_array_equal(np.asarray(index["codec"]["lut"], dtype=np.float32), fmt.LUT)
    runs = {r["run"]: r for r in index["runs"]}
    assert sorted(runs) == ["run1", "run2"]
    (tag,) = runs["run1"]["tags"]
    assert tag["tag"] == "probes"
    assert [e["example"] for e in tag["examples"]] == ["0", "1"]
    for e in tag["examples"]:
        assert e["steps"] == list(STEPS)
        assert e["qk_steps"] == list(QK_STEPS)
        h = e["header"]
        assert h["step"] == STEPS[-1] and h["tag"] == "probes" and h["example"] == e["example"]
        assert h["sequences"]["input"] == logged[1]["run1"].examples[(e["example"], STEPS[-1])].tokens
        assert "asset" not in h and "chunks" not in h
        k = h["kinds"]["encoder"]
        assert (k["layers"], k["heads"], k["q_len"], k["k_len"]) == (LAYERS, HEADS, TOKENS, TOKENS)
    (other,) = runs["run2"]["tags"]
    assert other["tag"] == "other" and other["examples"][0]["qk_steps"] == []


def test_index_serves_the_readers_limits(app):
    """The bounds a header is checked against come from format (one definition), named as the frontend's LIMITS."""
    limits = body_json(app.get("/index"))["limits"]
    assert limits == {"layers": fmt.MAX_COUNTS["layers"], "heads": fmt.MAX_COUNTS["heads"],
                      "tokens": fmt.MAX_COUNTS["q_len"], "headDim": fmt.MAX_HEAD_DIM, "overview": fmt.MAX_OVERVIEW_BINS}
    api_ts = os.path.join(os.path.dirname(__file__), "..", "frontend", "src", "api.ts")
    if os.path.exists(api_ts):  # the frontend's constant has the same fields
        import re

        fields = re.search(r"export const LIMITS = \{([^}]*)\}", open(api_ts, encoding="utf-8").read())
        if fields:
            assert {f.split(":")[0].strip() for f in fields.group(1).split(",")} == set(limits)


def test_index_gzipped_when_accepted(app):
    plain = app.get("/index")
    zipped = app.get("/index", headers={"Accept-Encoding": "gzip, deflate"})
    assert "Content-Encoding" not in plain.headers
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(zipped.get_data())) == json.loads(plain.get_data())


def test_two_examples_one_tag_one_step_both_present(app, logged):
    run1 = logged[1]["run1"]
    got = {}
    for example in ("0", "1"):
        got[example] = decode_layer(app.get("/attention", **base_params(example=example, step="5", head=None)))
        np.testing.assert_allclose(got[example], run1.examples[(example, 5)].attention[1], atol=ATTENTION_TOLERANCE)
    assert not np.allclose(got["0"], got["1"])


# ------------------------------------------------------------------------------------- header, arrays
def test_header_every_step(app, logged):
    run1 = logged[1]["run1"]
    for (example, step), ex in run1.examples.items():
        h = body_json(app.get("/header", **base_params(example=example, step=str(step))))
        assert h["step"] == step and h["example"] == example and h["version"] == FORMAT_VERSION
        assert h["sequences"]["input"] == ex.tokens
        assert h["kinds"]["encoder"]["has_qk"] is (step in QK_STEPS)
        assert "asset" not in h


def test_attention_every_layer_and_head(app, logged):
    for run_name, run in logged[1].items():
        for (example, step), ex in run.examples.items():
            for layer, expected in enumerate(ex.attention):
                params = base_params(run=run_name, tag=run.tag, example=example, step=str(step), layer=str(layer),
                                     head=None)
                resp = app.get("/attention", **params)
                assert resp.status_code == 200 and resp.mimetype == "application/octet-stream"
                got = decode_layer(resp)
                assert got.shape == expected.shape
                assert np.abs(got - expected).max() <= ATTENTION_TOLERANCE
                for head in range(expected.shape[0]):
                    one = decode_layer(app.get("/attention", **dict(params, head=str(head))))
                    assert one.shape == (1, *expected.shape[1:])
                    np.testing.assert_array_equal(one[0], got[head])


def test_attention_gzipped_when_accepted(app, logged):
    params = base_params(run="run2", tag="other", example="a", step="3", layer="0", head=None)
    plain = app.get("/attention", **params)
    zipped = app.get("/attention", headers={"Accept-Encoding": "gzip"}, **params)
    assert "Content-Encoding" not in plain.headers and len(plain.get_data()) == 2 * 40 * 40
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.get_data()) == plain.get_data()
    assert zipped.headers["X-Attention-Shape"] == "2,40,40"
    again = app.get("/attention", headers={"Accept-Encoding": "gzip"}, **params)  # from the gzipped-body cache
    assert again.get_data() == zipped.get_data() and again.headers["Content-Encoding"] == "gzip"
    one = app.get("/attention", headers={"Accept-Encoding": "gzip"}, **dict(params, head="1"))
    np.testing.assert_array_equal(decode_layer(one)[0], decode_layer(plain)[1])
    ov = app.get("/overview", headers={"Accept-Encoding": "gzip"}, **params)
    np.testing.assert_array_equal(decode_layer(ov), decode_layer(app.get("/overview", **params)))


def test_qk_never_gzipped(app):
    resp = app.get("/qk", headers={"Accept-Encoding": "gzip"}, **base_params(step="10"))
    assert resp.status_code == 200 and "Content-Encoding" not in resp.headers
    assert len(resp.get_data()) == (TOKENS + TOKENS) * 4 * 2


def test_qk_float16_exact(app, logged):
    run1 = logged[1]["run1"]
    for step in QK_STEPS:
        ex = run1.examples[("1", step)]
        for layer in range(LAYERS):
            for head in range(HEADS):
                resp = app.get("/qk", **base_params(example="1", step=str(step), layer=str(layer), head=str(head)))
                assert resp.status_code == 200 and resp.mimetype == "application/octet-stream"
                q, k = decode_qk(resp)
                np.testing.assert_array_equal(q, ex.queries[layer][head].astype(np.float16))
                np.testing.assert_array_equal(k, ex.keys[layer][head].astype(np.float16))


def test_qk_not_logged_is_404(app):
    msg = assert_json_error(app.get("/qk", **base_params(step="5")), 404)
    assert "not logged" in msg
    assert_json_error(app.get("/qk", **base_params(run="run2", tag="other", example="a", step="3", layer="0",
                                                   head="0")), 404)


def test_overview(app, logged):
    for run_name, run in logged[1].items():
        for (example, step), ex in run.examples.items():
            resp = app.get("/overview", **base_params(run=run_name, tag=run.tag, example=example, step=str(step)))
            assert resp.status_code == 200
            got = decode_layer(resp)
            expected = np.stack([fmt.pool_overview(a) for a in ex.attention])
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() <= ATTENTION_TOLERANCE
            np.testing.assert_allclose(got.sum(-1), 1.0, atol=0.05)


# --------------------------------------------------------------------------------------- bad requests
_VALID = {"/header": ("run", "tag", "example", "step"),
          "/attention": ("run", "tag", "example", "step", "kind", "layer"),
          "/qk": ("run", "tag", "example", "step", "kind", "layer", "head"),
          "/overview": ("run", "tag", "example", "step", "kind")}

# (parameter, value, expected status); None as value removes the parameter
_BAD_VALUES = [
    ("run", None, 400), ("run", "", 400), ("run", "nope", 404), ("run", "../run1", 404),
    ("run", "run1/../run1", 404), ("run", "%2e%2e", 404), ("run", "..", 404), ("run", ".", 404),
    ("run", "/etc", 404), ("run", "rün\u202e", 404), ("run", "run1\x00", 404), ("run", "x" * 5000, 404),
    ("tag", None, 400), ("tag", "", 400), ("tag", "nope", 404), ("tag", "probes/0", 404), ("tag", "../probes", 404),
    ("example", None, 400), ("example", "", 400), ("example", "7", 404), ("example", "../0", 404),
    ("example", "０", 404),
    ("step", None, 400), ("step", "", 400), ("step", "abc", 400), ("step", "1.5", 400), ("step", "1e3", 400),
    ("step", " 5", 400), ("step", "+5", 400), ("step", "0x5", 400), ("step", "٥", 400), ("step", "5_0", 400),
    ("step", "9" * 40, 400), ("step", "-1", 404), ("step", "6", 404), ("step", "99999999999", 404),
    ("step", "%35", 400), ("step", "五", 400), ("step", "nan", 400), ("step", "5\x00", 400),
]
_BAD_KIND = [("kind", None, 400), ("kind", "", 400), ("kind", "decoder", 404), ("kind", "cross", 404),
             ("kind", "bogus", 404), ("kind", "../encoder", 404), ("kind", "__class__", 404)]
_BAD_LAYER = [("layer", None, 400), ("layer", "", 400), ("layer", "-1", 400), ("layer", str(LAYERS), 400),
              ("layer", "2147483648", 400), ("layer", "9" * 30, 400), ("layer", "1.0", 400), ("layer", "one", 400),
              ("layer", "١", 400), ("layer", "-0", 400)]
_BAD_HEAD = [("head", "-1", 400), ("head", str(HEADS), 400), ("head", "x", 400), ("head", "9" * 30, 400),
             ("head", "1 ", 400), ("head", "2e0", 400)]

_CASES = []
for _route, _params in _VALID.items():
    _table = list(_BAD_VALUES)
    if "kind" in _params:
        _table += _BAD_KIND
    if "layer" in _params:
        _table += _BAD_LAYER
    if _route in ("/attention", "/qk"):
        _table += _BAD_HEAD
    if _route == "/qk":
        _table += [("head", None, 400), ("head", "", 400)]
    for _name, _value, _status in _table:
        _CASES.append(pytest.param(_route, _name, _value, _status, id=f"{_route[1:]}-{_name}-{_value!r}"[:80]))


@pytest.mark.parametrize("route,name,value,status", _CASES)
def test_bad_parameter(app, route, name, value, status):
    params = {k: v for k, v in base_params(step="10").items() if k in _VALID[route]}
    if value is None:
        params.pop(name, None)
    else:
        params[name] = value
    assert_json_error(app.get(route, **params), status)


@pytest.mark.parametrize("query", [
    "run=%zz&tag=probes&example=0&step=5&kind=encoder&layer=0",
    "run=%ff%fe&tag=probes&example=0&step=5&kind=encoder&layer=0",
    "run=run1&tag=probes&example=0&step=%ff&kind=encoder&layer=0",
    "run=run1&tag=probes&example=0&step=5&kind=encoder&layer=%2d1",
    "run=%2e%2e%2frun1&tag=probes&example=0&step=5&kind=encoder&layer=0",
    "run=run1&run=run2&tag=probes&example=0&step=5&kind=encoder&layer=0&layer=9",
    "&&&=&==",
    "run",
    "",
])
@pytest.mark.parametrize("route", ["attention", "metrics", "divergence", "rollout"])
def test_raw_query_strings(app, query, route):
    query = query.replace("step=", "step_a=0&step_b=") if route == "divergence" else query
    resp = app.raw(f"{PREFIX}/{route}?{query}")
    assert resp.status_code != 500
    if resp.status_code != 200:
        assert_json_error(resp, 400, 404)


@pytest.mark.parametrize("path", [
    "/static/../plugin.py", "/static/../../tensorboard_plugin_attention/plugin.py", "/static/%2e%2e/plugin.py",
    "/static/%2E%2E/%2E%2E/setup.py", "/static/..%2fplugin.py", "/static/..%5cplugin.py", "/static/",
    "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/static/sub/../../plugin.py", "/static/.",
    "/static/./index.js", "/static/index.js%00.png", "/static/ünïcode.js", "/static/" + "a/" * 200 + "x",
    "/static/C:%5cWindows", "/nope", "/index.js/..", "/index/../plugin.py", "/static/../secret.js",
    "/static/%2e%2e/secret.js", "/static/sub/%2e%2e/%2e%2e/secret.js", "/static/..%2fsecret.js",
    "/static/sub/..%2f..%2fsecret.js", "/static/link.js",
])
def test_static_traversal_and_unknown_routes_are_json_404(static_app, path):
    """Against a static dir holding files, with a secret.js beside it (and a symlink to it inside)."""
    a, _ = static_app
    resp = a.raw(PREFIX + path)
    assert_json_error(resp, 404)
    assert b"export" not in resp.get_data() and b"TOP-SECRET" not in resp.get_data()


# ----------------------------------------------------------------------------------------- static files
@pytest.fixture
def static_app(tmp_path, logged, monkeypatch):
    root = tmp_path / "static"
    (root / "sub").mkdir(parents=True)
    files = {"index.js": b"export async function render() {}\n", "style.css": b"body{}", "page.html": b"<p>x</p>",
             "icon.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>", "img.png": b"\x89PNG\r\n\x1a\n",
             "sub/chunk.js": b"export const x = 1;\n", "data.bin": b"\x00\x01"}
    for name, data in files.items():
        (root / name).write_bytes(data)
    (tmp_path / "secret.js").write_bytes(b"TOP-SECRET-CONTENT")
    os.symlink(tmp_path / "secret.js", root / "link.js")
    monkeypatch.setattr(plugin_mod, "STATIC_DIR", str(root))
    return App(logged[0]), files


@pytest.mark.parametrize("path,ctype", [
    ("/index.js", "text/javascript"), ("/static/index.js", "text/javascript"), ("/static/style.css", "text/css"),
    ("/static/page.html", "text/html"), ("/static/icon.svg", "image/svg+xml"), ("/static/img.png", "image/png"),
    ("/static/sub/chunk.js", "text/javascript"), ("/static/data.bin", "application/octet-stream"),
])
def test_static_files(static_app, path, ctype):
    a, files = static_app
    resp = a.raw(PREFIX + path, headers={"Accept-Encoding": "gzip"})
    assert resp.status_code == 200
    assert resp.mimetype == ctype
    name = "index.js" if path == "/index.js" else path[len("/static/"):]
    assert body_bytes(resp) == files[name]


def test_index_js_404_when_bundle_missing(tmp_path, logged, monkeypatch):
    monkeypatch.setattr(plugin_mod, "STATIC_DIR", str(tmp_path / "nothing"))
    a = App(logged[0])
    assert "not built" in assert_json_error(a.raw(PREFIX + "/index.js"), 404)


# ------------------------------------------------------------------------------------- damaged data
def copy_logs(logged, tmp_path):
    dst = tmp_path / "logs"
    shutil.copytree(logged[0], dst)
    return dst


def record_of(a: App, run: str, example: str, step: int):
    e = a.plugin.entry(RequestContext(), "", run, "probes", example, step)
    path = os.path.join(a.logdir, run, "plugins", "attention", e.index["asset"]["file"])
    return fmt.parse_record_header(path, e.index["asset"]["offset"], storage.read_range)


def flip(path, offset, n=4):
    with open(path, "r+b") as f:
        f.seek(offset)
        data = bytearray(f.read(n))
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))


def test_corrupt_chunk_hides_only_that_layer(logged, tmp_path, caplog):
    logdir = copy_logs(logged, tmp_path)
    a = App(logdir)
    rec = record_of(a, "run1", "0", 5)
    off, length, _ = rec.chunk("encoder", "attention", 1, 0)
    flip(rec.path, rec.data_offset + off + length // 2)
    a = App(logdir)  # fresh caches
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            msg = assert_json_error(a.get("/attention", **base_params(step="5", head=None)), 404)
        assert "checksum" in msg and str(logdir) not in msg
    assert sum("cannot read" in r.getMessage() for r in caplog.records) == 1  # logged once
    assert_json_error(a.get("/attention", **base_params(step="5", head="0")), 404)
    # the rest of that record, and every other record, still serve
    for params in (base_params(step="5", head="1"), base_params(step="5", layer="0", head=None),
                   base_params(step="0", head=None), base_params(example="1", step="5", head=None)):
        assert a.get("/attention", **params).status_code == 200, params
    assert a.get("/overview", **base_params(step="5")).status_code == 200
    assert a.get("/index").status_code == 200 and a.get("/header", **base_params(step="5")).status_code == 200


def test_corrupt_record_header_hides_only_that_record(logged, tmp_path):
    logdir = copy_logs(logged, tmp_path)
    a = App(logdir)
    rec = record_of(a, "run1", "1", 10)
    flip(rec.path, rec.offset + 40)  # inside the JSON header: its CRC fails
    a = App(logdir)
    for route, params in (("/attention", base_params(example="1", step="10", head=None)),
                          ("/qk", base_params(example="1", step="10")), ("/overview", base_params(example="1", step="10"))):
        assert_json_error(a.get(route, **params), 404)
    assert a.get("/attention", **base_params(example="0", step="10", head=None)).status_code == 200
    assert a.get("/attention", **base_params(example="1", step="5", head=None)).status_code == 200
    assert a.get("/qk", **base_params(example="1", step="0")).status_code == 200


def test_deleted_asset_file_hides_only_its_run(logged, tmp_path):
    logdir = copy_logs(logged, tmp_path)
    shutil.rmtree(logdir / "run1" / "plugins" / "attention")
    a = App(logdir)
    assert a.get("/index").status_code == 200
    for route in ("/attention", "/qk", "/overview"):
        msg = assert_json_error(a.get(route, **base_params(step="10")), 404)
        assert "FileNotFoundError" in msg and str(logdir) not in msg
    resp = a.get("/attention", **base_params(run="run2", tag="other", example="a", step="3", layer="0", head=None))
    assert resp.status_code == 200


def test_truncated_asset_file(logged, tmp_path):
    logdir = copy_logs(logged, tmp_path)
    (asset,) = (logdir / "run1" / "plugins" / "attention").iterdir()
    a = App(logdir)
    last = record_of(a, "run1", "1", 10)
    with open(asset, "r+b") as f:
        f.truncate(last.data_offset + 10)
    a = App(logdir)
    assert "truncated" in assert_json_error(a.get("/attention", **base_params(example="1", step="10", head=None)), 404)
    assert a.get("/attention", **base_params(example="0", step="10", head=None)).status_code == 200




def test_unknown_versions_and_garbage_hide_only_themselves(logged, tmp_path, caplog):
    from tensorboard_plugin_attention import reader

    logdir = copy_logs(logged, tmp_path)
    good = App(logdir).plugin.entry(RequestContext(), "", "run1", "probes", "0", 10).index
    future = dict(good, version=99, step=99)
    write_index_record(logdir / "run1", "probes", "0", 99, fmt.encode_index(future))
    write_index_record(logdir / "run1", "probes", "v99", 1, fmt.encode_index(dict(good, version=99)),
                        json.dumps({"version": 99, "tag": "probes", "example": "v99"}).encode())
    write_index_record(logdir / "run1", "probes", "garbage", 2, b"\xff not json")
    write_index_record(logdir / "run1", "probes", "noasset", 3, json.dumps({"version": 1}).encode())
    # version 1 and an asset location, but not the fields the routes rely on
    for i, broken in enumerate([dict(good, kinds=[1, 2]), dict(good, kinds={}), dict(good, sequences=None),
                                dict(good, kinds={"encoder": dict(good["kinds"]["encoder"], layers="2")}),
                                dict(good, kinds={"encoder": dict(good["kinds"]["encoder"], heads=-1)}),
                                dict(good, kinds={"bogus": good["kinds"]["encoder"]}),
                                dict(good, asset=dict(good["asset"], offset="0"))]):
        write_index_record(logdir / "run1", "probes", f"broken{i}", 4, fmt.encode_index(broken))
    reader._warned.clear()
    with caplog.at_level(logging.WARNING):
        a = App(logdir)
        index = body_json(a.get("/index"))
        body_json(a.get("/index"))
    examples = {e["example"]: e for e in index["runs"][0]["tags"][0]["examples"]}
    assert sorted(examples) == ["0", "1"]
    assert examples["0"]["steps"] == list(STEPS)
    assert_json_error(a.get("/header", **base_params(step="99")), 404)
    assert_json_error(a.get("/header", **base_params(example="v99", step="1")), 404)
    assert a.get("/attention", **base_params(step="10", head=None)).status_code == 200
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("version 99" in w for w in warnings) == 2, warnings  # each unreadable thing once


def test_future_version_asset_record_is_404(logged, tmp_path, monkeypatch):
    """An index record we can read pointing at an asset record we cannot (newer version): 404, logged."""
    logdir = copy_logs(logged, tmp_path)
    a = App(logdir)
    real = fmt.upgrade_header

    def upgrade(header):
        if header.get("step") == 5 and "chunks" in header:
            header = dict(header, version=99)
        return real(header)

    monkeypatch.setattr(fmt, "upgrade_header", upgrade)
    assert "version 99" in assert_json_error(a.get("/attention", **base_params(step="5", head=None)), 404)
    assert a.get("/attention", **base_params(step="10", head=None)).status_code == 200


def test_truncated_event_file_serves_what_was_read(tmp_path):
    logdir = tmp_path / "logs"
    run = write_attention_run(logdir / "r", steps=range(6), layers=1, heads=1, tokens=5)
    (events,) = [p for p in (logdir / "r").iterdir() if p.name.startswith("events")]
    offsets, pos = [], 0
    for raw in event_file_loader.RawEventFileLoader(str(events)).Load():
        ev = event_pb2.Event.FromString(raw)
        if any(v.metadata.plugin_data.plugin_name == PLUGIN_NAME for v in ev.summary.value):
            offsets.append(pos)
        pos += len(raw) + 16  # TFRecord framing: length, its crc, data, data crc
    assert pos == events.stat().st_size and len(offsets) == 6
    with open(events, "r+b") as f:
        f.truncate(offsets[-1] + 40)  # cut into the last index record (step 5)
    a = App(logdir)
    index = body_json(a.get("/index"))
    steps = index["runs"][0]["tags"][0]["examples"][0]["steps"]
    assert steps == list(range(5))
    for step in steps:
        got = decode_layer(a.get("/attention", **base_params(run="r", step=str(step), layer="0", head=None)))
        assert np.abs(got - run.examples[("0", step)].attention[0]).max() <= ATTENTION_TOLERANCE
    assert_json_error(a.get("/attention", **base_params(run="r", step="5", layer="0", head=None)), 404)


def test_logdir_without_assets(logged):
    """A plugin whose logdir has no asset files (e.g. --logdir_spec) still lists, and 404s array requests."""
    a = App(logged[0])
    a.plugin._store.run_dir = reader.RunDirs("/nonexistent-logdir")
    assert a.get("/index").status_code == 200
    assert_json_error(a.get("/attention", **base_params(head=None)), 404)


@pytest.mark.parametrize("subdir,run_name", [("", "."), ("group/deep", "group/deep")])
def test_root_and_nested_runs(tmp_path, subdir, run_name):
    logdir = tmp_path / "logs"
    run = write_attention_run(logdir / subdir if subdir else logdir, steps=(4,), layers=1, heads=2, tokens=5)
    a = App(logdir)
    assert [r["run"] for r in body_json(a.get("/index"))["runs"]] == [run_name]
    got = decode_layer(a.get("/attention", **base_params(run=run_name, step="4", layer="0", head=None)))
    assert np.abs(got - run.examples[("0", 4)].attention[0]).max() <= ATTENTION_TOLERANCE


# ------------------------------------------------------------------------------------- index caching
class CountingProvider:
    def __init__(self, inner):
        self.inner = inner
        self.reads = 0
        self.lists = 0

    def read_tensors(self, *a, **kw):
        self.reads += 1
        return self.inner.read_tensors(*a, **kw)

    def list_tensors(self, *a, **kw):
        self.lists += 1
        return self.inner.list_tensors(*a, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_index_is_cached_between_requests(logged):
    provider = CountingProvider(make_provider(logged[0]))
    a = App(logged[0], provider=provider)
    for _ in range(3):
        assert a.get("/index").status_code == 200
    assert provider.reads == 2  # one per run, once
    for step in STEPS * 5:
        assert a.get("/attention", **base_params(step=str(step), head=None)).status_code == 200
    assert provider.reads == 2


def test_new_steps_appear(tmp_path):
    logdir = tmp_path / "logs"
    run = write_attention_run(logdir / "live", steps=(0, 1), layers=1, heads=1, tokens=4)
    provider = make_provider(logdir)
    a = App(logdir, provider=provider)
    assert body_json(a.get("/index"))["runs"][0]["tags"][0]["examples"][0]["steps"] == [0, 1]
    assert a.get("/attention", **base_params(run="live", step="1", layer="0", head=None)).status_code == 200
    write_attention_run(logdir / "live", steps=(2, 3), layers=1, heads=1, tokens=4, run=run)
    provider._multiplexer.Reload()
    # within the cache's TTL: a miss re-reads instead of 404
    got = decode_layer(a.get("/attention", **base_params(run="live", step="3", layer="0", head=None)))
    assert np.abs(got - run.examples[("0", 3)].attention[0]).max() <= ATTENTION_TOLERANCE
    assert body_json(a.get("/index"))["runs"][0]["tags"][0]["examples"][0]["steps"] == [0, 1, 2, 3]


def test_concurrent_requests(app, logged):
    errors_, run1 = [], logged[1]["run1"]

    def worker(i):
        try:
            for j in range(10):
                step = STEPS[(i + j) % len(STEPS)]
                resp = app.get("/attention", **base_params(step=str(step), layer=str(j % LAYERS), head=None))
                exp = run1.examples[("0", step)].attention[j % LAYERS]
                assert np.abs(decode_layer(resp) - exp).max() <= ATTENTION_TOLERANCE
        except Exception as e:  # pragma: no cover - reported below
            errors_.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors_


def test_lru_size_from_flag(logged):
    assert App(logged[0], attention_cache_mb=64).plugin._store.cache_bytes == 64 << 20
    assert App(logged[0], attention_cache_mb=0).plugin._store.cache_bytes == 0
    flags = make_flags(logged[0])
    del flags.attention_cache_mb  # app built without our loader's flags
    wsgi = application.TensorBoardWSGIApp(flags, [AttentionLoader()], make_provider(logged[0]))
    (p,) = [p for p in wsgi._plugins if p.plugin_name == PLUGIN_NAME]
    assert p._store.cache_bytes == plugin_mod.DEFAULT_CACHE_MB << 20


# ------------------------------------------------------------------------------------------- flags
def configure(*argv, **kwargs):
    from tensorboard import program
    from tensorboard.plugins.core import core_plugin

    tb = program.TensorBoard(plugins=[core_plugin.CorePluginLoader(), AttentionLoader()])
    tb.configure(argv=["tensorboard", "--logdir", "/tmp/x", *argv], **kwargs)
    return tb.flags


@pytest.mark.parametrize("argv,kwargs,expected", [
    ((), {}, {"attention": 0}),
    (("--samples_per_plugin=images=3",), {}, {"images": 3, "attention": 0}),
    (("--samples_per_plugin=attention=5,images=3",), {}, {"images": 3, "attention": 5}),
    (("--samples_per_plugin", "attention=0"), {}, {"attention": 0}),
    ((), {"samples_per_plugin": "attention=7, scalars=9"}, {"attention": 7, "scalars": 9}),
    ((), {"samples_per_plugin": "scalars=9"}, {"attention": 0, "scalars": 9}),
    ((), {"samples_per_plugin": {"attention": 2}}, {"attention": 2}),
    ((), {"samples_per_plugin": None}, {"attention": 0}),
])
def test_fix_flags_keeps_every_step_unless_user_chose(argv, kwargs, expected):
    assert configure(*argv, **kwargs).samples_per_plugin == expected


def test_cache_flag():
    assert configure().attention_cache_mb == 256
    assert configure("--attention_cache_mb", "32").attention_cache_mb == 32
    with pytest.raises(SystemExit):
        configure("--attention_cache_mb", "-1")


# ----------------------------------------------------------------------------------- MiniLM round trip
def test_minilm_round_trip_multiplexer(minilm_logs):
    """capture -> write -> read back through MultiplexerDataProvider: tokens, attention, q/k."""
    logdir, expected = minilm_logs
    a = App(logdir)
    check_minilm(lambda route, **p: _werkzeug_fetch(a, route, **p), expected)


def _werkzeug_fetch(a, route, **params):
    resp = a.get(route, **params)
    return resp.status_code, dict(resp.headers), body_bytes(resp)


# ------------------------------------------------------------------------- across training: metrics
from tensorboard_plugin_attention import metrics as metrics_mod  # noqa: E402
from tensorboard_plugin_attention.summary import AttentionWriter, log_attention  # noqa: E402
from conftest import softmax_attention  # noqa: E402

BROWSER = {"Accept-Encoding": "gzip, deflate, br, zstd"}


def expected_metrics(ex, causal=None):
    """What the writer stores: metrics.layer_metrics of the logged attention, NaN as None."""
    values = metrics_mod.layer_metrics(ex.attention, ex.tokens, causal=causal)
    return {name: [[None if not np.isfinite(v) else float(v) for v in row] for row in arr]
            for name, arr in values.items()}


def assert_grid_close(got, want, atol=1e-6):
    assert len(got) == len(want)
    for grow, wrow in zip(got, want):
        assert len(grow) == len(wrow)
        for g, w in zip(grow, wrow):
            assert (g is None) == (w is None), (got, want)
            if w is not None:
                assert abs(g - w) <= atol, (g, w)


def test_metrics_every_step(app, logged):
    run1 = logged[1]["run1"]
    for example in ("0", "1"):
        for kind in (None, "encoder"):
            resp = app.get("/metrics", run="run1", tag="probes", example=example, kind=kind)
            assert resp.status_code == 200 and resp.mimetype == "application/json"
            body = body_json(resp)
            assert body["steps"] == list(STEPS)
            assert list(body["kinds"]) == ["encoder"]
            by_name = body["kinds"]["encoder"]
            assert list(by_name) == list(metrics_mod.METRIC_NAMES)
            for i, step in enumerate(STEPS):
                want = expected_metrics(run1.examples[(example, step)])
                header = body_json(app.get("/header", **base_params(example=example, step=str(step))))
                for name in metrics_mod.METRIC_NAMES:
                    assert by_name[name][i] == header["metrics"]["encoder"][name]  # as stored
                    assert_grid_close(by_name[name][i], want[name])  # = numpy on what was logged
                    assert len(by_name[name][i]) == LAYERS and len(by_name[name][i][0]) == HEADS
            assert all(v is None for row in by_name["induction"][0] for v in row)  # no repeated token: NaN


def test_metrics_need_no_asset_reads(logged, tmp_path):
    logdir = copy_logs(logged, tmp_path)
    shutil.rmtree(logdir / "run1" / "plugins")
    a = App(logdir)
    assert body_json(a.get("/metrics", run="run1", tag="probes", example="1"))["steps"] == list(STEPS)


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory):
    """An encoder-decoder run: encoder 6 tokens, decoder 4 (causal), cross 4x6; steps 0 and 1; 2 layers x 2 heads.
    Example "nometrics" was logged with metrics=False."""
    root = tmp_path_factory.mktemp("seq2seq")
    rng = np.random.default_rng(11)
    enc_tokens, dec_tokens = ["<s>", "a", "b", "a", "b", "</s>"], ["<pad>", "x", "y", "x"]
    logged_ = {}
    with AttentionWriter(str(root / "s2s")) as w:
        for step in (0, 1):
            att = {"encoder": [softmax_attention(rng, 2, 6, 6) for _ in range(2)],
                   "decoder": [softmax_attention(rng, 2, 4, 4, causal=True) for _ in range(2)],
                   "cross": [softmax_attention(rng, 2, 4, 6) for _ in range(2)]}
            log_attention(w, "probes", att, enc_tokens, step, example="0", decoder_tokens=dec_tokens)
            log_attention(w, "probes", att, enc_tokens, step, example="nometrics", decoder_tokens=dec_tokens,
                          metrics=False)
            logged_[step] = att
    return root, logged_, enc_tokens, dec_tokens


def test_metrics_of_every_kind(seq2seq):
    root, att, enc_tokens, dec_tokens = seq2seq
    a = App(root)
    body = body_json(a.get("/metrics", run="s2s", tag="probes", example="0"))
    assert body["steps"] == [0, 1]
    assert list(body["kinds"]) == ["encoder", "decoder", "cross"]
    for i, step in enumerate((0, 1)):
        for kind, tokens in (("encoder", enc_tokens), ("decoder", dec_tokens)):
            want = metrics_mod.layer_metrics(att[step][kind], tokens)
            for name, arr in want.items():
                assert_grid_close(body["kinds"][kind][name][i],
                                  [[None if not np.isfinite(v) else v for v in row] for row in arr])
        cross = metrics_mod.layer_metrics(att[step]["cross"])
        assert_grid_close(body["kinds"]["cross"]["sink"][i], cross["sink"].tolist())
        assert all(v is None for row in body["kinds"]["cross"]["distance"][i] for v in row)
    # the encoder sequence repeats "a b": induction is defined there
    assert any(v is not None for row in body["kinds"]["encoder"]["induction"][0] for v in row)
    only = body_json(a.get("/metrics", run="s2s", tag="probes", example="0", kind="cross"))
    assert list(only["kinds"]) == ["cross"] and only["kinds"]["cross"] == body["kinds"]["cross"]
    none = body_json(a.get("/metrics", run="s2s", tag="probes", example="nometrics"))
    assert none == {"steps": [0, 1], "kinds": {"encoder": {}, "decoder": {}, "cross": {}}}


def test_metrics_missing_kind_and_malformed_grids(logged, tmp_path):
    logdir = copy_logs(logged, tmp_path)
    good = App(logdir).plugin.entry(RequestContext(), "", "run1", "probes", "0", 10).index
    m = good["metrics"]["encoder"]
    bad = dict(good, step=20, metrics={"encoder": dict(m, entropy="bad", sink=m["sink"][:1],
                                                       distance=[[1.0, "x", True]] * LAYERS, extra=m["prev_token"])})
    write_index_record(logdir / "run1", "probes", "0", 20, fmt.encode_index(bad))
    write_index_record(logdir / "run1", "probes", "0", 30, fmt.encode_index(dict(good, step=30, metrics=[1])))
    a = App(logdir)
    body = body_json(a.get("/metrics", run="run1", tag="probes", example="0"))
    assert body["steps"] == [*STEPS, 20, 30]
    enc = body["kinds"]["encoder"]
    assert list(enc) == [*metrics_mod.METRIC_NAMES, "extra"]
    assert enc["entropy"][3] is None and enc["sink"][3] is None  # malformed grids: unavailable
    assert enc["distance"][3] == [[1.0, None, None]] * LAYERS  # non-numbers are null
    assert enc["prev_token"][3] == m["prev_token"] and enc["extra"][3] == m["prev_token"]
    assert enc["extra"][:3] == [None] * 3
    assert all(enc[n][4] is None for n in enc)  # metrics not a dict
    assert enc["entropy"][2] == m["entropy"]


_METRICS_BAD = [("run", None, 400), ("run", "", 400), ("run", "nope", 404), ("run", "../run1", 404),
                ("tag", None, 400), ("tag", "nope", 404), ("tag", "probes/0", 404),
                ("example", None, 400), ("example", "7", 404), ("example", "../0", 404),
                ("kind", "decoder", 404), ("kind", "bogus", 404), ("kind", "__class__", 404)]


@pytest.mark.parametrize("name,value,status", _METRICS_BAD, ids=[f"{n}-{v!r}" for n, v, _ in _METRICS_BAD])
def test_metrics_bad_parameter(app, name, value, status):
    params = dict(run="run1", tag="probes", example="0")
    if value is None:
        params.pop(name)
    else:
        params[name] = value
    assert_json_error(app.get("/metrics", **params), status)


# ---------------------------------------------------------------------- across training: divergence
def div_params(**kw):
    p = dict(run="run1", tag="probes", example="0", kind="encoder", step_a="0", step_b="10")
    p.update(kw)
    return p


def test_divergence_values(app, logged):
    run1 = logged[1]["run1"]
    for example in ("0", "1"):
        for a_step, b_step in ((0, 10), (5, 10), (0, 5)):
            body = body_json(app.get("/divergence", **div_params(example=example, step_a=str(a_step),
                                                                 step_b=str(b_step))))
            assert body["unit"] == "nats" and body["max"] == pytest.approx(np.log(2)) and body["same_tokens"] is True
            js = np.array(body["js"], dtype=np.float64)
            assert js.shape == (LAYERS, HEADS)
            for layer in range(LAYERS):
                # exactly metrics.jensen_shannon on the decoded layers the plugin serves ...
                da = decode_layer(app.get("/attention", **base_params(example=example, step=str(a_step),
                                                                        layer=str(layer), head=None)))
                db = decode_layer(app.get("/attention", **base_params(example=example, step=str(b_step),
                                                                        layer=str(layer), head=None)))
                want = np.array([metrics_mod.jensen_shannon(da[h], db[h]) for h in range(HEADS)])
                np.testing.assert_allclose(js[layer], want, rtol=1e-9, atol=1e-12)
                # ... and close to it on what was logged (the codec's error)
                logged_js = np.array([metrics_mod.jensen_shannon(run1.examples[(example, a_step)].attention[layer][h],
                                                                 run1.examples[(example, b_step)].attention[layer][h])
                                      for h in range(HEADS)])
                np.testing.assert_allclose(js[layer], logged_js, atol=0.01)
            assert ((js > 0) & (js <= np.log(2))).all()


def test_divergence_symmetric_cached_and_zero_for_one_step(logged, monkeypatch):
    a = App(logged[0])
    calls = []
    real = metrics_mod.jensen_shannon_codes
    monkeypatch.setattr(metrics_mod, "jensen_shannon_codes", lambda x, y, lut: calls.append(1) or real(x, y, lut))
    first = body_json(a.get("/divergence", **div_params()))
    assert len(calls) == LAYERS
    swapped = body_json(a.get("/divergence", **div_params(step_a="10", step_b="0")))
    gz = body_json(a.get("/divergence", headers=BROWSER, **div_params()))
    assert first == swapped == gz and len(calls) == LAYERS  # cached, steps symmetric
    same = body_json(a.get("/divergence", **div_params(step_a="5", step_b="5")))
    assert same["js"] == [[0.0] * HEADS] * LAYERS


def test_divergence_shapes_and_tokens(tmp_path):
    logdir = tmp_path / "logs"
    rng = np.random.default_rng(3)
    with AttentionWriter(str(logdir / "r")) as w:
        log_attention(w, "p", [softmax_attention(rng, 2, 5, 5)], ["a", "b", "c", "d", "e"], 0, example="x")
        log_attention(w, "p", [softmax_attention(rng, 2, 5, 5)], ["a", "b", "X", "d", "e"], 1, example="x")
        log_attention(w, "p", [softmax_attention(rng, 2, 6, 6)], ["a", "b", "c", "d", "e", "f"], 2, example="x")
        log_attention(w, "p", [softmax_attention(rng, 3, 5, 5)], ["a", "b", "c", "d", "e"], 3, example="x")
    a = App(logdir)
    p = dict(run="r", tag="p", example="x", kind="encoder")
    body = body_json(a.get("/divergence", **p, step_a="0", step_b="1"))
    assert body["same_tokens"] is False and np.array(body["js"]).shape == (1, 2)  # same shape: compared
    for other in ("2", "3"):
        msg = assert_json_error(a.get("/divergence", **p, step_a="0", step_b=other), 400)
        assert "tokens changed" in msg


_DIV_BAD = ([(n, v, s) for n, v, s in _METRICS_BAD if n != "kind"]
            + [("kind", None, 400), ("kind", "", 400), ("kind", "decoder", 404), ("kind", "bogus", 404)]
            + [(s, v, st) for s in ("step_a", "step_b") for v, st in
               ((None, 400), ("", 400), ("abc", 400), ("1.5", 400), ("+5", 400), (" 5", 400), ("9" * 40, 400),
                ("-1", 404), ("6", 404), ("99999999999", 404))])


@pytest.mark.parametrize("name,value,status", _DIV_BAD, ids=[f"{n}-{v!r}" for n, v, _ in _DIV_BAD])
def test_divergence_bad_parameter(app, name, value, status):
    params = div_params()
    if value is None:
        params.pop(name)
    else:
        params[name] = value
    assert_json_error(app.get("/divergence", **params), status)


def test_divergence_unreadable_asset_is_404(logged, tmp_path):
    logdir = copy_logs(logged, tmp_path)
    a = App(logdir)
    rec = record_of(a, "run1", "0", 10)
    off, length, _ = rec.chunk("encoder", "attention", 1, 0)
    flip(rec.path, rec.data_offset + off + length // 2)
    a = App(logdir)
    assert "checksum" in assert_json_error(a.get("/divergence", **div_params()), 404)
    assert a.get("/divergence", **div_params(step_b="5")).status_code == 200


# ------------------------------------------------------------------------- across training: rollout
def roll_params(**kw):
    p = dict(run="run1", tag="probes", example="0", step="5", kind="encoder")
    p.update(kw)
    return p


@pytest.mark.parametrize("residual,fusion", [(None, None), ("0.5", "mean"), ("0", "max"), ("0.25", "min"),
                                             ("1", "mean"), (".9", "max")])
def test_rollout_values(logged, residual, fusion):
    a = App(logged[0])
    run1 = logged[1]["run1"]
    for example, step in (("0", 5), ("1", 10)):
        resp = a.get("/rollout", **roll_params(example=example, step=str(step), residual=residual, fusion=fusion))
        assert resp.status_code == 200 and resp.mimetype == "application/octet-stream"
        assert resp.headers["X-Attention-Shape"] == f"1,{TOKENS},{TOKENS}"
        got = decode_layer(resp)
        assert got.shape == (1, TOKENS, TOKENS)
        kw = dict(residual=float(residual or 0.5), head_fusion=fusion or "mean")
        decoded = [decode_layer(a.get("/attention", **base_params(example=example, step=str(step), layer=str(l),
                                                                  head=None))) for l in range(LAYERS)]
        want = metrics_mod.rollout(decoded, **kw)  # numpy on the layers the plugin serves: within the codec
        assert np.abs(got[0] - want).max() <= ATTENTION_TOLERANCE
        np.testing.assert_array_equal(decode_layer(a.get("/rollout", headers=BROWSER, **roll_params(
            example=example, step=str(step), residual=residual, fusion=fusion))), got)  # gzipped: same
        logged_want = metrics_mod.rollout(run1.examples[(example, step)].attention, **kw)
        assert np.abs(got[0] - logged_want).max() <= 0.02  # and close to numpy on what was logged
        np.testing.assert_allclose(got[0].sum(-1), 1.0, atol=0.03)
        if residual == "1":
            np.testing.assert_array_equal(got[0], np.eye(TOKENS))


def test_rollout_cached(logged, monkeypatch):
    a = App(logged[0])
    calls = []
    real = metrics_mod.rollout
    monkeypatch.setattr(metrics_mod, "rollout", lambda *x, **k: calls.append(1) or real(*x, **k))
    first = a.get("/rollout", **roll_params()).get_data()
    assert a.get("/rollout", **roll_params(residual="0.50", fusion="mean")).get_data() == first
    assert len(calls) == 1
    a.get("/rollout", **roll_params(residual="0.4"))
    assert len(calls) == 2


def test_rollout_of_decoder_and_not_cross(seq2seq):
    root, att, _, _ = seq2seq
    a = App(root)
    p = dict(run="s2s", tag="probes", example="0", step="1")
    got = decode_layer(a.get("/rollout", **p, kind="decoder"))
    assert got.shape == (1, 4, 4)
    assert np.abs(got[0] - metrics_mod.rollout(att[1]["decoder"])).max() <= 0.02
    assert np.abs(np.triu(got[0], 1)).max() <= ATTENTION_TOLERANCE  # causal stays causal
    assert a.get("/rollout", **p, kind="encoder").status_code == 200
    assert "self-attention" in assert_json_error(a.get("/rollout", **p, kind="cross"), 400)


_ROLL_BAD = ([(n, v, s) for n, v, s in _METRICS_BAD if n != "kind"]
             + [("step", None, 400), ("step", "x", 400), ("step", "6", 404),
                ("kind", None, 400), ("kind", "", 400), ("kind", "decoder", 404), ("kind", "cross", 400),
                ("kind", "bogus", 404)]
             + [("residual", v, 400) for v in ("1.5", "-0.1", "nan", "inf", "1e-1", "0.5 ", "abc", "+0.5", "2",
                                              "0,5", "5" * 10, "0x1", "½")]
             + [("fusion", v, 400) for v in ("avg", "MEAN", "mean ", "sum", "__class__")])


@pytest.mark.parametrize("name,value,status", _ROLL_BAD, ids=[f"{n}-{v!r}" for n, v, _ in _ROLL_BAD])
def test_rollout_bad_parameter(app, name, value, status):
    params = roll_params()
    if value is None:
        params.pop(name)
    else:
        params[name] = value
    assert_json_error(app.get("/rollout", **params), status)


def test_rollout_unreadable_asset_is_404(logged, tmp_path):
    logdir = copy_logs(logged, tmp_path)
    shutil.rmtree(logdir / "run1" / "plugins")
    assert "FileNotFoundError" in assert_json_error(App(logdir).get("/rollout", **roll_params()), 404)


# ------------------------------------------------------------------ stored chunks served as they are
def legacy_chunks(monkeypatch):
    """Write as before compress_chunk existed: plain zlib.compress (no sync flush)."""
    monkeypatch.setattr(fmt, "compress_chunk", lambda data, level=1: zlib.compress(data, level))


@pytest.fixture(scope="module")
def encodings_logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("encodings")
    new = write_attention_run(root / "new", steps=(0,), layers=2, heads=4, tokens=50)
    mp = pytest.MonkeyPatch()
    legacy_chunks(mp)
    try:
        old = write_attention_run(root / "old", steps=(0,), layers=2, heads=4, tokens=50, seed=5)
    finally:
        mp.undo()
    return root, {"new": new, "old": old}


@pytest.mark.parametrize("run", ["new", "old"])
@pytest.mark.parametrize("accept,full,single", [
    ("gzip, deflate, br, zstd", {"new": "deflate", "old": "gzip"}, "deflate"),
    ("deflate", {"new": "deflate", "old": "deflate"}, "deflate"),
    ("gzip", {"new": "gzip", "old": "gzip"}, "gzip"),
    ("gzip, deflate;q=0", {"new": "gzip", "old": "gzip"}, "gzip"),
    ("deflate;q=0.5, gzip", {"new": "deflate", "old": "gzip"}, "deflate"),
    ("identity", {"new": None, "old": None}, None),
    ("", {"new": None, "old": None}, None),
])
def test_encodings_of_stored_chunks(encodings_logs, run, accept, full, single):
    root, runs = encodings_logs
    a = App(root)
    rec = record_of(a, run, "0", 0)
    p = base_params(run=run, step="0", layer="1", head=None)
    for params, want_enc, stored in (
            (p, full[run], None),
            (dict(p, head="2"), single, rec.chunk("encoder", "attention", 1, 2)),
            ({k: v for k, v in p.items() if k not in ("layer", "head")}, single, rec.chunk("encoder", "overview"))):
        route = "/overview" if "layer" not in params else "/attention"
        plain = a.get(route, **params)
        for _ in range(2):  # cold, then from the encoded-body cache
            resp = a.get(route, headers={"Accept-Encoding": accept}, **params)
            assert resp.status_code == 200
            assert resp.headers.get("Content-Encoding") == want_enc, (route, params)
            assert resp.headers["X-Attention-Shape"] == plain.headers["X-Attention-Shape"]
            data = resp.get_data()
            raw = {"deflate": zlib.decompress, "gzip": gzip.decompress, None: bytes}[want_enc](data)
            assert raw == plain.get_data()
            if stored is not None and want_enc == "deflate":
                with open(rec.path, "rb") as f:  # one head / the overview: the stored chunk, byte for byte
                    f.seek(rec.data_offset + stored[0])
                    assert data == f.read(stored[1])
    want = runs[run].examples[("0", 0)].attention[1]
    assert np.abs(decode_layer(a.get("/attention", **p)) - want).max() <= ATTENTION_TOLERANCE


def test_spliced_layer_is_small(encodings_logs):
    """Splicing per-head streams costs little against compressing the whole layer at once (a few bytes per
    head, and a little context across heads: ~2% at 50 tokens, nothing measurable at 2048)."""
    a = App(encodings_logs[0])
    p = base_params(run="new", step="0", layer="0", head=None)
    deflated = a.get("/attention", headers={"Accept-Encoding": "deflate"}, **p).get_data()
    gzipped = a.get("/attention", headers={"Accept-Encoding": "gzip"}, **p).get_data()
    plain = a.get("/attention", **p).get_data()
    assert len(deflated) <= 1.05 * len(zlib.compress(plain, 1)) + 16 * 4 and len(gzipped) <= len(deflated) + 20


@pytest.mark.parametrize("accept", ["gzip, deflate, br, zstd", "gzip", "deflate", ""])
def test_damage_under_every_encoding(logged, tmp_path, accept):
    logdir = copy_logs(logged, tmp_path)
    a = App(logdir)
    rec = record_of(a, "run1", "0", 5)
    off, length, _ = rec.chunk("encoder", "attention", 1, 0)
    flip(rec.path, rec.data_offset + off + length // 2)
    good = a.plugin.entry(RequestContext(), "", "run1", "probes", "0", 10).index
    shape_lie = dict(good, step=20, kinds={"encoder": dict(good["kinds"]["encoder"], heads=HEADS - 1)})
    write_index_record(logdir / "run1", "probes", "0", 20, fmt.encode_index(shape_lie))
    a = App(logdir)
    h = {"Accept-Encoding": accept}
    assert "checksum" in assert_json_error(a.get("/attention", headers=h, **base_params(head=None)), 404)
    assert a.get("/attention", headers=h, **base_params(layer="0", head=None)).status_code == 200
    for route, params in (("/attention", base_params(step="20", head=None)),
                          ("/attention", base_params(step="20", head="0")),
                          ("/overview", base_params(step="20"))):
        assert "differs from its index record" in assert_json_error(a.get(route, headers=h, **params), 404)


def test_adler32_combine():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x, y = (bytes(rng.integers(0, 256, size=int(rng.integers(0, 70000)), dtype=np.uint8)) for _ in range(2))
        assert web.adler32_combine(zlib.adler32(x), zlib.adler32(y), len(y)) == zlib.adler32(x + y)


def test_fix_flags_polls_every_event_file_unless_user_chose():
    assert configure().reload_multifile is True
    assert configure("--reload_multifile=false").reload_multifile is False


# ------------------------------------------------------------------------------- hardening (issue 10)
def test_experiment_ids_do_not_grow_memory(logged):
    """Any client names an experiment id (URL or header): index snapshots are bounded (before: one per id,
    60 ids took TensorBoard from 111 to 542 MB)."""
    a = App(logged[0])
    for i in range(60):
        resp = a.raw(f"/experiment/exp{i}{PREFIX}/index")
        assert resp.status_code == 200 and len(body_json(resp)["runs"]) == 2
    assert len(a.plugin._index._snapshots._items) == reader.MAX_EXPERIMENTS < 60
    # and every snapshot shares the runs' index (the local providers ignore experiment ids): one copy
    for run in ("run1", "run2"):
        snapshots = [value[1] for value, _cost in a.plugin._index._snapshots._items.values()]
        assert len({id(runs[run]) for runs in snapshots}) == 1
    assert len(a.plugin._run_jsons) == 2


def test_concurrent_first_reads_of_a_layer_decode_it_once(logged, monkeypatch):
    """20 clients asking for the same cold layer at once: one read and one decode, the others wait for it
    (before: each decoded it, 1.3 GB peak for a large layer)."""
    a = App(logged[0])
    decodes, start = [], threading.Barrier(20)
    real = fmt.decode_codes

    def slow_decode(data, shape):
        decodes.append(1)
        time.sleep(0.01)
        return real(data, shape)

    monkeypatch.setattr(fmt, "decode_codes", slow_decode)
    results = []

    def client():
        start.wait()
        results.append(a.plugin.attention_impl(RequestContext(), "", "run1", "probes", "0", 5, "encoder", 1))

    threads = [threading.Thread(target=client) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20 and all(r is results[0] for r in results)
    assert len(decodes) == HEADS  # one layer of HEADS chunks, decoded once


_SHORT_WRITE_RUN = r'''
import os, resource, signal, sys
sys.path.insert(0, sys.argv[2])
from conftest import make_example
from tensorboard_plugin_attention import AttentionWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
run = sys.argv[1]
with AttentionWriter(run, background=False) as w:
    for step in range(5):
        ex = make_example((step,), layers=2, heads=2, tokens=6 + step)
        if step == 2:  # the asset file may grow by 100 bytes only: this record is cut short
            w.flush()  # the limit is per process: steps 0 and 1's index records must be on disk before it
            (asset,) = os.listdir(os.path.join(run, "plugins", "attention"))
            size = os.path.getsize(os.path.join(run, "plugins", "attention", asset))
            resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, resource.RLIM_INFINITY))
        try:
            w.add_attention("probes", ex.attention, ex.tokens, step)
        except (OSError, RuntimeError) as e:
            print("step", step, "failed:", e)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
'''


def test_failed_write_never_serves_another_steps_data(tmp_path):
    """A record cut short by a full disk / file-size limit: the writer says so, and every later step is
    served with its own values (before: later records were indexed at offsets inside the torn one)."""
    import subprocess
    import sys
    from conftest import make_example
    from tensorboard_plugin_attention.reader import read_attention

    run = tmp_path / "logs" / "r"
    out = subprocess.run([sys.executable, "-c", _SHORT_WRITE_RUN, str(run), os.path.dirname(__file__)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "step 2 failed" in out.stdout and "File too large" in out.stdout
    assert "step 3" not in out.stdout and "step 4" not in out.stdout, out.stdout
    a = App(tmp_path / "logs")
    assert body_json(a.get("/index"))["runs"][0]["tags"][0]["examples"][0]["steps"] == [0, 1, 3, 4]
    for step in (0, 1, 3, 4):
        want = make_example((step,), layers=2, heads=2, tokens=6 + step).attention
        for layer in range(2):
            got = decode_layer(a.get("/attention", **base_params(run="r", step=str(step), layer=str(layer), head=None)))
            assert np.abs(got - want[layer]).max() <= ATTENTION_TOLERANCE
    assert [e.step for e in read_attention(tmp_path / "logs", queries_keys=False)] == [0, 1, 3, 4]


def test_index_reports_unreadable_records_and_newer_versions(logged, tmp_path):
    logdir = copy_logs(logged, tmp_path)
    good = App(logdir).plugin.entry(RequestContext(), "", "run1", "probes", "0", 10).index
    write_index_record(logdir / "run1", "probes", "v99", 1, fmt.encode_index(dict(good, example="v99", version=99)),
                        json.dumps({"version": 99, "tag": "probes", "example": "v99"}).encode())
    huge = dict(good, step=11, kinds={"encoder": dict(good["kinds"]["encoder"], layers=10**9)})
    write_index_record(logdir / "run1", "probes", "0", 11, fmt.encode_index(huge))
    write_index_record(logdir / "run1", "probes", "0", 12, fmt.encode_index(dict(good, version=True, step=12)))
    index = body_json(App(logdir).get("/index"))
    by_tag = {(u["run"], u["tag"]): u for u in index["unreadable"]}
    assert by_tag[("run1", "probes/v99")]["newer_version"] is True
    assert "upgrade the plugin" in by_tag[("run1", "probes/v99")]["reason"]
    assert by_tag[("run1", "probes/0")]["newer_version"] is False
    assert "layers is not a count" in by_tag[("run1", "probes/0")]["reason"]
    steps = {e["example"]: e["steps"] for e in index["runs"][0]["tags"][0]["examples"]}
    assert steps == {"0": list(STEPS), "1": list(STEPS)}  # 11 (layers 10**9) and 12 (version true) hidden


def test_crafted_chunk_length_is_404_not_500(logged, tmp_path):
    """A chunk table entry of 2**40 bytes with a valid header CRC (crafted): 404, nothing allocated."""
    logdir = copy_logs(logged, tmp_path)
    rec = record_of(App(logdir), "run1", "0", 5)
    header = dict(rec.header)
    header["chunks"]["encoder"]["attention"][1][2][1] = 2**40
    head = json.dumps(header, separators=(",", ":")).encode()
    with open(rec.path, "r+b") as f:
        raw = bytearray(f.read())
    start, end = rec.offset, rec.data_offset
    frame = fmt._FRAME.pack(fmt.MAGIC, len(head), fmt.crc32c(head))
    raw[start:end] = frame + head  # same chunks after it; the chunk offsets are relative to the header's end
    with open(rec.path, "wb") as f:
        f.write(bytes(raw))
    a = App(logdir)
    for h in ({}, {"Accept-Encoding": "deflate"}):
        assert "truncated" in assert_json_error(a.get("/attention", headers=h, **base_params(head="2")), 404)
        assert_json_error(a.get("/attention", headers=h, **base_params(head=None)), 404)
    assert a.get("/attention", **base_params(head="1")).status_code == 200


def test_relogged_step_gets_a_new_revision(tmp_path):
    """/index names each step's revision; re-logging a step (restarted training) changes it, so the tab's
    caches keyed by it never show the old arrays."""
    logdir = tmp_path / "logs"
    write_attention_run(logdir / "r", steps=(0, 1), layers=1, heads=1, tokens=4, seed=1)
    provider = make_provider(logdir)
    a = App(logdir, provider=provider)
    (ex,) = body_json(a.get("/index"))["runs"][0]["tags"][0]["examples"]
    assert len(ex["revisions"]) == 2 and len(set(ex["revisions"])) == 2
    again = write_attention_run(logdir / "r", steps=(1,), layers=1, heads=1, tokens=4, seed=9)
    provider._multiplexer.Reload()
    (ex2,) = body_json(a.get("/index"))["runs"][0]["tags"][0]["examples"]
    assert ex2["steps"] == [0, 1] and ex2["revisions"][0] == ex["revisions"][0] != ex2["revisions"][1] != ex["revisions"][1]
    got = decode_layer(a.get("/attention", **base_params(run="r", step="1", layer="0", head=None)))
    assert np.abs(got - again.examples[("0", 1)].attention[0]).max() <= ATTENTION_TOLERANCE
