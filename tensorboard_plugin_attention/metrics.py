"""Per-head attention metrics, Jensen-Shannon divergence and attention rollout (numpy only).

Every function takes attention probabilities that are already trimmed of padding: one layer of one
example is ``(heads, q_len, k_len)`` with rows summing to 1. Everything is vectorised over heads and
tokens; only the layers are looped over. Formulas, rationale and NaN conventions: ``docs/metrics.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Sequence

import numpy as np

__all__ = [
    "METRIC_NAMES",
    "CAUSAL_TOLERANCE",
    "head_metrics",
    "induction_targets",
    "layer_metrics",
    "is_causal",
    "jensen_shannon",
    "jensen_shannon_codes",
    "fuse_heads_codes",
    "rollout",
    "value_weighted",
    "FUSIONS",
]

# Keys of the dicts returned by head_metrics / layer_metrics, in display order.
METRIC_NAMES = ("entropy", "distance", "sink", "prev_token", "induction", "duplicate", "diagonal", "retrieval")

# A square attention counts as causal when every weight above the diagonal is at most this.
CAUSAL_TOLERANCE = 1e-6

FUSIONS = ("mean", "max", "min")  # head fusions of rollout


def _as_attention(attention: np.ndarray, ndim: int, name: str = "attention") -> np.ndarray:
    """``attention`` as a float64 array of ``ndim`` dimensions (copied only when needed)."""
    a = np.asarray(attention, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return a


def _weighted_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of ``values`` ``(heads, rows)`` over the rows where ``mask`` is true; NaN if none is."""
    count = int(mask.sum())
    if count == 0:
        return np.full(values.shape[0], np.nan)
    return values @ mask.astype(np.float64) / count


def is_causal(attention: np.ndarray, tolerance: float = CAUSAL_TOLERANCE) -> bool:
    """True if ``attention`` ``(..., q, k)`` is square and its strict upper triangle is all ``<= tolerance``."""
    a = np.asarray(attention)
    q, k = a.shape[-2:]
    if q != k:
        return False
    if q < 2:
        return True
    upper = np.triu(np.ones((q, k), dtype=bool), 1)
    return bool(np.all(np.abs(a[..., upper]) <= tolerance))


def token_codes(token_ids: Sequence[Hashable]) -> np.ndarray:
    """Integer codes with equal codes for equal tokens (any hashable tokens)."""
    arr = np.asarray(token_ids) if isinstance(token_ids, np.ndarray) else None
    if arr is not None and arr.ndim == 1 and arr.dtype.kind in "biuUS":
        return np.unique(arr, return_inverse=True)[1].reshape(-1)
    lookup: dict[Hashable, int] = {}
    return np.fromiter((lookup.setdefault(t, len(lookup)) for t in token_ids), dtype=np.intp, count=len(token_ids))


def induction_targets(token_ids: Sequence[Hashable]) -> np.ndarray:
    """Boolean ``(n, n)`` mask: ``[i, j + 1]`` is true when ``token_ids[j] == token_ids[i]`` for some ``j < i``.

    Row ``i`` marks the positions right after every earlier occurrence of token ``i`` (all ``<= i``);
    a row is all false when token ``i`` has not occurred before.
    """
    codes = token_codes(token_ids)
    n = codes.shape[0]
    earlier = (codes[:, None] == codes[None, :]) & np.tri(n, n, -1, dtype=bool)  # [i, j]: same token, j < i
    targets = np.zeros((n, n), dtype=bool)
    targets[:, 1:] = earlier[:, :-1]  # shift j -> j + 1
    return targets


