"""Value-weighted attention (Kobayashi et al. 2020): value norms captured, stored (format v5), served and read.

The norms are checked against a direct computation: each head's transformed value ``v_j W_O^h`` built from the
value projection's own output (a forward hook) and the output projection's weight columns, then its norm.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tensorboard_plugin_attention import format as fmt  # noqa: E402
from tensorboard_plugin_attention import read_attention  # noqa: E402
from tensorboard_plugin_attention.capture import capture_attention  # noqa: E402
from tensorboard_plugin_attention.metrics import value_weighted  # noqa: E402
from tensorboard_plugin_attention.summary import AttentionWriter, log_attention  # noqa: E402

N = 12


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64)).eval()
    blocks = model.transformer.h

    def direct(values: dict, layer: int) -> np.ndarray:  # c_attn's output holds q | k | v; Conv1D weight is (in, out)
        v = values[layer][..., 64:].reshape(-1, N, 4, 8)
        w = blocks[layer].attn.c_proj.weight
        return torch.stack([(v[:, :, h] @ w[h * 8:(h + 1) * 8]).norm(dim=-1) for h in range(4)], 1)

    return model, [b.attn.c_attn for b in blocks], direct, "decoder"


def _bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=64, max_position_embeddings=64)).eval()
    layers = model.encoder.layer

    def direct(values: dict, layer: int) -> np.ndarray:  # W_O lives in the parent: attention.output.dense
        v = values[layer].reshape(-1, N, 4, 8)
        w = layers[layer].attention.output.dense.weight
        return torch.stack([(v[:, :, h] @ w[:, h * 8:(h + 1) * 8].T).norm(dim=-1) for h in range(4)], 1)

    return model, [l.attention.self.value for l in layers], direct, "encoder"


def _llama_gqa():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=64)).eval()
    layers = model.model.layers

    def direct(values: dict, layer: int) -> np.ndarray:  # 2 key/value heads read by 4 query heads
        v = values[layer].reshape(-1, N, 2, 16)
        w = layers[layer].self_attn.o_proj.weight
        return torch.stack([(v[:, :, h // 2] @ w[:, h * 16:(h + 1) * 16].T).norm(dim=-1) for h in range(4)], 1)

    return model, [l.self_attn.v_proj for l in layers], direct, "decoder"


MODELS = {"gpt2": _gpt2, "bert": _bert, "llama_gqa": _llama_gqa}


def _run(name: str, *, values: bool = True):
    model, value_modules, direct, kind = MODELS[name]()
    outputs: dict = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, at=at: outputs.__setitem__(at, o.detach()))
             for at, m in enumerate(value_modules)]
    ids = torch.randint(1, 100, (2, N), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, N, dtype=torch.long)
    mask[1, N - 3:] = 0  # right padding on the second example: its norms are trimmed like its attention
    with torch.no_grad(), capture_attention(model, values=values) as cap:
        model(input_ids=ids, attention_mask=mask)
    for h in hooks:
        h.remove()
    expected = [direct(outputs, layer).detach().numpy() for layer in range(len(value_modules))]
    return cap, expected, kind, ids


@pytest.mark.parametrize("name", sorted(MODELS))
def test_value_norms_equal_a_direct_computation(name):
    cap, expected, kind, _ = _run(name)
    for i, kept in ((0, N), (1, N - 3)):
        ex = cap.last.example(i)
        for layer, arrays in enumerate(ex.kinds[kind]):
            assert arrays.value_norms.shape == (4, kept)
            np.testing.assert_allclose(arrays.value_norms, expected[layer][i][:, :kept], rtol=1e-4, atol=1e-6)


def test_no_value_norms_unless_asked():
    cap, _, kind, _ = _run("gpt2", values=False)
    assert cap.last.example(0).kinds[kind][0].value_norms is None


def test_multihead_attention_value_norms():
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.randn(1, 5, 16)
    with torch.no_grad(), capture_attention(mha, values=True) as cap:
        mha(x, x, x)
    e = 16
    v = torch.nn.functional.linear(x, mha.in_proj_weight[2 * e:], mha.in_proj_bias[2 * e:]).reshape(5, 4, 4)
    w = mha.out_proj.weight
    direct = torch.stack([(v[:, h] @ w[:, h * 4:(h + 1) * 4].T).norm(dim=-1) for h in range(4)]).detach().numpy()
    np.testing.assert_allclose(cap.last.example(0).kinds["encoder"][0].value_norms, direct, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A GPT-2 example logged with value norms (run "v") and without (run "w")."""
    root = tmp_path_factory.mktemp("values")
    cap, expected, kind, ids = _run("gpt2")
    tokens = [f"t{int(t)}" for t in ids[0]]
    with AttentionWriter(str(root / "v")) as w:
        log_attention(w, "probes", cap.last, tokens, 3)
    cap_plain, _, _, _ = _run("gpt2", values=False)
    with AttentionWriter(str(root / "w")) as w:
        log_attention(w, "probes", cap_plain.last, tokens, 3)
    return root, cap.last.example(0), kind


