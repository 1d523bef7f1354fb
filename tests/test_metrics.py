"""Tests of tensorboard_plugin_attention.metrics against values computed by hand on small matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tensorboard_plugin_attention.metrics import (
    METRIC_NAMES,
    head_metrics,
    induction_targets,
    is_causal,
    jensen_shannon,
    layer_metrics,
    rollout,
)

LN2 = math.log(2.0)


@pytest.fixture(autouse=True)
def _no_float_warnings():
    """Every metric must be computed without divide-by-zero / invalid-value warnings."""
    with np.errstate(all="raise"):
        yield


def heads(*matrices) -> np.ndarray:
    """Stack 2-D matrices into a (heads, q, k) float64 array."""
    return np.stack([np.asarray(m, dtype=np.float64) for m in matrices])


def uniform(n: int, k: int | None = None) -> np.ndarray:
    k = n if k is None else k
    return np.full((n, k), 1.0 / k)


def causal_uniform(n: int) -> np.ndarray:
    tri = np.tri(n)
    return tri / tri.sum(axis=1, keepdims=True)


def one_hot_rows(targets, k: int | None = None) -> np.ndarray:
    """Row i puts all its weight on key targets[i]."""
    k = len(targets) if k is None else k
    m = np.zeros((len(targets), k))
    m[np.arange(len(targets)), targets] = 1.0
    return m


def assert_metrics(metrics: dict, expected: dict, head: int = 0) -> None:
    for name, value in expected.items():
        got = metrics[name][head]
        if value is None:
            assert np.isnan(got), f"{name}: expected NaN, got {got}"
        else:
            assert got == pytest.approx(value, abs=1e-12), f"{name}: expected {value}, got {got}"


# ---------------------------------------------------------------- head_metrics: basic patterns


def test_returns_every_metric_as_float64_per_head():
    m = head_metrics(heads(uniform(4), np.eye(4), causal_uniform(4)).astype(np.float32))
    assert tuple(m) == METRIC_NAMES
    for value in m.values():
        assert value.shape == (3,) and value.dtype == np.float64


def test_uniform():
    # n = 4, every weight 1/4. distance: rows 0..3 have mean |i-j| = 1.5, 1, 1, 1.5 -> 1.25
    m = head_metrics(heads(uniform(4)), token_ids=["a", "b", "a", "b"])
    assert_metrics(m, {"entropy": 1.0, "distance": 1.25, "sink": 0.25, "prev_token": 0.25, "induction": 0.25})


def test_identity():
    m = head_metrics(heads(np.eye(4)), token_ids=[1, 2, 1, 2])
    # sink: only row 0 puts weight on key 0 -> 1/4; induction targets of rows 2, 3 are keys 1, 2 -> 0
    assert_metrics(m, {"entropy": 0.0, "distance": 0.0, "sink": 0.25, "prev_token": 0.0, "induction": 0.0})


def test_previous_token():
    # row 0 has no previous token and attends to itself; rows 1..3 attend to i - 1
    m = head_metrics(heads(one_hot_rows([0, 0, 1, 2])))
    assert_metrics(m, {"entropy": 0.0, "distance": 0.75, "sink": 0.5, "prev_token": 1.0, "induction": None})


def test_previous_token_distance_excluding_first_row_is_one():
    n = 6
    m = head_metrics(heads(one_hot_rows([0] + list(range(n - 1)))))
    assert m["prev_token"][0] == pytest.approx(1.0)
    assert m["distance"][0] == pytest.approx((n - 1) / n)  # row 0 contributes 0, the others 1


def test_sink():
    # every row on key 0: distance is the mean of i = 1.5; only row 1 looks at its previous token
    m = head_metrics(heads(one_hot_rows([0, 0, 0, 0])))
    assert_metrics(m, {"entropy": 0.0, "distance": 1.5, "sink": 1.0, "prev_token": 1 / 3})


def test_heads_are_independent():
    m = head_metrics(heads(one_hot_rows([0, 0, 0, 0]), np.eye(4), one_hot_rows([0, 0, 1, 2])))
    np.testing.assert_allclose(m["sink"], [1.0, 0.25, 0.5])
    np.testing.assert_allclose(m["prev_token"], [1 / 3, 0.0, 1.0])
    np.testing.assert_allclose(m["distance"], [1.5, 0.0, 0.75])


# ---------------------------------------------------------------- entropy and causal masks


def test_causal_uniform_rows_have_entropy_one():
    m = head_metrics(heads(causal_uniform(5)))  # inferred causal: row i sees i + 1 keys
    assert m["entropy"][0] == pytest.approx(1.0)
    assert head_metrics(heads(causal_uniform(5)), causal=True)["entropy"][0] == pytest.approx(1.0)


def test_causal_uniform_other_metrics():
    n = 4
    m = head_metrics(heads(causal_uniform(n)))
    assert m["distance"][0] == pytest.approx(0.75)  # row i: mean of 0..i = i / 2; mean over rows (n-1)/4
    assert m["sink"][0] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert m["prev_token"][0] == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)


def test_causal_forced_off_normalises_by_k_len():
    # every row then has 4 possible keys: H(row i) = log(i + 1), row 0 included with entropy 0
    m = head_metrics(heads(causal_uniform(4)), causal=False)
    expected = (0 + math.log(2) + math.log(3) + math.log(4)) / (4 * math.log(4))
    assert m["entropy"][0] == pytest.approx(expected)


def test_causal_entropy_excludes_first_row():
    # row 0 (1 visible key) is excluded; rows 1..3 uniform over their visible keys, except row 3 one-hot
    a = causal_uniform(4)
    a[3] = [0, 0, 0, 1]
    assert head_metrics(heads(a))["entropy"][0] == pytest.approx(2 / 3)


def test_causal_inference_tolerance():
    a = causal_uniform(4)
    noisy = a + np.triu(np.full((4, 4), 1e-7), 1)
    assert is_causal(noisy) and is_causal(heads(noisy))
    assert not is_causal(a + np.triu(np.full((4, 4), 1e-3), 1))
    assert not is_causal(uniform(3, 4))
    assert is_causal(np.ones((1, 1)))


def test_entropy_of_partial_row():
    # non-causal 2x2: row 0 uniform (entropy 1), row 1 one-hot (0) -> 0.5
    m = head_metrics(heads([[0.5, 0.5], [0.0, 1.0]]))
    assert m["entropy"][0] == pytest.approx(0.5)


def test_entropy_of_known_distribution():
    p = np.array([0.5, 0.25, 0.25, 0.0])
    h = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    m = head_metrics(heads(np.tile(p, (4, 1))))
    assert m["entropy"][0] == pytest.approx(h / math.log(4))


# ---------------------------------------------------------------- induction


def induction_attention(tokens) -> np.ndarray:
    """Each query whose token occurred before attends to the position after its latest occurrence;
    the others attend to themselves."""
    targets = []
    for i, t in enumerate(tokens):
        earlier = [j for j in range(i) if tokens[j] == t]
        targets.append(earlier[-1] + 1 if earlier else i)
    return one_hot_rows(targets)


def test_induction_pattern_scores_one():
    tokens = ["A", "B", "C", "A", "B", "C"]
    m = head_metrics(heads(induction_attention(tokens)), tokens)
    assert m["induction"][0] == pytest.approx(1.0)


def test_non_induction_patterns_score_zero():
    tokens = ["A", "B", "C", "A", "B", "C"]
    prev = one_hot_rows([0, 0, 1, 2, 3, 4])
    sink = one_hot_rows([0] * 6)
    m = head_metrics(heads(prev, sink, np.eye(6)), tokens)
    np.testing.assert_allclose(m["induction"], [0.0, 0.0, 0.0])


def test_induction_partial():
    # queries 3, 4, 5 have targets 1, 2, 3; give them 1, 0.5 and 0 of their weight
    tokens = [7, 8, 9, 7, 8, 9]
    a = np.eye(6)
    a[3] = one_hot_rows([1], 6)[0]
    a[4] = [0, 0, 0.5, 0, 0.5, 0]
    m = head_metrics(heads(a), tokens)
    assert m["induction"][0] == pytest.approx(1.5 / 3)


def test_induction_with_several_earlier_occurrences_sums_over_targets():
    # tokens A B A B A: query 4 (A) has targets 1 and 3; its score is the total mass on both
    tokens = ["A", "B", "A", "B", "A"]
    latest = induction_attention(tokens)
    assert head_metrics(heads(latest), tokens)["induction"][0] == pytest.approx(1.0)
    split = latest.copy()
    split[4] = [0, 0.5, 0, 0.5, 0]
    assert head_metrics(heads(split), tokens)["induction"][0] == pytest.approx(1.0)
    half = latest.copy()
    half[4] = [0, 0, 0, 0.5, 0.5]  # half of row 4 on a target
    assert head_metrics(heads(half), tokens)["induction"][0] == pytest.approx((1 + 1 + 0.5) / 3)


def test_induction_adjacent_repeat_targets_the_query_itself():
    # tokens A A: query 1's earlier occurrence is j = 0, its target j + 1 = 1 is the query itself
    a = np.eye(2)
    assert head_metrics(heads(a), ["A", "A"])["induction"][0] == pytest.approx(1.0)
    np.testing.assert_array_equal(induction_targets(["A", "A"]), [[False, False], [False, True]])


def test_induction_targets_mask():
    t = induction_targets(["x", "y", "x", "y", "x"])
    expected = np.zeros((5, 5), dtype=bool)
    expected[2, 1] = expected[3, 2] = expected[4, 1] = expected[4, 3] = True
    np.testing.assert_array_equal(t, expected)


def test_induction_token_types_agree():
    tokens = [5, 3, 5, 3, 9, 5]
    a = heads(induction_attention(tokens), uniform(6))
    expected = head_metrics(a, tokens)["induction"]
    for variant in (np.array(tokens), np.array([str(t) for t in tokens]), tuple(tokens), [(t, "tok") for t in tokens]):
        np.testing.assert_allclose(head_metrics(a, variant)["induction"], expected)


def test_induction_nan_without_repeats_or_tokens():
    a = heads(uniform(4))
    assert np.isnan(head_metrics(a, ["a", "b", "c", "d"])["induction"][0])
    assert np.isnan(head_metrics(a)["induction"][0])


def test_token_ids_length_mismatch_raises():
    with pytest.raises(ValueError, match="token_ids"):
        head_metrics(heads(uniform(4)), [1, 2, 3])


# ---------------------------------------------------------------- edge cases


def test_length_one():
    m = head_metrics(heads([[1.0]], [[1.0]]), token_ids=[42])
    for h in range(2):
        assert_metrics(m, {"entropy": None, "distance": 0.0, "sink": 1.0, "prev_token": None, "induction": None}, h)


def test_cross_attention():
    # 3 decoder queries over 5 encoder keys, uniform: entropy 1, sink 1/5, position metrics NaN
    m = head_metrics(heads(uniform(3, 5), uniform(3, 5)), token_ids=[1, 1, 1])
    for h in range(2):
        assert_metrics(m, {"entropy": 1.0, "distance": None, "sink": 0.2, "prev_token": None, "induction": None}, h)


def test_cross_attention_single_key():
    m = head_metrics(heads(np.ones((3, 1))))
    assert_metrics(m, {"entropy": None, "sink": 1.0, "distance": None})


def test_causal_rectangular_uses_bottom_right_mask():
    # KV cache: 2 new queries over 4 keys; query i sees keys <= i + 2 (3 and 4 keys)
    a = np.array([[1 / 3, 1 / 3, 1 / 3, 0], [0.25, 0.25, 0.25, 0.25]])
    assert head_metrics(heads(a), causal=True)["entropy"][0] == pytest.approx(1.0)
    assert head_metrics(heads(a))["entropy"][0] < 1.0  # inferred non-causal: normalised by 4 keys


def test_causal_with_more_queries_than_keys_raises():
    with pytest.raises(ValueError, match="causal"):
        head_metrics(heads(uniform(4, 2)), causal=True)


def test_empty_attention_is_nan():
    m = head_metrics(np.zeros((2, 0, 0)))
    for value in m.values():
        assert value.shape == (2,) and np.isnan(value).all()


def test_wrong_rank_raises():
    with pytest.raises(ValueError, match="3 dimensions"):
        head_metrics(uniform(4))


def test_metrics_stay_in_range_on_random_attention():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16, 16)) * 3
    x = np.where(np.tri(16, dtype=bool), x, -np.inf)
    a = np.exp(x - x.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    m = head_metrics(a, rng.integers(0, 4, 16))
    for name in ("entropy", "sink", "prev_token", "induction"):
        assert ((m[name] >= 0) & (m[name] <= 1 + 1e-12)).all(), name
    assert ((m["distance"] >= 0) & (m["distance"] <= 15)).all()


# ---------------------------------------------------------------- layer_metrics


def test_layer_metrics_stacks_layers():
    tokens = ["A", "B", "C", "A"]  # query 3 repeats token 0: its induction target is key 1
    layers = [heads(np.eye(4), causal_uniform(4)), heads(one_hot_rows([0, 0, 1, 2]), induction_attention(tokens))]
    m = layer_metrics(layers, tokens)
    assert tuple(m) == METRIC_NAMES
    for name in METRIC_NAMES:
        assert m[name].shape == (2, 2) and m[name].dtype == np.float64
        for i, layer in enumerate(layers):
            np.testing.assert_array_equal(m[name][i], head_metrics(layer, tokens)[name])
    np.testing.assert_allclose(m["induction"][1], [0.0, 1.0])


def test_layer_metrics_accepts_a_4d_array():
    stacked = np.stack([heads(np.eye(3)), heads(uniform(3))])
    np.testing.assert_allclose(layer_metrics(stacked)["sink"], [[1 / 3], [1 / 3]])


def test_layer_metrics_infers_causal_for_the_whole_model():
    # one non-causal layer makes the model non-causal, so the causal-uniform layer is normalised by k_len
    m = layer_metrics([heads(causal_uniform(4)), heads(uniform(4))])
    expected = head_metrics(heads(causal_uniform(4)), causal=False)["entropy"][0]
    assert m["entropy"][0, 0] == pytest.approx(expected)
    assert layer_metrics([heads(causal_uniform(4)), heads(np.eye(4))])["entropy"][0, 0] == pytest.approx(1.0)


def test_layer_metrics_errors():
    with pytest.raises(ValueError, match="at least one layer"):
        layer_metrics([])
    with pytest.raises(ValueError):
        layer_metrics([heads(np.eye(3)), heads(np.eye(3), np.eye(3))])  # heads differ


# ---------------------------------------------------------------- jensen_shannon


def test_js_identical_is_zero():
    a = heads(uniform(4), np.eye(4), causal_uniform(4))
    np.testing.assert_allclose(jensen_shannon(a, a), [0.0, 0.0, 0.0], atol=1e-15)


def test_js_disjoint_is_ln2():
    a = heads(one_hot_rows([0, 0, 0]))
    b = heads(one_hot_rows([1, 2, 1]))
    assert jensen_shannon(a, b)[0] == pytest.approx(LN2)


def test_js_known_value():
    # p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4)
    p = heads([[1.0, 0.0]])
    q = heads([[0.5, 0.5]])
    expected = 0.5 * math.log(4 / 3) + 0.5 * (0.5 * math.log(2 / 3) + 0.5 * math.log(2))
    assert jensen_shannon(p, q)[0] == pytest.approx(expected)
    # two rows: the mean of the per-row values
    p2, q2 = heads([[1.0, 0.0], [1.0, 0.0]]), heads([[0.5, 0.5], [1.0, 0.0]])
    assert jensen_shannon(p2, q2)[0] == pytest.approx(expected / 2)


def test_js_symmetric_and_bounded():
    rng = np.random.default_rng(1)
    a = rng.dirichlet(np.full(8, 0.3), size=(3, 8))
    b = rng.dirichlet(np.full(8, 0.3), size=(3, 8))
    b[0, :, :4] = 0  # zeros in one argument only
    b[0] /= b[0].sum(-1, keepdims=True)
    ab, ba = jensen_shannon(a, b), jensen_shannon(b, a)
    assert ab.shape == (3,) and ab.dtype == np.float64
    np.testing.assert_allclose(ab, ba, rtol=1e-12)
    assert ((ab > 0) & (ab <= LN2)).all()


def test_js_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        jensen_shannon(heads(np.eye(3)), heads(np.eye(3), np.eye(3)))


# ---------------------------------------------------------------- rollout


def test_rollout_of_identity_layers_is_identity():
    np.testing.assert_allclose(rollout([heads(np.eye(5), np.eye(5))] * 3), np.eye(5))


def test_rollout_two_layers_by_hand():
    # layer 1: heads average to A1 = [[1, 0], [.5, .5]] -> Â1 = .5 I + .5 A1 = [[1, 0], [.25, .75]]
    layer1 = heads([[1, 0], [1, 0]], [[1, 0], [0, 1]])
    # layer 2: A2 = [[0, 1], [1, 0]] -> Â2 = [[.5, .5], [.5, .5]]
    layer2 = heads([[0, 1], [1, 0]])
    np.testing.assert_allclose(rollout([layer1, layer2]), [[0.625, 0.375], [0.625, 0.375]])  # Â2 @ Â1
    np.testing.assert_allclose(rollout([layer2, layer1]), [[0.5, 0.5], [0.5, 0.5]])  # Â1 @ Â2


def test_rollout_head_fusion_and_renormalisation():
    layer = heads([[1, 0], [1, 0]], [[1, 0], [0, 1]])
    # max: [[1, 0], [1, 1]] -> .5 I + .5 A = [[1, 0], [.5, 1]] -> rows renormalised
    np.testing.assert_allclose(rollout([layer], head_fusion="max"), [[1, 0], [1 / 3, 2 / 3]])
    # min: [[1, 0], [0, 0]] -> [[1, 0], [0, .5]] -> [[1, 0], [0, 1]]
    np.testing.assert_allclose(rollout([layer], head_fusion="min"), np.eye(2))


def test_rollout_residual_extremes():
    a = causal_uniform(3)
    b = one_hot_rows([0, 0, 1])
    np.testing.assert_allclose(rollout([heads(a), heads(b)], residual=0.0), b @ a)
    np.testing.assert_allclose(rollout([heads(a), heads(b)], residual=1.0), np.eye(3))


def test_rollout_rows_sum_to_one_and_accepts_fused_layers():
    rng = np.random.default_rng(2)
    layers = [rng.dirichlet(np.ones(6), size=(4, 6)) for _ in range(3)]
    r = rollout(layers)
    assert r.shape == (6, 6) and r.dtype == np.float64
    np.testing.assert_allclose(r.sum(-1), 1.0)
    np.testing.assert_allclose(rollout([layer.mean(0) for layer in layers]), r)


def test_rollout_errors():
    with pytest.raises(ValueError, match="square"):
        rollout([heads(uniform(2, 3))])
    with pytest.raises(ValueError, match="head_fusion"):
        rollout([heads(np.eye(2))], head_fusion="median")
    with pytest.raises(ValueError, match="residual"):
        rollout([heads(np.eye(2))], residual=1.5)
    with pytest.raises(ValueError, match="at least one layer"):
        rollout([])
    with pytest.raises(ValueError, match="earlier layers"):
        rollout([heads(np.eye(2)), heads(np.eye(3))])


# ------------------------------------------------------------------ duplicate-token, diagonal, retrieval
def _reference(a: np.ndarray, tokens: list) -> dict:
    """Per-example reference of the three scores, by loops over rows (docs/metrics.md)."""
    n = len(tokens)
    dup_rows = [i for i in range(n) if tokens[i] in tokens[:i]]
    duplicate = sum(sum(a[i, j] for j in range(i) if tokens[j] == tokens[i]) for i in dup_rows) / len(dup_rows)
    diagonal = sum(a[i, i] for i in range(n)) / n
    copyable = [i for i in range(n - 1) if tokens[i + 1] in tokens[:i + 1]]
    hits = [i for i in copyable if tokens[int(np.argmax(a[i]))] == tokens[i + 1]]
    return {"duplicate": duplicate, "diagonal": diagonal, "retrieval": len(hits) / len(copyable)}


def test_duplicate_diagonal_and_retrieval_equal_a_per_row_reference():
    rng = np.random.default_rng(0)
    tokens = [int(t) for t in rng.integers(0, 6, 24)]
    a = np.tril(rng.random((3, 24, 24)) ** 4)
    a /= a.sum(-1, keepdims=True)
    got = head_metrics(a, tokens, causal=True)
    for h in range(3):
        for name, value in _reference(a[h], tokens).items():
            assert got[name][h] == pytest.approx(value, abs=1e-12), name


def test_duplicate_token_and_retrieval_heads_score_one():
    tokens = ["A", "B", "C", "A", "B", "C"]
    # duplicate head: each repeated token looks at its own earlier occurrence (others at themselves)
    dup = one_hot_rows([0, 1, 2, 0, 1, 2])
    # retrieval (copy-paste) head: row i puts its largest weight on an earlier copy of token i + 1
    ret = one_hot_rows([0, 1, 0, 1, 2, 5])
    m = head_metrics(heads(dup, ret, np.eye(6)), tokens, causal=True)
    assert m["duplicate"][0] == pytest.approx(1.0) and m["duplicate"][1] == pytest.approx(0.0)
    assert m["retrieval"][1] == pytest.approx(1.0)  # copyable rows: 2 (next A), 3 (next B), 4 (next C)
    assert m["retrieval"][0] == pytest.approx(0.0) and m["retrieval"][2] == pytest.approx(0.0)
    np.testing.assert_allclose(m["diagonal"], [0.5, 0.5, 1.0])  # rows 0, 1, 2 / 0, 1, 5 on themselves


def test_retrieval_needs_a_causal_self_attention_with_tokens():
    tokens = ["A", "B", "A", "B"]
    a = heads(np.full((4, 4), 0.25))
    assert np.isnan(head_metrics(a, tokens, causal=False)["retrieval"][0])
    assert np.isnan(head_metrics(heads(np.tril(np.ones((4, 4))) / np.arange(1, 5)[:, None]), None)["retrieval"][0])
    assert np.isnan(head_metrics(a, ["A", "B", "C", "D"], causal=False)["duplicate"][0])
