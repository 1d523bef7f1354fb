"""generation_attention: the forwards of a KV-cached generate() assembled into one causal matrix per layer,
checked against a single forward pass over the whole generated sequence."""

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM  # noqa: E402

from tensorboard_plugin_attention import AttentionWriter, capture_attention, log_attention, read_attention  # noqa: E402
from tensorboard_plugin_attention.integrations.generation import generation_attention  # noqa: E402

VOCAB = 64


def gpt2():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                      bos_token_id=1, eos_token_id=2, pad_token_id=0)).eval()


def llama():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                        bos_token_id=1, eos_token_id=2, pad_token_id=0)).eval()


MODELS = {"gpt2": gpt2, "llama": llama}  # llama: rotary q/k, grouped-query keys


def _generate(model, ids, mask, new=7):
    with capture_attention(model) as cap:
        out = model.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                             pad_token_id=0)
    return cap, out


def _reference(model, seq):
    with capture_attention(model) as cap, torch.no_grad():
        model(seq[None])
    return cap.last.example(0)


@pytest.mark.parametrize("name", list(MODELS))
def test_matches_one_forward_over_the_generated_sequence(name):
    model = MODELS[name]()
    prompt = torch.tensor([[5, 9, 11, 7, 3]])
    cap, out = _generate(model, prompt, torch.ones_like(prompt))
    assert len(cap.forwards) == 7  # prompt pass + one pass per generated token but the last
    ex = generation_attention(cap)
    n = 5 + 7 - 1
    assert list(ex.positions["input"]) == list(range(n))
    ref = _reference(model, out[0, :n])
    assert list(ex.kinds) == ["decoder"] and len(ex.kinds["decoder"]) == len(ref.kinds["decoder"]) == 2
    for got, want in zip(ex.kinds["decoder"], ref.kinds["decoder"]):
        assert got.attention.shape == want.attention.shape == (4, n, n)
        np.testing.assert_allclose(got.attention, want.attention, atol=1e-5)
        np.testing.assert_allclose(got.queries, want.queries, atol=1e-5)
        np.testing.assert_allclose(got.keys, want.keys, atol=1e-5)
        np.testing.assert_allclose(got.attention.sum(-1), 1, atol=1e-5)  # zero padding keeps rows summing to 1
        assert np.all(np.triu(got.attention, 1) == 0)
        assert got.info["causal"] and got.info["scaling"] == want.info["scaling"]


@pytest.mark.parametrize("name", list(MODELS))
def test_left_padded_batch(name):
    model = MODELS[name]()
    ids = torch.tensor([[5, 9, 11, 7, 3], [0, 0, 8, 4, 6]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    cap, out = _generate(model, ids, mask, new=5)
    for b, prompt_len in ((0, 5), (1, 3)):
        ex = generation_attention(cap, batch_index=b)
        pos = ex.positions["input"]
        assert len(pos) == prompt_len + 4 and pos[-1] == out.shape[1] - 2  # padding and the last token left out
        ref = _reference(model, out[b, pos])  # the same tokens, unpadded
        assert len(ex.kinds["decoder"]) == len(ref.kinds["decoder"]) == 2
        for got, want in zip(ex.kinds["decoder"], ref.kinds["decoder"]):
            np.testing.assert_allclose(got.attention, want.attention, atol=1e-5)
            np.testing.assert_allclose(got.queries, want.queries, atol=1e-5)
            np.testing.assert_allclose(got.keys, want.keys, atol=1e-5)


def test_loggable_with_log_attention(tmp_path):
    model = gpt2()
    ids = torch.tensor([[0, 5, 9, 11], [4, 6, 8, 10]])
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    cap, out = _generate(model, ids, mask, new=4)
    tokens = [f"t{int(i)}" for i in out[0]]  # prompt + generated, padding included: trimmed with the positions
    ex = generation_attention(cap, batch_index=0)
    with AttentionWriter(str(tmp_path)) as w:
        log_attention(w, "generate", ex, tokens, step=3)
    (got,) = read_attention(str(tmp_path))
    assert got.header["sequences"]["input"] == tokens[1:-1]  # padding and the never-fed last token dropped
    assert got.attention["decoder"].shape == (2, 4, 6, 6)
    np.testing.assert_allclose(got.attention["decoder"][0], ex.kinds["decoder"][0].attention, atol=0.004)
    assert got.queries["decoder"].shape == (2, 4, 6, 8)


def test_queries_keys_off_and_one_new_token():
    model = gpt2()
    prompt = torch.tensor([[5, 9, 11]])
    with capture_attention(model, queries_keys=False) as cap:
        model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=1, do_sample=False,
                       pad_token_id=0)
    ex = generation_attention(cap)
    assert ex.kinds["decoder"][0].attention.shape == (4, 3, 3) and ex.kinds["decoder"][0].queries is None


def test_two_generate_calls_in_one_capture_are_refused():
    model = gpt2()
    prompt = torch.tensor([[5, 9, 11]])
    with capture_attention(model) as cap:
        for _ in range(2):
            model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=3, do_sample=False,
                           pad_token_id=0)
    with pytest.raises(ValueError, match="one call per capture"):
        generation_attention(cap)
    ex = generation_attention(cap, forwards=cap.forwards[3:])  # the second call alone
    assert ex.kinds["decoder"][0].attention.shape == (4, 5, 5)
    with pytest.raises(ValueError, match="no forward"):
        generation_attention([])