def head_metrics(
    attention: np.ndarray,
    token_ids: Sequence[Hashable] | None = None,
    *,
    causal: bool | None = None,
) -> dict[str, np.ndarray]:
    """Scalar summaries of every head of ONE layer of ONE example.

    Args:
        attention: ``(heads, q_len, k_len)`` attention probabilities (rows sum to 1, padding trimmed).
        token_ids: the ``q_len`` tokens (ids or strings, any hashables) of a self-attention; only
            ``induction`` uses them.
        causal: whether query ``i`` can only see keys ``<= i`` (for ``q_len < k_len``: keys
            ``<= i + k_len - q_len``, the bottom-right aligned mask of a KV cache). ``None`` infers it:
            causal iff square and the strict upper triangle is ``<= CAUSAL_TOLERANCE``. Only ``entropy``
            depends on it (through the number of visible keys).

    Returns:
        ``{name: float64 array (heads,)}`` for each name in ``METRIC_NAMES``:

        - ``entropy``: mean over rows with >1 visible key of ``H(row) / log(visible keys)``, in [0, 1].
        - ``distance``: mean over rows of ``sum_j a_ij |i - j|`` in tokens (NaN for cross attention).
        - ``sink``: mean over rows of the weight on key 0.
        - ``prev_token``: mean over rows ``i >= 1`` of ``a_{i, i-1}`` (NaN for cross attention or q_len < 2).
        - ``induction``: mean, over queries whose token occurred before, of the attention mass on the
          positions right after those earlier occurrences (NaN without token_ids, for cross attention,
          or without repeated tokens).
        - ``duplicate``: mean, over the same queries, of the attention mass on those earlier occurrences
          themselves (duplicate-token heads; NaN as for ``induction``).
        - ``diagonal``: mean over rows of ``a_ii``, the weight on the query's own position (NaN for cross
          attention).
        - ``retrieval``: of a causal attention, the share of queries ``i`` whose next token ``t_{i+1}`` occurred
          at some ``j <= i`` where the row's largest weight is on such a ``j`` (copy-paste retrieval, Wu et al.
          2024, on teacher-forced probes; NaN without token_ids, for non-causal or cross attention, or when no
          next token occurred before).
    """
    a = _as_attention(attention, 3)
    heads, q, k = a.shape
    if q == 0 or k == 0:
        return {name: np.full(heads, np.nan) for name in METRIC_NAMES}
    if causal is None:
        causal = is_causal(a)
    if causal and q > k:
        raise ValueError(f"causal attention needs q_len <= k_len, got shape {a.shape}")
    if token_ids is not None and len(token_ids) != q:
        raise ValueError(f"token_ids has {len(token_ids)} tokens, attention has q_len {q}")
    rows = row_sums(a, 0, token_ids)
    if token_ids is not None and causal and q == k:
        rows["retrieval"], rows["copyable"] = retrieval_rows(a.argmax(axis=-1), token_ids)
    return metrics_from_rows(rows, q, k, causal=causal)


# The metrics are means over query rows of per-row sums, so they can be computed from rows streamed in
# chunks (long layers never hold the whole matrix): ``row_sums`` of each chunk, then ``metrics_from_rows``.
ROW_SUMS = ("entropy", "sink", "distance", "prev_token", "induction", "duplicate", "diagonal", "repeated")