def test_read_attention_value_weighted(logged):
    root, ex, kind = logged
    (plain,) = read_attention(str(root), run="v")
    (weighted,) = read_attention(str(root), run="v", weighting="value")
    assert plain.header["kinds"][kind]["has_value_norms"] and plain.header["version"] == 5
    norms = np.stack([l.value_norms for l in ex.kinds[kind]])
    np.testing.assert_array_equal(weighted.value_norms[kind], norms)  # stored as float32: exact
    # value-weighting of what is stored, and within the codec's bound of the model's own attention
    np.testing.assert_allclose(weighted.attention[kind], value_weighted(plain.attention[kind], norms), atol=1e-6)
    exact = value_weighted(np.stack([l.attention for l in ex.kinds[kind]]), norms)
    assert np.abs(weighted.attention[kind] - exact).max() < 0.02
    np.testing.assert_allclose(weighted.attention[kind].sum(-1), 1.0, atol=1e-5)
    # a window is a slice of whole rows normalised over all their keys
    (window,) = read_attention(str(root), run="v", weighting="value", rows=(4, 9), cols=(2, 7))
    np.testing.assert_allclose(window.attention[kind], weighted.attention[kind][:, :, 4:9, 2:7], atol=1e-7)


def test_records_without_norms_are_skipped_or_refused(logged, caplog):
    root, _, _ = logged
    assert [e.run for e in read_attention(str(root), weighting="value")] == ["v"]
    assert "has no value norms" in caplog.text
    with pytest.raises(KeyError, match="values=True"):
        read_attention(str(root), run="w", weighting="value", strict=True)
    with pytest.raises(ValueError, match="weighting"):
        read_attention(str(root), weighting="norms")


def test_routes_serve_value_weighted_attention(logged):
    from test_plugin import App, body_bytes

    root, _, kind = logged
    app = App(root)
    p = dict(run="v", tag="probes", example="0", step="3", kind=kind, layer="1")
    (weighted,) = read_attention(str(root), run="v", weighting="value")
    resp = app.get("/attention", weighting="value", **p)
    assert resp.status_code == 200
    codes = np.frombuffer(body_bytes(resp), np.uint8).reshape(4, N, N)
    bound = float(np.max(np.diff(fmt.LUT)))  # one code step: the served codes re-code the weighted values
    assert np.abs(fmt.decode_attention(codes) - weighted.attention[kind][1]).max() <= bound
    one = app.get("/attention", weighting="value", head="2", **p)
    np.testing.assert_array_equal(np.frombuffer(body_bytes(one), np.uint8).reshape(1, N, N), codes[2:3])
    window = app.get("/window", weighting="value", head="2", rows="0:12", cols="0:12", dtype="float32", **p)
    np.testing.assert_allclose(np.frombuffer(body_bytes(window), "<f4").reshape(N, N),
                               weighted.attention[kind][1, 2], atol=1e-6)
    step = {k: v for k, v in p.items() if k != "layer"}
    overview = app.get("/overview", weighting="value", **step)
    assert overview.status_code == 200
    pooled = fmt.decode_attention(np.frombuffer(body_bytes(overview), np.uint8).reshape(2, 4, N, N))
    assert np.abs(pooled - weighted.attention[kind]).max() <= bound  # 12 tokens: one bin per token
    # the plain routes are unchanged; bad or impossible weightings are 4xx with a message
    plain = app.get("/attention", **p)
    assert plain.status_code == 200 and body_bytes(plain) != body_bytes(resp)
    assert app.get("/attention", weighting="norms", **p).status_code == 400
    missing = app.get("/attention", weighting="value", **dict(p, run="w"))
    assert missing.status_code == 404 and "values=True" in missing.get_json()["error"]
    assert app.get("/pyramid", weighting="value", head="0", **p).status_code == 400
    assert app.get("/header", **{k: v for k, v in step.items() if k != "kind"}).get_json()["kinds"][kind][
        "has_value_norms"] is True


