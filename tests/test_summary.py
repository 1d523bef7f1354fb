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
    from tensorboard_plugin_attention import format as fmt

    def broken(self, record):
        raise OSError("disk full")

    monkeypatch.setattr(fmt.AssetFile, "append", broken)
    w = AttentionWriter(str(tmp_path))
    w.add_attention("probes", GOOD, TOKENS, 0)  # returns at once: the error happens in the writer thread
    with pytest.raises(RuntimeError, match="disk full"):
        w.flush()
    w.close()