def row_sums(rows: np.ndarray, first_row: int, token_ids: Sequence[Hashable] | None = None) -> dict[str, np.ndarray]:
    """Per-row sums of the rows ``first_row .. first_row + r - 1`` (``rows``: ``(heads, r, k_len)``) of one
    layer: ``{name: (heads, r)}`` for each name in ``ROW_SUMS`` (``repeated``: ``(r,)`` booleans)."""
    a = _as_attention(rows, 3, "rows")
    heads, r, k = a.shape
    i = np.arange(first_row, first_row + r)
    plogp = np.zeros_like(a)
    np.log(a, out=plogp, where=a > 0)  # 0 log 0 = 0; tiny negative noise counts as 0 too
    plogp *= a
    out = {"entropy": -plogp.sum(axis=-1), "sink": a[:, :, 0].copy()}
    out["distance"] = np.einsum("hrk,rk->hr", a, np.abs(i[:, None] - np.arange(k)[None, :]).astype(np.float64))
    prev = np.zeros((heads, r))
    has_prev = (i >= 1) & (i - 1 < k)
    prev[:, has_prev] = a[:, np.flatnonzero(has_prev), i[has_prev] - 1]
    out["prev_token"] = prev
    diagonal = np.zeros((heads, r))
    has_self = i < k
    diagonal[:, has_self] = a[:, np.flatnonzero(has_self), i[has_self]]
    out["diagonal"] = diagonal
    same = None
    if token_ids is not None:
        codes = token_codes(token_ids)
        if len(codes) >= k:
            same = (codes[i][:, None] == codes[None, :k]) & (np.arange(k)[None, :] < i[:, None])  # [i, j]: j < i
    if same is None:
        out["induction"] = np.zeros((heads, r))
        out["duplicate"] = np.zeros((heads, r))
        out["repeated"] = np.zeros(r, dtype=bool)
    else:
        targets = np.zeros((r, k))  # [i, j + 1]: token j equals token i, j < i
        targets[:, 1:] = same[:, :-1]
        out["induction"] = np.einsum("hrk,rk->hr", a, targets)
        out["duplicate"] = np.einsum("hrk,rk->hr", a, same.astype(np.float64))
        out["repeated"] = same.any(axis=1)
    out["has_tokens"] = token_ids is not None
    return out


def retrieval_rows(best_key: np.ndarray, token_ids: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray]:
    """``(hits (heads, n), copyable (n,))`` of a causal self-attention of ``n`` tokens for ``retrieval``:
    row ``i`` is copyable when its next token occurred at some ``j <= i``, and a hit of a head when that
    head's largest weight (``best_key[h, i]``, its key index) is on a position holding the next token."""
    codes = token_codes(token_ids)
    n = codes.shape[0]
    first = np.full(int(codes.max(initial=0)) + 1, n)
    np.minimum.at(first, codes, np.arange(n))
    copyable = np.zeros(n, dtype=bool)
    hits = np.zeros(best_key.shape[:1] + (n,), dtype=bool)
    if n >= 2:
        nxt = codes[1:]
        copyable[:-1] = first[nxt] <= np.arange(n - 1)
        best = np.clip(best_key[:, :-1].astype(np.intp), 0, n - 1)
        hits[:, :-1] = (codes[best] == nxt[None, :]) & copyable[None, :-1]
    return hits, copyable


def metrics_from_rows(rows: dict, q: int, k: int, *, causal: bool) -> dict[str, np.ndarray]:
    """``head_metrics`` from the ``row_sums`` of every row (``{name: (heads, q)}``, all rows in order)."""
    entropy_rows = np.asarray(rows["entropy"], np.float64)
    heads = entropy_rows.shape[0]
    nan = np.full(heads, np.nan)
    i = np.arange(q)
    visible = i + (k - q + 1) if causal else np.full(q, k)
    informative = visible > 1
    log_visible = np.log(np.where(informative, visible, 2))
    entropy = _weighted_mean(entropy_rows / log_visible, informative)
    sink = np.asarray(rows["sink"], np.float64).mean(axis=-1)
    out = {name: nan.copy() for name in METRIC_NAMES}
    out.update(entropy=entropy, sink=sink)
    if q != k:
        return out
    out["distance"] = np.asarray(rows["distance"], np.float64).sum(axis=-1) / q
    out["prev_token"] = np.asarray(rows["prev_token"], np.float64)[:, 1:].mean(axis=-1) if q >= 2 else nan.copy()
    if "diagonal" in rows:
        out["diagonal"] = np.asarray(rows["diagonal"], np.float64).mean(axis=-1)
    repeated = np.asarray(rows["repeated"], bool)
    if rows.get("has_tokens") and repeated.any():
        # sums of a over each row's targets; rows without targets contribute 0 to the totals
        out["induction"] = np.asarray(rows["induction"], np.float64).sum(axis=-1) / int(repeated.sum())
        if "duplicate" in rows:
            out["duplicate"] = np.asarray(rows["duplicate"], np.float64).sum(axis=-1) / int(repeated.sum())
    copyable = np.asarray(rows.get("copyable", ()), bool)
    if causal and rows.get("has_tokens") and copyable.any():
        out["retrieval"] = np.asarray(rows["retrieval"], np.float64).sum(axis=-1) / int(copyable.sum())
    return out