def test_long_layers_value_weighted_windows(tmp_path):
    """A layer above the dense limit stores its norms; a value-weighted window rebuilt from q/k equals the dense
    capture's attention value-weighted (rows normalised over all keys, not just the window's)."""
    model, _, _, kind = _llama_gqa()
    ids = torch.randint(1, 100, (1, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), capture_attention(model, values=True) as dense:
        model(input_ids=ids)
    with torch.no_grad(), capture_attention(model, values=True, dense_limit=16) as long:
        model(input_ids=ids)
    ref = dense.last.example(0).kinds[kind]
    got = long.last.example(0).kinds[kind]
    np.testing.assert_allclose(got[1].value_norms, ref[1].value_norms, rtol=1e-5)
    with AttentionWriter(str(tmp_path / "r")) as w:
        log_attention(w, "long", long.last, [f"t{int(t)}" for t in ids[0]], 0)
    (ex,) = read_attention(str(tmp_path), weighting="value", rows=(20, 30), cols=(5, 25))
    assert ex.header["kinds"][kind]["layout"] == fmt.LAYOUT_LONG
    expected = value_weighted(ref[1].attention, ref[1].value_norms)[:, 20:30, 5:25]
    np.testing.assert_allclose(ex.attention[kind][1], expected, atol=2e-3)  # q/k stored as float16


@pytest.mark.parametrize("bad,match", [
    (np.ones((3, 5), np.float32), r"value_norms has shape"),
    (np.full((4, 5), -1.0, np.float32), r"finite and >= 0"),
    (np.full((4, 5), np.nan, np.float32), r"finite and >= 0"),
])
def test_bad_value_norms_write_nothing(tmp_path, bad, match):
    from tensorboard_plugin_attention.records import ExampleAttention, LayerArrays

    a = np.full((4, 5, 5), 0.2, np.float32)
    ex = ExampleAttention({"encoder": [LayerArrays(a, value_norms=bad)]}, {"input": np.arange(5)})
    with AttentionWriter(str(tmp_path / "r")) as w, pytest.raises(ValueError, match=match):
        log_attention(w, "t", ex, list("abcde"), 0)
    assert read_attention(str(tmp_path)) == []


def test_vit_and_clip_vision_value_norms():
    """Vision towers: ViT's o_proj, CLIP's out_proj (BERT above keeps W_O in its parent: attention.output.dense)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, ViTConfig, ViTModel

    torch.manual_seed(0)
    vit = ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                             intermediate_size=64)).eval()
    clip = CLIPVisionModel(CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                            num_attention_heads=4, intermediate_size=64)).eval()
    pixels = torch.randn(1, 3, 32, 32)
    for model, v_proj, o_proj in (
        (vit, vit.layers[0].attention.v_proj, vit.layers[0].attention.o_proj),
        (clip, clip.encoder.layers[0].self_attn.v_proj, clip.encoder.layers[0].self_attn.out_proj),
    ):
        seen = {}
        hook = v_proj.register_forward_hook(lambda mod, i, o: seen.__setitem__("v", o.detach()))
        with torch.no_grad(), capture_attention(model, values=True) as cap:
            model(pixel_values=pixels)
        hook.remove()
        v = seen["v"][0].reshape(17, 4, 8)
        w = o_proj.weight.detach()
        direct = torch.stack([(v[:, h] @ w[:, h * 8:(h + 1) * 8].T).norm(dim=-1) for h in range(4)]).numpy()
        np.testing.assert_allclose(cap.last.example(0).kinds["encoder"][0].value_norms, direct, rtol=1e-4, atol=1e-6)