def test_encoder_decoder():
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    model = BartForConditionalGeneration(BartConfig(
        vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_bos_token_id=None,
        forced_eos_token_id=None)).eval()
    src = torch.tensor([[0, 5, 9, 11, 7, 2]])
    with capture_attention(model) as cap:
        out = model.generate(src, attention_mask=torch.ones_like(src), max_new_tokens=5, min_new_tokens=5,
                             do_sample=False, num_beams=1)
    ex = generation_attention(cap)
    n = out.shape[1] - 1
    with capture_attention(model) as ref_cap, torch.no_grad():
        model(input_ids=src, decoder_input_ids=out[:, :n])
    ref = ref_cap.last.example(0)
    assert set(ex.kinds) == {"encoder", "decoder", "cross"}
    for kind in ("encoder", "decoder", "cross"):
        assert len(ex.kinds[kind]) == len(ref.kinds[kind]) == 2
        for got, want in zip(ex.kinds[kind], ref.kinds[kind]):
            assert got.attention.shape == want.attention.shape
            np.testing.assert_allclose(got.attention, want.attention, atol=1e-5)
            np.testing.assert_allclose(got.queries, want.queries, atol=1e-5)
            np.testing.assert_allclose(got.keys, want.keys, atol=1e-5)


def test_batch_sequences_are_logged_as_their_own_examples(tmp_path, caplog):
    """Without example=, each sequence of a batched generate() is named after its batch index (it used to be
    "0" for all: one survived, silently)."""
    model = gpt2()
    ids = torch.tensor([[5, 9, 11, 7], [0, 4, 6, 8], [3, 3, 5, 7]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]])
    cap, out = _generate(model, ids, mask, new=3)
    with caplog.at_level("WARNING"), AttentionWriter(str(tmp_path)) as w:
        for b in range(3):
            log_attention(w, "generate", generation_attention(cap, batch_index=b),
                          [f"t{int(i)}" for i in out[b]], step=0)
        with pytest.raises(ValueError, match="leave batch_index out"):
            log_attention(w, "generate", generation_attention(cap, batch_index=2), ["t"] * 7, step=0, batch_index=1)
        log_attention(w, "generate", cap.forwards[0].example(1), ["t"] * 4, step=1)  # one forward's example too
    got = read_attention(str(tmp_path))
    assert sorted((e.example, e.step) for e in got) == [("0", 0), ("1", 0), ("1", 1), ("2", 0)]
    [one] = [e for e in got if (e.example, e.step) == ("1", 0)]
    assert one.header["sequences"]["input"] == [f"t{int(i)}" for i in out[1, 1:-1]]
    assert not [r for r in caplog.records if "twice" in r.getMessage()]


def test_one_writer_logging_one_example_twice_at_a_step_warns(tmp_path, caplog):
    model = gpt2()
    ids = torch.tensor([[5, 9, 11, 7], [4, 4, 6, 8]])
    cap, out = _generate(model, ids, torch.ones_like(ids), new=2)
    with caplog.at_level("WARNING"), AttentionWriter(str(tmp_path)) as w:
        for b in range(2):
            log_attention(w, "generate", generation_attention(cap, batch_index=b), ["t"] * 6, step=0, example="x")
    [rec] = [r for r in caplog.records if "twice" in r.getMessage()]
    assert "'generate/x'" in rec.getMessage()


def test_the_last_generated_token_is_left_out_and_says_so(monkeypatch):
    from tensorboard_plugin_attention.integrations import generation

    monkeypatch.setattr(generation, "_warned", False)
    model = gpt2()
    prompt = torch.tensor([[5, 9, 11]])
    cap, out = _generate(model, prompt, torch.ones_like(prompt), new=3)
    with pytest.warns(generation.LastTokenWarning, match="last generated token"):
        ex = generation_attention(cap)
    assert list(ex.positions["input"]) == list(range(out.shape[1] - 1))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        generation_attention(cap)  # once per process
