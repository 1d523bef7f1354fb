"""``read_attention`` (reader.py): filters, decoded values, ``queries_keys=False``, and records it skips
(malformed index records, via ``format.validate_index``, unknown versions, unreadable assets)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from conftest import ATTENTION_TOLERANCE, write_attention_run, write_index_record
from tensorboard_plugin_attention import format as fmt
from tensorboard_plugin_attention import storage
from tensorboard_plugin_attention import reader
from tensorboard_plugin_attention.reader import read_attention

STEPS = (0, 5, 10)


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """run1: examples "0", "2", "10" x steps 0/5/10 (q/k at 0 and 10); run2: tag "other", no q/k."""
    root = tmp_path_factory.mktemp("reader")
    run1 = write_attention_run(root / "run1", steps=STEPS, examples=("0", "2", "10"), layers=2, heads=3, tokens=6,
                               qk_steps=(0, 10))
    run2 = write_attention_run(root / "run2", steps=(3,), examples=("a",), tag="other", layers=1, heads=2, tokens=9,
                               qk=False, seed=4)
    return root, {"run1": run1, "run2": run2}


def keys(examples):
    return sorted((x.run, x.tag, x.example, x.step) for x in examples)


def check_values(ex, logged_run, qk=True):
    want = logged_run.examples[(ex.example, ex.step)]
    assert ex.tokens("encoder") == (want.tokens, want.tokens)
    got = ex.attention["encoder"]
    assert got.dtype == np.float32 and got.shape == (len(want.attention), *want.attention[0].shape)
    assert np.abs(got - np.stack(want.attention)).max() <= ATTENTION_TOLERANCE
    if want.queries is None or not qk:
        assert ex.queries == {} and ex.keys == {}
    else:
        np.testing.assert_array_equal(ex.queries["encoder"], np.stack(want.queries).astype(np.float16))
        np.testing.assert_array_equal(ex.keys["encoder"], np.stack(want.keys).astype(np.float16))


def test_everything_sorted_and_decoded(logs):
    root, runs = logs
    got = read_attention(str(root))
    expected = sorted([("run1", "probes", x, s) for x in ("0", "2", "10") for s in STEPS]
                      + [("run2", "other", "a", 3)])
    assert keys(got) == expected
    for ex in got:
        check_values(ex, runs[ex.run])
        assert ex.header["step"] == ex.step and ex.header["example"] == ex.example
        assert ex.wall_time > 0


@pytest.mark.parametrize("filters,expected", [
    (dict(run="run2"), [("run2", "other", "a", 3)]),
    (dict(tag="other"), [("run2", "other", "a", 3)]),
    (dict(run="run1", tag="other"), []),
    (dict(example="10"), [("run1", "probes", "10", s) for s in STEPS]),
    (dict(example=10), [("run1", "probes", "10", s) for s in STEPS]),  # ints match example names
    (dict(step=5), [("run1", "probes", x, 5) for x in ("0", "10", "2")]),
    (dict(run="run1", tag="probes", example="2", step=10), [("run1", "probes", "2", 10)]),
    (dict(step=4), []),
    (dict(run="nope"), []),
    (dict(example="1"), []),  # no prefix matching: "1" is not "10"
])
def test_filters(logs, filters, expected):
    root, runs = logs
    got = read_attention(root, **filters)  # a Path works as well as a str
    assert keys(got) == sorted(expected)
    for ex in got:
        check_values(ex, runs[ex.run])


def test_queries_keys_false_reads_attention_only(logs, monkeypatch):
    root, runs = logs
    calls = []
    real = reader.RecordStore.qk
    monkeypatch.setattr(reader.RecordStore, "qk", lambda *a, **k: calls.append(a) or real(*a, **k))
    got = read_attention(root, run="run1", step=10, queries_keys=False)
    assert len(got) == 3 and calls == []
    for ex in got:
        assert ex.queries == {} and ex.keys == {}
        assert ex.header["kinds"]["encoder"]["has_qk"] is True  # logged, just not read
        want = runs["run1"].examples[(ex.example, 10)]
        assert np.abs(ex.attention["encoder"] - np.stack(want.attention)).max() <= ATTENTION_TOLERANCE


def test_root_run_is_dot(tmp_path):
    run = write_attention_run(tmp_path, steps=(7,), layers=1, heads=1, tokens=4)
    (ex,) = read_attention(tmp_path)
    assert ex.run == "."
    check_values(ex, run)
    assert keys(read_attention(tmp_path, run=".")) == [(".", "probes", "0", 7)]


# --------------------------------------------------------------------------------------- bad records


@pytest.fixture
def damaged(logs, tmp_path):
    """A copy of the logs plus crafted bad index records in run1 (and the good index it was built from)."""
    root = tmp_path / "logs"
    shutil.copytree(logs[0], root)
    (good,) = read_attention(root, run="run1", example="0", step=10, queries_keys=False)
    index = dict(good.header)
    assert "asset" in index
    bad = {
        "garbage": b"\xff not json",
        "noasset": json.dumps({"version": 1}).encode(),
        "future": fmt.encode_index(dict(index, version=99)),
        "nokinds": fmt.encode_index(dict(index, kinds={})),
        "listkinds": fmt.encode_index(dict(index, kinds=[1, 2])),
        "bogus": fmt.encode_index(dict(index, kinds={"bogus": index["kinds"]["encoder"]})),
        "strlayers": fmt.encode_index(dict(index, kinds={"encoder": dict(index["kinds"]["encoder"], layers="2")})),
        "neg": fmt.encode_index(dict(index, kinds={"encoder": dict(index["kinds"]["encoder"], heads=-1)})),
        "boolq": fmt.encode_index(dict(index, kinds={"encoder": dict(index["kinds"]["encoder"], q_len=True)})),
        "noseq": fmt.encode_index(dict(index, sequences=None)),
        "badoffset": fmt.encode_index(dict(index, asset=dict(index["asset"], offset="0"))),
        "nofile": fmt.encode_index(dict(index, asset=dict(index["asset"], file=None))),
        "traversal": fmt.encode_index(dict(index, example="traversal", asset=dict(index["asset"], file="../../x.attn"))),
    }
    for name, payload in bad.items():
        write_index_record(root / "run1", "probes", name, 1, payload)
    return root, index, bad


def test_bad_records_are_skipped_and_logged_once(damaged, logs, caplog):
    root, _, bad = damaged
    reader._warned.clear()
    with caplog.at_level(logging.WARNING, logger="tensorboard_plugin_attention.reader"):
        got = read_attention(root, run="run1", queries_keys=False)
        again = read_attention(root, run="run1", queries_keys=False)
    assert keys(got) == keys(again) == sorted(("run1", "probes", x, s) for x in ("0", "2", "10") for s in STEPS)
    for ex in got:
        check_values(ex, logs[1]["run1"], qk=False)
    messages = [r.getMessage() for r in caplog.records]
    # the traversal record passes validate_index (a string file name) and is refused when its asset is read
    for name in bad:
        assert sum(f"/{name} step 1" in m or f"/{name}/" in m for m in messages) == 1, (name, messages)
    assert any("version 99" in m and "upgrade" in m for m in messages)
    assert any("malformed attention index record: no kinds" in m for m in messages)
    assert any("invalid asset file name" in m for m in messages)
    with pytest.raises(fmt.FormatError, match="invalid asset file name"):
        read_attention(root, run="run1", example="traversal", strict=True)


def test_unreadable_assets_skip_only_their_records(logs, tmp_path, caplog):
    root = tmp_path / "logs"
    shutil.copytree(logs[0], root)
    (ex,) = read_attention(root, run="run1", example="2", step=5, queries_keys=False)
    path = reader.asset_path(str(root / "run1"), ex.header)
    rec = fmt.parse_record_header(path, ex.header["asset"]["offset"], storage.read_range)
    off, length, _ = rec.chunk("encoder", "attention", 1, 2)
    with open(path, "r+b") as f:  # corrupt one chunk of that record: its CRC32C fails
        f.seek(rec.data_offset + off + length // 2)
        f.write(b"\xde\xad")
    shutil.rmtree(root / "run2" / "plugins")  # and run2's asset file is gone
    reader._warned.clear()
    with caplog.at_level(logging.WARNING, logger="tensorboard_plugin_attention.reader"):
        got = read_attention(root, queries_keys=False)
    assert keys(got) == sorted(("run1", "probes", x, s) for x in ("0", "2", "10") for s in STEPS
                               if (x, s) != ("2", 5))
    messages = [r.getMessage() for r in caplog.records]
    assert any("run1/probes/2 step 5" in m and "checksum" in m for m in messages), messages
    assert any("run2/other/a step 3" in m and "FileNotFoundError" in m for m in messages), messages
    with pytest.raises(fmt.FormatError, match="checksum"):
        read_attention(root, run="run1", example="2", step=5, strict=True)
    with pytest.raises(FileNotFoundError):
        read_attention(root, run="run2", strict=True)
    # q/k of the damaged record are still intact, but the record is all or nothing
    assert read_attention(root, run="run1", example="2", step=5) == []


# ------------------------------------------------------------------------------------ validate_index
def test_validate_index(logs):
    (good,) = read_attention(logs[0], run="run1", example="0", step=0, queries_keys=False)
    index = dict(good.header)
    fmt.validate_index(index)
    assert fmt.index_problem(index) is None
    enc = index["kinds"]["encoder"]
    cases = {
        "no kinds": dict(index, kinds=None),
        "no sequences": dict(index, sequences=[]),
        "bad kind 'x'": dict(index, kinds={"x": enc}),
        "encoder.k_len is not a count in 1..2097152": dict(index, kinds={"encoder": dict(enc, k_len=1.0)}),
        "encoder.layers is not a count in 1..1024": dict(index, kinds={"encoder": dict(enc, layers=0)}),
        "encoder.head_dim is not a count in 1..16384": dict(index, kinds={"encoder": dict(enc, has_qk=True, head_dim=None)}),
        "encoder.overview_shape is not two counts within the lengths": dict(index, kinds={"encoder": dict(enc, overview_shape=[6])}),
        "bad asset location": dict(index, asset={"file": "f"}),
    }
    for problem, bad in cases.items():
        assert fmt.index_problem(bad) == problem
        with pytest.raises(fmt.FormatError, match="malformed attention index record"):
            fmt.validate_index(bad)
        with pytest.raises(fmt.FormatError):
            fmt.parse_index_payload(fmt.encode_index(bad))
    fmt.validate_index(dict(index, kinds={"encoder": dict(enc, has_qk=False, head_dim=None)}))
    fmt.validate_index(dict(index, metrics={"encoder": "not checked"}))  # metrics never hide a record


# ------------------------------------------------------------------------------- hardening (issue 10)
def test_logdir_spec_names_runs_as_tensorboard_does(tmp_path):
    a = write_attention_run(tmp_path / "first" / "r", steps=(0,), layers=1, heads=1, tokens=4, seed=1)
    b = write_attention_run(tmp_path / "second", steps=(3,), layers=1, heads=1, tokens=4, seed=2)
    got = read_attention(logdir_spec=f"a:{tmp_path / 'first'},b:{tmp_path / 'second'}", queries_keys=False)
    assert [(e.run, e.step) for e in got] == [("a/r", 0), ("b/.", 3)]  # TensorBoard's own names
    for e, logged, step in ((got[0], a, 0), (got[1], b, 3)):
        assert np.abs(e.attention["encoder"][0] - logged.examples[("0", step)].attention[0]).max() <= ATTENTION_TOLERANCE
    with pytest.raises(ValueError, match="either logdir or logdir_spec"):
        read_attention()


def test_relogged_step_reads_its_latest_write_like_the_tab(tmp_path):
    """read_attention and the plugin agree: a step logged twice (restarted training) is its latest write."""
    write_attention_run(tmp_path / "r", steps=(0, 1), layers=1, heads=1, tokens=4, seed=1)
    again = write_attention_run(tmp_path / "r", steps=(1,), layers=1, heads=1, tokens=4, seed=9)
    got = read_attention(tmp_path, queries_keys=False)
    assert [e.step for e in got] == [0, 1]
    assert np.abs(got[1].attention["encoder"][0] - again.examples[("0", 1)].attention[0]).max() <= ATTENTION_TOLERANCE


def test_steps_of_an_example_share_the_fields_they_repeat(tmp_path):
    """The index holds one copy of what an example's steps repeat (tokens, layer facts): the same objects,
    equal to what each step logged; what differs between steps (here q/k logged at step 0 only) is not shared."""
    logged = write_attention_run(str(tmp_path / "run"), steps=(0, 1, 2), examples=("a", "b"), qk_steps=(0,))
    runs, _ = reader.open_logdir(str(tmp_path))
    es = runs["run"].examples[("probes", "a")]
    assert [e.step for e in es] == [0, 1, 2]
    assert es[1].index["sequences"] is es[2].index["sequences"] is es[0].index["sequences"]
    assert es[1].index["kinds"] is es[2].index["kinds"] and es[0].index["kinds"] is not es[1].index["kinds"]
    assert es[0].index["kinds"]["encoder"]["has_qk"] and not es[2].index["kinds"]["encoder"]["has_qk"]
    assert es[0].index["sequences"]["input"] == logged.examples[("a", 0)].tokens
    b = runs["run"].examples[("probes", "b")]
    assert b[0].index["sequences"] is not es[0].index["sequences"]  # shared within an example only
