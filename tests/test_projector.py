"""q/k in TensorBoard's Projector (``projector.py``, ``tensorboard-attention project``): the files are read back
through TensorBoard's own projector plugin (its /runs, /projector_config, /tensor and /metadata routes over the
logdir) and compared with what was logged."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from werkzeug.test import Client

from conftest import write_attention_run
from tensorboard.backend.event_processing import data_provider as mdp
from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
from tensorboard.plugins import base_plugin
from tensorboard.plugins.projector import projector_plugin
from tensorboard_plugin_attention import projector
from tensorboard_plugin_attention.__main__ import main
from tensorboard_plugin_attention.metadata import PLUGIN_NAME
from tensorboard_plugin_attention.summary import AttentionWriter, log_attention

LAYERS, HEADS, TOKENS, D = 2, 3, 6, 4


class Projector:
    """TensorBoard's projector plugin over ``logdir`` (as ``tensorboard --logdir`` loads it)."""

    def __init__(self, logdir):
        m = pem.EventMultiplexer(tensor_size_guidance={PLUGIN_NAME: 0})
        m.AddRunsFromDirectory(str(logdir))
        m.Reload()
        ctx = base_plugin.TBContext(logdir=str(logdir), data_provider=mdp.MultiplexerDataProvider(m, str(logdir)))
        self.plugin = projector_plugin.ProjectorPlugin(ctx)
        self.apps = self.plugin.get_plugin_apps()

    def get(self, route, **params):
        resp = Client(self.apps[route]).get("/", query_string=params)
        assert resp.status_code == 200, (route, resp.get_data()[:300])
        return resp.get_data()

    def tensor(self, run, name, shape):
        return np.frombuffer(self.get("/tensor", run=run, name=name), np.float32).reshape(shape)

    def metadata(self, run, name):
        return [line.split("\t") for line in self.get("/metadata", run=run, name=name).decode("utf-8").splitlines()]


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    run = write_attention_run(root / "run1", steps=(0, 5, 9), examples=("0", "1", "2"), layers=LAYERS, heads=HEADS,
                              tokens=TOKENS, qk_steps=(0, 5))
    return root, run


def logged_qk(run, examples, step, layer, head):
    """What the plugin stores: float16 q/k, widened."""
    q = [run.examples[(x, step)].queries[layer][head].astype(np.float16).astype(np.float32) for x in examples]
    k = [run.examples[(x, step)].keys[layer][head].astype(np.float16).astype(np.float32) for x in examples]
    return np.concatenate(q), np.concatenate(k)


def test_command_writes_what_the_projector_plugin_serves(logs, capsys):
    root, run = logs
    assert main(["project", str(root), "--run", "run1", "--tag", "probes", "--head", "1.2", "--head", "0.1",
                 "--example", "2", "--example", "0", "--raw"]) == 0
    assert "Projector" in capsys.readouterr().out
    assets = root / "run1" / projector.PROJECTOR_ASSETS
    assert (assets / "projector_config.pbtxt").is_file()
    p = Projector(root)
    assert "run1" in json.loads(p.get("/runs"))
    config = json.loads(p.get("/info", run="run1"))
    names = [e["tensorName"] for e in config["embeddings"]]
    assert names == ["probes/encoder L1 H2 step 5", "probes/encoder L0 H1 step 5"]  # latest step with q/k
    n = 2 * TOKENS
    for (layer, head), name in zip(((1, 2), (0, 1)), names):
        emb = next(e for e in config["embeddings"] if e["tensorName"] == name)
        assert [int(x) for x in emb["tensorShape"]] == [2 * n, D]
        got = p.tensor("run1", name, (2 * n, D))
        q, k = logged_qk(run, ("2", "0"), 5, layer, head)
        np.testing.assert_array_equal(got, np.concatenate([q, k]))
        meta = p.metadata("run1", name)
        assert meta[0] == list(projector.METADATA_COLUMNS)
        rows = meta[1:]
        assert len(rows) == 2 * n
        tokens = run.examples[("2", 5)].tokens
        assert rows[0] == [tokens[0], "0", "2", "q", "5"]
        assert rows[TOKENS + 3] == [run.examples[("0", 5)].tokens[3], "3", "0", "q", "5"]
        assert rows[n + 1] == [tokens[1], "1", "2", "k", "5"]
        assert [r[3] for r in rows] == ["q"] * n + ["k"] * n


