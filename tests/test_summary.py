"""The writer: accepted inputs, validation before anything is written, SummaryWriter support."""

import os

import numpy as np
import pytest

from tensorboard_plugin_attention import AttentionWriter, log_attention, read_attention


def softmax(rng, shape):
    x = rng.normal(size=shape) * 2
    a = np.exp(x - x.max(-1, keepdims=True))
    return (a / a.sum(-1, keepdims=True)).astype(np.float32)


RNG = np.random.default_rng(0)
TOKENS = ["[CLS]", "the", "cat", "sat", "[SEP]"]
GOOD = [softmax(RNG, (2, 3, 5, 5)) for _ in range(2)]  # 2 layers of (batch=2, heads=3, 5, 5)
QK = [RNG.normal(size=(2, 3, 5, 4)).astype(np.float32) for _ in range(2)]


def with_value(layer, index, value):
    out = [a.copy() for a in GOOD]
    out[layer][index] = value
    return out


def unnormalised():
    out = [a.copy() for a in GOOD]
    out[1][0, 2, 3] *= 0.5
    return out


def nan_queries():
    q = [x.copy() for x in QK]
    q[0][0, 0, 0, 0] = np.nan
    return dict(queries=q, keys=QK)


BAD = {
    "sdpa returns None": (dict(attention=(None, None)), "capture_attention"),
    "empty tuple": (dict(attention=()), "capture_attention"),
    "rank": (dict(attention=[np.ones((5, 5), np.float32) / 5]), "expected"),
    "layer shapes differ": (dict(attention=[GOOD[0], GOOD[1][:, :2]]), "same heads"),
    "token count": (dict(tokens=TOKENS[:4]), "tokens"),
    "tokens not strings": (dict(tokens=[101, 7, 8, 9, 102]), "convert_ids_to_tokens"),
    "NaN": (dict(attention=with_value(0, (0, 1, 2, 3), np.nan)), "NaN"),
    "Inf": (dict(attention=with_value(1, (0, 0, 0, 0), np.inf)), "NaN or Inf"),
    "outside [0, 1]": (dict(attention=with_value(0, (0, 0, 0, 0), -0.5)), r"\[0, 1\]"),
    "scores not probabilities": (dict(attention=[a * 3 for a in GOOD]), r"\[0, 1\]"),
    "row sum": (dict(attention=unnormalised()), "sums to"),
    "batch index": (dict(batch_index=2), "batch_index"),
    "negative step": (dict(step=-1), "step"),
    "empty tag": (dict(tag=""), "tag"),
    "slash in example": (dict(example="a/b"), "example"),
    "queries without keys": (dict(queries=QK), "both"),
    "q/k shape": (dict(queries=[x[:, :, :4] for x in QK], keys=QK), "queries"),
    "q/k NaN": (nan_queries(), "NaN"),
    "sentence B start": (dict(sentence_b_start=5), "sentence_b_start"),
    "unknown kind": (dict(kind="sideways"), "kind"),
    "too many tokens": (dict(tokens=["a"] * 9000), "at most"),
    "cross without key tokens ok but key_tokens on self": (dict(key_tokens=TOKENS, kind="encoder"), "cross"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_and_nothing_is_written(tmp_path, case):
    kwargs, message = BAD[case]
    args = dict(tag="probes", attention=GOOD, tokens=TOKENS, step=3)
    args.update(kwargs)
    with AttentionWriter(str(tmp_path)) as w:
        with pytest.raises(ValueError, match=message):
            log_attention(w, args.pop("tag"), args.pop("attention"), args.pop("tokens"), args.pop("step"), **args)
    assert not os.path.exists(tmp_path / "plugins")
    assert read_attention(str(tmp_path)) == []


def test_raw_tuple_with_qk_and_batch_index(tmp_path):
    with AttentionWriter(str(tmp_path)) as w:
        w.add_attention("probes", GOOD, TOKENS, 7, batch_index=1, queries=QK, keys=QK,
                        sentence_b_start=3, model_name="toy")
    [ex] = read_attention(str(tmp_path))
    assert ex.header["kinds"]["encoder"]["has_qk"] and ex.header["sentence_b_start"] == 3
    assert ex.header["model"] == "toy"
    assert (ex.tag, ex.example, ex.step) == ("probes", "1", 7)
    assert ex.tokens() == (TOKENS, TOKENS)
    assert np.abs(ex.attention["encoder"] - np.stack([a[1] for a in GOOD])).max() <= 0.004
    np.testing.assert_allclose(ex.queries["encoder"], np.stack([q[1] for q in QK]), atol=2e-3, rtol=1e-3)
    assert ex.header["special_tokens"]["input"] == [0, 4]


def test_encoder_decoder_dict(tmp_path):
    dec = ["<s>", "le", "chat"]
    att = {"encoder": [softmax(RNG, (1, 2, 5, 5))], "decoder": [softmax(RNG, (1, 2, 3, 3))],
           "cross": [softmax(RNG, (1, 2, 3, 5))]}
    with AttentionWriter(str(tmp_path)) as w:
        w.add_attention("t", att, TOKENS, 0, decoder_tokens=dec)
    [ex] = read_attention(str(tmp_path))
    assert ex.tokens("cross") == (dec, TOKENS) and ex.tokens("decoder") == (dec, dec)
    assert ex.attention["cross"].shape == (1, 2, 3, 5)


def test_two_examples_one_tag_one_step_both_survive(tmp_path):
    with AttentionWriter(str(tmp_path)) as w:
        for i in range(2):
            w.add_attention("probes", GOOD, TOKENS, 0, batch_index=i)
    got = read_attention(str(tmp_path))
    assert [(e.example, e.step) for e in got] == [("0", 0), ("1", 0)]
    assert not np.allclose(got[0].attention["encoder"], got[1].attention["encoder"])


def test_torch_summary_writer(tmp_path):
    torch = pytest.importorskip("torch")
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "run"))
    w.add_scalar("loss", 1.0, 0)
    log_attention(w, "probes", [torch.from_numpy(a) for a in GOOD], TOKENS, 5)
    w.close()
    [ex] = read_attention(str(tmp_path))
    assert ex.run == "run" and ex.step == 5
    assert os.listdir(tmp_path / "run" / "plugins" / "attention")


