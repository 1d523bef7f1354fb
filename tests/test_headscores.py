"""Head scores over a probe set (``derived.TagScores``; ``/headscores``, ``/headtrend``, ``/headexamples``):
every value against a per-example reference computed here from the logged attention (``metrics.layer_metrics``),
from the index records only, and bad parameters answered 4xx."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import softmax_attention
from test_plugin import App, assert_json_error, body_json
from tensorboard_plugin_attention import derived, reader
from tensorboard_plugin_attention import metrics as metrics_mod
from tensorboard_plugin_attention.summary import AttentionWriter, log_attention

LAYERS, HEADS, STEPS = 2, 3, (0, 10, 20)
EXAMPLES = [str(i) for i in range(7)]


def tokens_of(i: int) -> list:
    """Some examples repeat tokens (induction defined), example 3 does not (induction undefined there)."""
    base = [f"t{i}_{j}" for j in range(4 + i % 3)]
    return ["<s>"] + base + (base if i != 3 else [f"u{j}" for j in range(len(base))])


@pytest.fixture(scope="module")
def probe_set(tmp_path_factory):
    """run "p": 7 examples x 3 steps, plus example "odd" of another model (1 layer) at step 10 only."""
    root = tmp_path_factory.mktemp("headscores")
    rng = np.random.default_rng(5)
    logged = {}
    with AttentionWriter(str(root / "p")) as w:
        for step in STEPS:
            for ex in EXAMPLES:
                toks = tokens_of(int(ex))
                att = [softmax_attention(rng, HEADS, len(toks), len(toks), causal=True) for _ in range(LAYERS)]
                log_attention(w, "probes", att, toks, step, example=ex)
                logged[(ex, step)] = (att, toks)
            if step == 10:
                toks = tokens_of(0)
                log_attention(w, "probes", [softmax_attention(rng, HEADS, len(toks), len(toks))], toks, step,
                              example="odd")
    return root, logged


def reference(logged, step):
    """(examples, metric, layer, head) values per example, as the writer computed them (float32 in JSON)."""
    per = []
    for ex in EXAMPLES:
        att, toks = logged[(ex, step)]
        m = metrics_mod.layer_metrics(att, toks)
        per.append(np.stack([m[n] for n in metrics_mod.METRIC_NAMES]))
    return np.stack(per)


def close(got, want, atol=1e-5):
    got = np.array([[np.nan if v is None else v for v in row] for row in got], float)
    np.testing.assert_allclose(got, want, atol=atol, equal_nan=True)


def test_scores_at_a_step_against_per_example_reference(probe_set):
    root, logged = probe_set
    a = App(root)
    for step in STEPS:
        body = body_json(a.get("/headscores", run="p", tag="probes", step=str(step)))
        assert body["run"] == "p" and body["tag"] == "probes" and body["kind"] == "encoder" and body["step"] == step
        assert body["steps"] == list(STEPS) and body["layers"] == LAYERS and body["heads"] == HEADS
        assert body["examples"] == len(EXAMPLES)
        assert body["skipped"] == (["odd"] if step == 10 else [])  # another layers x heads grid
        assert list(body["metrics"]) == list(metrics_mod.METRIC_NAMES)
        ref = reference(logged, step)
        for i, name in enumerate(metrics_mod.METRIC_NAMES):
            v = ref[:, i]
            n = np.isfinite(v).sum(0)
            got = body["metrics"][name]
            assert got["n"] == n.tolist()
            with np.errstate(invalid="ignore"):
                close(got["mean"], np.nanmean(v, 0) if n.all() else np.where(n > 0, np.nanmean(v, 0), np.nan))
                close(got["std"], np.nanstd(v, 0))
            close(got["min"], np.nanmin(v, 0))
            close(got["max"], np.nanmax(v, 0))
        # example 3 repeats no token: induction is defined on the 6 others only
        assert body["metrics"]["induction"]["n"] == [[len(EXAMPLES) - 1] * HEADS] * LAYERS


def test_trend_over_steps(probe_set):
    root, logged = probe_set
    body = body_json(App(root).get("/headtrend", run="p", tag="probes"))
    assert body["steps"] == list(STEPS) and body["examples"] == [len(EXAMPLES)] * len(STEPS)
    for s, step in enumerate(STEPS):
        ref = reference(logged, step)
        for i, name in enumerate(metrics_mod.METRIC_NAMES):
            close(body["metrics"][name]["mean"][s], np.nanmean(ref[:, i], 0))
            close(body["metrics"][name]["std"][s], np.nanstd(ref[:, i], 0))


def test_top_examples_of_a_head(probe_set):
    root, logged = probe_set
    a = App(root)
    for name, layer, head in (("induction", 1, 2), ("sink", 0, 1), ("entropy", 1, 0)):
        body = body_json(a.get("/headexamples", run="p", tag="probes", step="20", metric=name, layer=str(layer),
                               head=str(head), limit="4"))
        i = metrics_mod.METRIC_NAMES.index(name)
        scores = {ex: reference(logged, 20)[k, i, layer, head] for k, ex in enumerate(EXAMPLES)}
        defined = sorted((ex for ex in EXAMPLES if np.isfinite(scores[ex])), key=lambda ex: -scores[ex])
        assert body["n"] == len(defined)
        assert [r["example"] for r in body["examples"]] == defined[:4]
        for r in body["examples"]:
            assert abs(r["score"] - scores[r["example"]]) < 1e-5
        if name == "induction":
            assert "3" not in [r["example"] for r in body["examples"]]  # undefined: never ranked


def test_scripts_call_the_same_aggregation(probe_set):
    root, logged = probe_set
    runs, _ = reader.open_logdir(str(root))
    scores = derived.TagScores(runs["p"].examples, "probes")
    assert scores.steps == list(STEPS) and scores.kind == "encoder"
    at = scores.at(10)
    close(at["metrics"]["sink"]["mean"], reference(logged, 10)[:, 2].mean(0))
    assert scores.stack(10)["examples"] == EXAMPLES  # natural order, "odd" left out
    with pytest.raises(derived.DerivedError, match="no step 5"):
        scores.at(5)
    with pytest.raises(derived.KindNotLogged):
        derived.TagScores(runs["p"].examples, "probes", "cross")
    with pytest.raises(derived.DerivedError, match="no examples"):
        derived.TagScores(runs["p"].examples, "nope")


def test_no_asset_reads(probe_set, tmp_path):
    root, _ = probe_set
    shutil.copytree(root, tmp_path / "logs")
    shutil.rmtree(tmp_path / "logs" / "p" / "plugins")
    a = App(tmp_path / "logs")
    assert body_json(a.get("/headscores", run="p", tag="probes", step="0"))["examples"] == len(EXAMPLES)
    assert body_json(a.get("/headtrend", run="p", tag="probes"))["steps"] == list(STEPS)


_OK = dict(run="p", tag="probes", step="10", metric="sink", layer="0", head="0")


@pytest.mark.parametrize("route,name,value,status", [
    ("/headscores", "run", None, 400), ("/headscores", "run", "nope", 404), ("/headscores", "tag", None, 400),
    ("/headscores", "tag", "nope", 404), ("/headscores", "step", None, 400), ("/headscores", "step", "x", 400),
    ("/headscores", "step", "5", 404), ("/headscores", "step", "99999999999999999999", 400),
    ("/headscores", "kind", "cross", 404), ("/headscores", "kind", "<script>", 404),
    ("/headtrend", "tag", "", 400), ("/headtrend", "run", "../p", 404), ("/headtrend", "kind", "decoder", 404),
    ("/headexamples", "metric", None, 400), ("/headexamples", "metric", "nope", 400),
    ("/headexamples", "layer", "-1", 400), ("/headexamples", "layer", "2", 400), ("/headexamples", "head", "3", 400),
    ("/headexamples", "head", None, 400), ("/headexamples", "limit", "0", 400), ("/headexamples", "limit", "5000", 400),
    ("/headexamples", "step", "11", 404),
])
def test_bad_parameters_are_4xx(probe_set, route, name, value, status):
    params = dict(_OK)
    params[name] = value
    assert_json_error(App(probe_set[0]).get(route, **params), status)