def test_normalized_vectors_keep_every_attention_weight(logs, tmp_path):
    root, run = logs
    out = tmp_path / "out"
    path = projector.export_projector(str(root), run="run1", tag="probes", heads=[(0, 0)], step=0, examples=["1"],
                                      out_dir=str(out))
    assert path == str(out / "projector_config.pbtxt")
    values = np.loadtxt(out / "probes_encoder_L0_H0_step_0.tsv", delimiter="\t")
    qn, kn = values[:TOKENS], values[TOKENS:]
    q, k = logged_qk(run, ("1",), 0, 0, 0)

    def softmax(s):
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    np.testing.assert_allclose(softmax(qn @ kn.T), softmax(q @ k.T), atol=1e-5)
    np.testing.assert_allclose(qn.mean(0), kn.mean(0), atol=1e-5)  # keys moved onto the queries' mean
    s = np.sqrt(np.linalg.norm(k, axis=1).mean() / np.linalg.norm(q, axis=1).mean())
    np.testing.assert_allclose(qn, q * s, atol=1e-5)  # queries scaled so that both mean norms are equal


def test_untrusted_tokens_and_merged_config(tmp_path):
    toks = ["a\tb", "line\nbreak", "back\\slash", "ü", ""]
    rng = np.random.default_rng(0)
    with AttentionWriter(str(tmp_path / "r")) as w:
        att = [np.full((2, 5, 5), 0.2, np.float32)]
        log_attention(w, "t", att, toks, 3, queries=[rng.normal(size=(2, 5, 4)).astype(np.float32)],
                      keys=[rng.normal(size=(2, 5, 4)).astype(np.float32)])
    projector.export_projector(str(tmp_path), run="r", tag="t", heads=[(0, 1)], normalize=False)
    projector.export_projector(str(tmp_path), run="r", tag="t", heads=[(0, 0), (0, 1)], normalize=False)
    p = Projector(tmp_path)
    config = json.loads(p.get("/info", run="r"))
    assert sorted(e["tensorName"] for e in config["embeddings"]) == ["t/encoder L0 H0 step 3", "t/encoder L0 H1 step 3"]
    rows = p.metadata("r", "t/encoder L0 H1 step 3")[1:]
    assert len(rows) == 10 and all(len(r) == 5 for r in rows)
    assert [r[0] for r in rows[:5]] == ["a\\tb", "line\\nbreak", "back\\\\slash", "ü", ""]


def test_bad_requests_say_what_to_fix(logs, tmp_path, capsys):
    root, _ = logs
    cases = [
        (["--run", "nope", "--tag", "probes", "--head", "0.0"], "unknown run"),
        (["--run", "run1", "--tag", "nope", "--head", "0.0"], "no attention tag"),
        (["--run", "run1", "--tag", "probes", "--head", "5.0"], "outside the 2 x 3"),
        (["--run", "run1", "--tag", "probes", "--head", "0.0", "--step", "9"], "not logged"),
        (["--run", "run1", "--tag", "probes", "--head", "0.0", "--step", "7"], "no step 7"),
        (["--run", "run1", "--tag", "probes", "--head", "0.0", "--example", "x"], "no example 'x'"),
        (["--run", "run1", "--tag", "probes", "--head", "0.0", "--kind", "cross"], "no 'cross' attention"),
    ]
    for args, message in cases:
        assert main(["project", str(root), "--out", str(tmp_path / "o"), *args]) == 2, args
        assert message in capsys.readouterr().err, args
    with pytest.raises(SystemExit):
        main(["project", str(root), "--tag", "probes", "--head", "x"])
    assert not os.path.exists(tmp_path / "o" / "projector_config.pbtxt")
    with pytest.raises(ValueError, match="head_dim"):
        hv = projector.HeadVectors("x")
        hv.add("0", np.zeros((2, 4)), np.zeros((2, 3)), ["a", "b"], ["a", "b"])