def test_metric_scalars_are_written_and_can_be_turned_off(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with AttentionWriter(str(tmp_path / "on")) as w:
        w.add_attention("probes", GOOD, TOKENS, 4)
    [ex] = read_attention(str(tmp_path / "on"))
    header = ex.header
    with AttentionWriter(str(tmp_path / "off")) as w:
        w.add_attention("probes", GOOD, TOKENS, 4, metric_scalars=False)
    acc = EventAccumulator(str(tmp_path / "on"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = acc.Tags()["tensors"]
    assert "attention_metrics/probes/0/sink/encoder_layer1" in tags
    [event] = acc.Tensors("attention_metrics/probes/0/sink/encoder_layer1")
    assert event.step == 4
    assert abs(float(event.tensor_proto.float_val[0]) - max(header["metrics"]["encoder"]["sink"][1])) < 1e-6
    off = EventAccumulator(str(tmp_path / "off"), size_guidance={"tensors": 0})
    off.Reload()
    assert not [t for t in off.Tags()["tensors"] if t.startswith("attention_metrics")]


@pytest.mark.parametrize("background", [True, False])
def test_flush_makes_records_visible_in_both_modes(tmp_path, background):
    w = AttentionWriter(str(tmp_path), background=background)
    for step in range(3):
        w.add_attention("probes", GOOD, TOKENS, step)
    w.flush()
    assert [e.step for e in read_attention(str(tmp_path))] == [0, 1, 2]
    w.close()


def test_background_io_error_is_raised_at_flush(tmp_path, monkeypatch):
    from tensorboard_plugin_attention import storage

    def broken(self, record):
        raise OSError("disk full")

    monkeypatch.setattr(storage.AssetFile, "append", broken)
    w = AttentionWriter(str(tmp_path))
    w.add_attention("probes", GOOD, TOKENS, 0)  # returns at once: the error happens in the writer thread
    with pytest.raises(RuntimeError, match="disk full"):
        w.flush()
    w.close()


# ------------------------------------------------------------------ validated in the caller's thread
def _torch():
    return pytest.importorskip("torch")


def _meta_attention():
    return dict(attention=[_torch().empty((2, 3, 5, 5), device="meta") for _ in range(2)])


def _empty_capture():
    from tensorboard_plugin_attention.capture import AttentionCapture

    return dict(attention=AttentionCapture(_torch().nn.Linear(2, 2)))


def _info_not_json():
    _torch()
    from tensorboard_plugin_attention.capture import ExampleAttention, LayerArrays

    layers = [LayerArrays(a[0], None, None, {"scaling": object()}) for a in GOOD]
    return dict(attention=ExampleAttention({"encoder": layers}, {}))


# Inputs that used to pass the checks and then fail in the writer thread (or with another exception type).
BAD_LATE = {
    "step 2**63": (lambda: dict(step=2**63), "step"),
    "tag with a lone surrogate": (lambda: dict(tag="probes\udc80"), "surrogate"),
    "example with a lone surrogate": (lambda: dict(example="x\ud800"), "surrogate"),
    "special tokens not integers": (lambda: dict(special_tokens={"input": [0.5]}), "integer"),
    "special tokens strings": (lambda: dict(special_tokens={"input": ["[CLS]"]}), "integer"),
    "special tokens out of range": (lambda: dict(special_tokens={"input": [0, 7]}), "out of range"),
    "special tokens unknown sequence": (lambda: dict(special_tokens={"output": [0]}), "unknown sequence"),
    "special tokens not a mapping": (lambda: dict(special_tokens=[0, 4]), "map"),
    "NaN wall_time": (lambda: dict(wall_time=float("nan")), "wall_time"),
    "inf wall_time": (lambda: dict(wall_time=float("inf")), "wall_time"),
    "wall_time not a number": (lambda: dict(wall_time="now"), "wall_time"),
    "model_name bytes": (lambda: dict(model_name=b"toy"), "model_name"),
    "model_name object": (lambda: dict(model_name=object()), "model_name"),
    "batch_index 1.5": (lambda: dict(batch_index=1.5), "batch_index"),
    "meta tensors": (_meta_attention, "meta device"),
    "empty capture": (_empty_capture, "no forward pass"),
    "layer info not JSON": (_info_not_json, "layer info 'scaling'"),
}


def _events(logdir):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    out = []
    for name in sorted(os.listdir(logdir)):
        if "tfevents" in name:
            out.extend(e for e in EventFileLoader(os.path.join(logdir, name)).Load() if e.HasField("summary"))
    return out


@pytest.mark.parametrize("case", sorted(BAD_LATE) + sorted(BAD))
def test_bad_input_writes_nothing_and_the_next_example_lands(tmp_path, case):
    """Every bad input is refused at the call with ValueError: no asset bytes, no index event; the next valid
    example is written whole, and nothing else fails later (in the writer thread, at close)."""
    if case in BAD_LATE:
        make, message = BAD_LATE[case]
        kwargs = make()
    else:
        kwargs, message = BAD[case]
    args = dict(tag="probes", attention=GOOD, tokens=TOKENS, step=3)
    args.update(kwargs)
    w = AttentionWriter(str(tmp_path))
    with pytest.raises(ValueError, match=message):
        log_attention(w, args.pop("tag"), args.pop("attention"), args.pop("tokens"), args.pop("step"), **args)
    w.flush()
    assert not os.path.exists(tmp_path / "plugins") and _events(str(tmp_path)) == []
    w.add_attention("probes", GOOD, TOKENS, 4, example="good")
    w.close()
    [ex] = read_attention(str(tmp_path))
    assert (ex.tag, ex.example, ex.step) == ("probes", "good", 4)
    [asset] = os.listdir(tmp_path / "plugins" / "attention")
    assert os.path.getsize(tmp_path / "plugins" / "attention" / asset) == ex.header["asset"]["length"]
    assert {e.step for e in _events(str(tmp_path))} == {4}


def test_one_message_for_one_sequence(tmp_path):
    with AttentionWriter(str(tmp_path)) as w, pytest.raises(ValueError) as e:
        log_attention(w, "t", GOOD, TOKENS[:4], 0)
    assert "there are 4 input tokens:" in str(e.value) and "and 4" not in str(e.value)


# ------------------------------------------------------------------------------ closing, failures
def test_closed_writer_refuses_writes_and_flush_does_not_hang(tmp_path):
    import threading

    w = AttentionWriter(str(tmp_path))
    w.add_attention("probes", GOOD, TOKENS, 0)
    w.close()
    w.close()  # twice is fine
    with pytest.raises(ValueError, match="closed"):
        w.add_attention("probes", GOOD, TOKENS, 1)
    with pytest.raises(ValueError, match="closed"):
        log_attention(w, "probes", GOOD, TOKENS, 1)
    with pytest.raises(ValueError, match="closed"):
        w.add_scalar("loss", 1.0, 1)
    outcome = []

    def flush():
        try:
            w.flush()
        except ValueError as e:
            outcome.append(e)

    t = threading.Thread(target=flush, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "flush() after close() hangs"
    assert outcome and "closed" in str(outcome[0])
    assert [e.step for e in read_attention(str(tmp_path))] == [0]


def test_closed_synchronous_writer_refuses_writes(tmp_path):
    w = AttentionWriter(str(tmp_path), background=False)
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.add_attention("probes", GOOD, TOKENS, 1)
    assert read_attention(str(tmp_path)) == []


def test_a_failed_background_write_costs_no_other_example(tmp_path, monkeypatch):
    """The first record's write fails in the writer thread: the error is raised once, at the next call (whose
    own example is accepted) or at close, naming the lost record; every later example is written."""
    from tensorboard_plugin_attention import storage

    real = storage.AssetFile.append
    calls = []

    def first_fails(self, record):
        calls.append(len(record))
        if len(calls) == 1:
            raise OSError("disk full")
        return real(self, record)

    monkeypatch.setattr(storage.AssetFile, "append", first_fails)
    w = AttentionWriter(str(tmp_path))
    errors = []
    for step in range(4):
        try:
            w.add_attention("probes", GOOD, TOKENS, step)
        except RuntimeError as e:
            errors.append(e)
    try:
        w.close()
    except RuntimeError as e:
        errors.append(e)
    assert [e.step for e in read_attention(str(tmp_path))] == [1, 2, 3]
    assert len(errors) == 1, errors
    assert type(errors[0]).__name__ == "BackgroundWriteError"
    assert "probes/0 at step 0" in str(errors[0]) and "disk full" in str(errors[0])


# ------------------------------------------------------------------------------ steps going backwards
def test_warns_once_before_a_step_below_one_already_in_the_run(tmp_path, caplog):
    """TensorBoard's fast loader drops the higher steps of a tag when a lower one follows (docs/writers.md):
    the writer warns once, whether the higher step is its own or another writer's in the same run."""
    run = str(tmp_path)
    with caplog.at_level("WARNING", logger="tensorboard_plugin_attention.summary"):
        with AttentionWriter(run) as other:
            other.add_attention("probes", GOOD, TOKENS, 10)
            other.add_attention("probes", GOOD, TOKENS, 2, example="b")
        with AttentionWriter(run) as w:
            w.add_attention("probes", GOOD, TOKENS, 3, example="b")  # per example: 3 < 10 of another one is fine
            w.add_attention("probes", GOOD, TOKENS, 10)  # the same step again: replaces it, no loss
            w.add_attention("generate", GOOD, TOKENS, 1)  # another tag
            assert not caplog.records
            w.add_attention("probes", GOOD, TOKENS, 5)  # below step 10 of probes/0 (the other writer's)
            w.add_attention("probes", GOOD, TOKENS, 3)  # warned once per writer
    [rec] = caplog.records
    assert "'probes/0' at step 5" in rec.getMessage() and "step 10" in rec.getMessage()
    assert "--load_fast=true" in rec.getMessage()
    caplog.clear()
    with caplog.at_level("WARNING", logger="tensorboard_plugin_attention.summary"):
        with AttentionWriter(str(tmp_path / "own")) as w:
            w.add_attention("probes", GOOD, TOKENS, 7)
            w.add_attention("probes", GOOD, TOKENS, 6)  # its own higher step counts too
    assert len(caplog.records) == 1 and "step 7" in caplog.records[0].getMessage()


def test_interleaved_writers_on_one_tag_warn(tmp_path, caplog):
    """Two writers, one tag, steps interleaved in time: no step ever goes backwards as written, but the fast
    loader reads the first file to its end before the second, so the second file's lower steps drop the first
    file's higher ones: the first writer warns when it writes above a step in the later-named file."""
    a = AttentionWriter(str(tmp_path))
    b = AttentionWriter(str(tmp_path))
    with caplog.at_level("WARNING", logger="tensorboard_plugin_attention.summary"):
        a.add_attention("probes", GOOD, TOKENS, 0)
        b.add_attention("probes", GOOD, TOKENS, 1)
        b.flush()
        assert not caplog.records
        a.add_attention("probes", GOOD, TOKENS, 2)
    a.close()
    b.close()
    [rec] = caplog.records
    assert "named after this writer's" in rec.getMessage() and "step 1" in rec.getMessage()


def _max_steps(guard):
    return {tag: max(r[1] for r in files.values()) for tag, files in guard.scan().items()}


@pytest.mark.parametrize("chunk", [7, 1 << 24])
def test_step_guard_reads_only_what_was_appended_and_skips_a_torn_tail(tmp_path, monkeypatch, chunk):
    from tensorboard_plugin_attention import step_guard
    from tensorboard_plugin_attention.step_guard import StepGuard

    monkeypatch.setattr(step_guard, "SCAN_CHUNK", chunk)  # records cut across reads are put together
    run = str(tmp_path)
    guard = StepGuard(run)
    assert _max_steps(guard) == {}
    with AttentionWriter(run) as w:
        w.add_attention("probes", GOOD, TOKENS, 4)
        w.add_scalar("loss", 1.0, 99)  # not attention: not tracked
    assert _max_steps(guard) == {"probes/0": 4}
    [path] = [os.path.join(run, f) for f in os.listdir(run) if "tfevents" in f]
    size = os.path.getsize(path)
    with AttentionWriter(run) as w:
        w.add_attention("probes", GOOD, TOKENS, 8, metric_scalars=False)  # the index record is last
    [path2] = [os.path.join(run, f) for f in os.listdir(run) if "tfevents" in f and os.path.join(run, f) != path]
    data = open(path2, "rb").read()
    with open(path2, "wb") as f:  # a record still being written
        f.write(data[:-10])
    assert _max_steps(guard) == {"probes/0": 4} and guard._offsets[path] == size
    with open(path2, "wb") as f:
        f.write(data)
    assert _max_steps(guard) == {"probes/0": 8}


def test_batch_index_of_unbatched_attention_names_the_shapes(tmp_path):
    """Attention without a batch dimension has one example: batch_index=5 is a mistake, not example "5"."""
    unbatched = [a[0] for a in GOOD]
    with AttentionWriter(str(tmp_path)) as w:
        with pytest.raises(ValueError, match=r"batch_index=5 .*\(3, 5, 5\).*no batch dimension"):
            w.add_attention("probes", unbatched, TOKENS, 0, batch_index=5)
        with pytest.raises(ValueError, match=r"batch_index=1 .*queries of layer 0 .*\(3, 5, 4\)"):
            w.add_attention("probes", None, TOKENS, 0, batch_index=1, queries=[q[0] for q in QK],
                            keys=[k[0] for k in QK])
        w.add_attention("probes", unbatched, TOKENS, 0)  # batch_index left out: fine
    assert [e.example for e in read_attention(str(tmp_path))] == ["0"]