def layer_metrics(
    layers: Sequence[np.ndarray],
    token_ids: Sequence[Hashable] | None = None,
    causal: bool | None = None,
) -> dict[str, np.ndarray]:
    """``head_metrics`` of every layer, stacked: ``{name: float64 array (layers, heads)}``.

    ``layers`` is a sequence of ``(heads, q_len, k_len)`` arrays (or one ``(layers, heads, q, k)`` array),
    all with the same number of heads. ``causal=None`` is inferred once for the whole model (causal iff
    every layer looks causal), so all layers use the same convention.
    """
    layers = [_as_attention(layer, 3, f"layers[{i}]") for i, layer in enumerate(layers)]
    if not layers:
        raise ValueError("layer_metrics needs at least one layer")
    if causal is None:
        causal = all(is_causal(layer) for layer in layers)
    per_layer = [head_metrics(layer, token_ids, causal=causal) for layer in layers]
    return {name: np.stack([m[name] for m in per_layer]) for name in METRIC_NAMES}


def jensen_shannon(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-head Jensen-Shannon divergence between two attentions of the same example.

    ``a`` and ``b`` are ``(heads, q, k)`` (any ``(..., q, k)`` works) with rows summing to 1. Returns
    ``(heads,)``: the mean over query rows of ``JS(a_i, b_i)`` in nats, natural log, so each value lies
    in ``[0, ln 2]``. Zeros are safe (``0 log 0 = 0``); symmetric in ``a`` and ``b``.
    """
    p = np.asarray(a, dtype=np.float64)
    r = np.asarray(b, dtype=np.float64)
    if p.shape != r.shape or p.ndim < 2:
        raise ValueError(f"jensen_shannon needs two arrays of the same shape (..., q, k), got {p.shape} and {r.shape}")
    p = np.clip(p, 0.0, None)
    r = np.clip(r, 0.0, None)
    m = 0.5 * (p + r)
    log_m = np.zeros_like(m)
    np.log(m, out=log_m, where=m > 0)

    def kl_terms(x: np.ndarray) -> np.ndarray:
        # x log(x / m) where x > 0 (then m > 0 too); 0 elsewhere
        log_x = np.zeros_like(x)
        np.log(x, out=log_x, where=x > 0)
        return x * (log_x - log_m)

    js_rows = 0.5 * (kl_terms(p) + kl_terms(r)).sum(axis=-1)  # (..., q)
    if js_rows.shape[-1] == 0:
        return np.full(js_rows.shape[:-1], np.nan)
    return np.clip(js_rows.mean(axis=-1), 0.0, np.log(2.0))


def value_weighted(attention: np.ndarray, value_norms: np.ndarray) -> np.ndarray:
    """Value-weighted attention (Kobayashi et al. 2020, "Attention is not only a weight"):
    ``a_ij * ||f(x_j)|| / sum_j' a_ij' * ||f(x_j')||`` with ``||f(x_j)|| = ||v_j W_O^h||`` the norm of key ``j``'s
    transformed value in head ``h``. ``attention`` is ``(..., heads, q, k)`` with whole rows, ``value_norms``
    ``(..., heads, k)`` (or ``(k,)`` for one head); a row whose weighted sum is 0 stays 0. float32.
    """
    a = np.asarray(attention, np.float32)
    n = np.asarray(value_norms, np.float32)
    if n.shape[-1] != a.shape[-1] or n.shape[:-1] != a.shape[:-2][len(a.shape) - 1 - n.ndim:]:
        raise ValueError(f"value norms {n.shape} do not match attention {a.shape} (..., heads, q, k)")
    w = a * n[..., None, :]
    total = w.sum(axis=-1, keepdims=True)
    return np.divide(w, total, out=np.zeros_like(w), where=total > 0)


def rollout(layers: Sequence[np.ndarray], *, residual: float = 0.5, head_fusion: str = "mean") -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020) of one example's self-attention.

    Each layer ``(heads, n, n)`` (or an already fused ``(n, n)``) is fused over heads (``head_fusion``:
    ``"mean"``, ``"max"`` or ``"min"``) into ``A``, mixed with the residual connection as
    ``residual * I + (1 - residual) * A``, re-normalised to rows summing to 1, and the layers are
    multiplied with the last layer on the left: ``R = Â_L … Â_2 Â_1``. ``R[i, j]`` is how much input
    token ``j`` flows into output position ``i``. Returns float64 ``(n, n)``; rows sum to 1.
    """
    if head_fusion not in FUSIONS:
        raise ValueError(f"head_fusion must be one of {FUSIONS}, got {head_fusion!r}")
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must lie in [0, 1], got {residual}")
    result: np.ndarray | None = None
    for index, layer in enumerate(layers):
        a = np.asarray(layer, dtype=np.float64)
        if a.ndim == 3:
            a = getattr(a, head_fusion)(axis=0)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(f"rollout needs square self-attention (heads, n, n), layers[{index}] has shape {np.shape(layer)}")
        if result is not None and a.shape != result.shape:
            raise ValueError(f"layers[{index}] has shape {a.shape[-2:]}, earlier layers {result.shape}")
        mixed = (1.0 - residual) * a
        mixed[np.diag_indices_from(mixed)] += residual
        totals = mixed.sum(axis=-1, keepdims=True)
        mixed = np.divide(mixed, totals, out=np.zeros_like(mixed), where=totals > 0)
        result = mixed if result is None else mixed @ result
    if result is None:
        raise ValueError("rollout needs at least one layer")
    return result


# ---------------------------------------------------------------------- on 8-bit codes (the stored form)
# The backend works on stored log8 codes (``format.LUT`` decodes them); these kernels take the table as an
# argument so this module stays free of the format.

@functools.lru_cache(maxsize=4)
def _js_table(lut: bytes) -> np.ndarray:
    """``T[a * 256 + b]``: the Jensen-Shannon term of one weight pair decoded from codes ``a`` and ``b``
    (``jensen_shannon`` of one-element rows), so the divergence of two coded layers is a table look-up and a
    sum instead of three logarithms per weight."""
    values = np.frombuffer(lut, np.float32).astype(np.float64)
    return jensen_shannon(np.repeat(values, 256).reshape(-1, 1, 1), np.tile(values, 256).reshape(-1, 1, 1))


def jensen_shannon_codes(a: np.ndarray, b: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Per-head ``jensen_shannon(lut[a], lut[b])`` of two coded layers ``(heads, q, k)`` of uint8 codes (the
    same values up to float rounding: the mean over rows of each row's sum of terms), clipped to [0, ln 2]."""
    table = _js_table(np.asarray(lut, np.float32).tobytes())
    heads, q, _ = a.shape
    out = np.empty(heads)
    for h in range(heads):  # one head at a time: the index array is 8 bytes per weight
        idx = (a[h].astype(np.intp) << 8) | b[h]
        out[h] = table.take(idx).sum() / q
    return np.clip(out, 0.0, np.log(2.0))


def fuse_heads_codes(codes: np.ndarray, fusion: str, lut: np.ndarray) -> np.ndarray:
    """One layer's heads ``(heads, n, n)`` of uint8 codes fused into decoded float64 ``(n, n)``, as ``rollout``
    does with ``head_fusion`` (max/min on codes is exact, the code being monotonic)."""
    if fusion not in FUSIONS:
        raise ValueError(f"head_fusion must be one of {FUSIONS}, got {fusion!r}")
    values = np.asarray(lut, np.float64)
    if fusion == "max":
        return values[codes.max(axis=0)]
    if fusion == "min":
        return values[codes.min(axis=0)]
    acc = np.zeros(codes.shape[1:], np.float64)
    for h in range(codes.shape[0]):
        acc += values[codes[h]]
    return acc / codes.shape[0]
