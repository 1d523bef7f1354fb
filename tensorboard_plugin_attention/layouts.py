"""One handler per record layout: everything that differs between a dense kind and a long one (format v3).

A kind of attention in a record is stored in one layout (``format.describe_kind``; the header's
``kinds[kind]["layout"]``):

* **dense** (:data:`DENSE`): every head's attention as 8-bit ``log8`` codes, q/k as float16;
* **long** (:data:`LONG`): q/k, each row's log-sum-exp, a pooled pyramid, per-row top-k and metrics; any
  window rebuilt exactly from q/k when read (:func:`exact_window`).

The writer asks the handler of its input layers (:func:`of_layers`) to check, select and measure them; the
readers (``reader.read_attention``, the plugin's routes, the notebook pages) ask the handler of a stored kind
(:func:`of_kind`) what it can serve and how. A new layout is a new handler here plus its encoding in
``format``; nothing else branches on the layout.

numpy only (the read side is given a ``reader.RecordStore``; torch is never imported).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from . import format as fmt
from . import metrics as metrics_mod
from .records import LayerArrays, LongLayer
from .validation import (MAX_TOKENS, MAX_VALUES, ROW_SUM_TOLERANCE, check_layer_info, length_message,
                         to_numpy)

__all__ = ["DENSE", "LONG", "DenseLayout", "Layout", "LongLayout", "exact_window", "of_kind", "of_layer",
           "of_layers"]


class Layout:
    """What a record layout does, writing and reading (see :class:`DenseLayout` and :class:`LongLayout`)."""

    name: str  # as in the header ("dense" is also the layout of a kind without the field)
    source: str  # what derived data (divergence, rollout) is computed from: "dense" or "pyramid"
    distribution_name: str  # the stored data that is, in words ("attention", "pyramid")
    record_type: type

    # ---- writing (numpy input records)
    def holds(self, layer: Any) -> bool:
        """Whether ``layer`` is an input record of this layout."""
        return isinstance(layer, self.record_type)

    def input_layer(self, layer: Any, kind: str, index: int) -> Any:
        """A layer given to the writer (from a capture, or built by the user), as a checked numpy record."""
        raise NotImplementedError

    def validate(self, kind: str, layers: list, qseq: str, nq: int, kseq: str, nk: int) -> list:
        """Check one kind's layers against the token counts; returns the layers to encode."""
        raise NotImplementedError

    def select_heads(self, layer: Any, heads: Optional[list]) -> Any:
        """The layer with only ``heads`` (all when None)."""
        raise NotImplementedError

    def metrics(self, layers: Sequence[Any], token_ids: Optional[Sequence[str]], causal: Optional[bool]) -> dict:
        """Per-head metrics of one kind: ``{name: (layers, heads) array}``."""
        raise NotImplementedError

    # ---- reading (a stored kind: ``k`` is its header entry)
    def route_problem(self, route: str, kind: str, step: int, k: Mapping) -> Optional[str]:
        """Why ``route`` (``"attention"``, ``"pyramid"``, ``"topk"``) cannot serve this kind, or None."""
        return None

    def window_problem(self, kind: str, layer: int, step: int, k: Mapping) -> Optional[str]:
        """Why exact windows of this kind cannot be served, or None."""
        return None

    def decode(self, store: Any, entry: Any, kind: str, k: Mapping, with_qk: bool, rows: Optional[tuple],
               cols: Optional[tuple], out: Any, weighting: str = "weights") -> None:
        """Decode a kind into ``out`` (a ``reader.AttentionExample``): what ``read_attention`` returns
        (``weighting="value"``: the attention value-weighted; the kind must have value norms)."""
        raise NotImplementedError

    def window(self, store: Any, entry: Any, kind: str, k: Mapping, layer: int, head: int, rows: tuple,
               cols: tuple, weighting: str = "weights") -> np.ndarray:
        """One head's attention over ``rows`` x ``cols`` (half-open), float32; ``weighting="value"``: value-weighted
        (:func:`metrics_mod.value_weighted`, each row normalised over all its keys, not only the window's)."""
        raise NotImplementedError

    def served_qk(self, store: Any, entry: Any, kind: str, layer: int, head: int) -> tuple:
        """float16 queries ``(q_len, d)`` and keys ``(k_len, d)`` of one head, as ``/qk`` serves them."""
        raise NotImplementedError

    def distribution_side(self, k: Mapping) -> tuple:
        """(rows, cols) of what :meth:`distributions` returns per head."""
        raise NotImplementedError

    def distributions(self, store: Any, entry: Any, kind: str, k: Mapping, layer: int) -> np.ndarray:
        """Every head's attention rows as log8 codes ``(heads, rows, cols)``, each row a distribution: what
        divergence and rollout are computed from (without adding it to the store's cache)."""
        raise NotImplementedError


class DenseLayout(Layout):
    """Attention stored densely: ``log8`` codes per head, q/k as float16."""

    name = "dense"
    source = "dense"
    distribution_name = "attention"
    record_type = LayerArrays

    def input_layer(self, layer: Any, kind: str, index: int) -> LayerArrays:
        attention = to_numpy(layer.attention, f"{kind} attention")
        return LayerArrays(attention,
                           None if layer.queries is None else to_numpy(layer.queries, "queries"),
                           None if layer.keys is None else to_numpy(layer.keys, "keys"),
                           check_layer_info(layer.info or {}),
                           _input_value_norms(layer, attention.shape, f"{kind} layer {index}"))

    def validate(self, kind: str, layers: list, qseq: str, nq: int, kseq: str, nk: int) -> list:
        if max(nq, nk) > MAX_TOKENS:
            raise ValueError(f"{kind} attention: {max(nq, nk)} tokens is too long to store densely (at most "
                             f"{MAX_TOKENS}): capture it with capture_attention (long layers), or pass queries/keys "
                             "instead of the probabilities")
        shape0 = layers[0].attention.shape
        qk0 = layers[0].queries is not None
        for i, layer in enumerate(layers):
            a = layer.attention
            where = f"{kind} attention, layer {i}"
            if a.shape != shape0:
                raise ValueError(f"{where} has shape {a.shape} but layer 0 has {shape0}: all layers of a kind "
                                 "must have the same heads and lengths")
            h, q, k = a.shape
            if h == 0 or q == 0 or k == 0:
                raise ValueError(f"{where} is empty (shape {a.shape})")
            if q != nq or k != nk:
                raise ValueError(
                    f"{where} is {q}x{k} (queries x keys) but {length_message(qseq, nq, kseq, nk)}: pass one "
                    "token per position (padding included, or trim padding with the capture)"
                )
            if h * q * k > MAX_VALUES:
                raise ValueError(f"{where} has {h * q * k} values; at most {MAX_VALUES} per layer are supported")
            if not np.isfinite(a).all():
                raise ValueError(f"{where} contains NaN or Inf")
            lo, hi = float(a.min()), float(a.max())
            if lo < -1e-6 or hi > 1 + 1e-6:
                raise ValueError(f"{where} has values in [{lo:g}, {hi:g}]: attention probabilities must lie in "
                                 "[0, 1] (pass post-softmax weights, not scores)")
            sums = a.sum(axis=-1, dtype=np.float64)
            worst = float(np.abs(sums - 1).max())
            if worst > ROW_SUM_TOLERANCE:
                h_, r_ = np.unravel_index(int(np.abs(sums - 1).argmax()), sums.shape)
                raise ValueError(
                    f"{where}: row {r_} of head {h_} sums to {sums[h_, r_]:.4f}, not 1: pass softmax "
                    "probabilities; a padding row sums to 0 — trim padding (capture_attention does) or log "
                    "only the real tokens"
                )
            if (layer.queries is not None) != qk0:
                raise ValueError(f"{where}: queries/keys given for some layers only")
            if (layer.value_norms is None) != (layers[0].value_norms is None):
                raise ValueError(f"{where}: value norms given for some layers only")
            if layer.queries is not None:
                qs, ks = layer.queries.shape, layer.keys.shape
                if len(qs) != 3 or len(ks) != 3 or qs[:2] != (h, q) or ks[:2] != (h, k) or qs[2] != ks[2]:
                    raise ValueError(
                        f"{where}: queries {qs} / keys {ks} must be (heads, q_len, head_dim) / "
                        f"(heads, k_len, head_dim) matching attention {a.shape} (expand grouped-query keys)"
                    )
                if not (np.isfinite(layer.queries).all() and np.isfinite(layer.keys).all()):
                    raise ValueError(f"{where}: queries or keys contain NaN or Inf")
                if max(np.abs(layer.queries).max(), np.abs(layer.keys).max()) > 65504:
                    raise ValueError(f"{where}: queries/keys exceed float16's range (65504)")
            layer.attention = np.clip(a, 0.0, 1.0)
        return layers

    def select_heads(self, layer: LayerArrays, heads: Optional[list]) -> LayerArrays:
        if heads is None:
            return layer
        return LayerArrays(layer.attention[heads], None if layer.queries is None else layer.queries[heads],
                           None if layer.keys is None else layer.keys[heads], layer.info,
                           None if layer.value_norms is None else layer.value_norms[heads])

    def metrics(self, layers: Sequence[LayerArrays], token_ids: Optional[Sequence[str]],
                causal: Optional[bool]) -> dict:
        return metrics_mod.layer_metrics([l.attention for l in layers], token_ids, causal=causal)

    def route_problem(self, route: str, kind: str, step: int, k: Mapping) -> Optional[str]:
        if route in ("pyramid", "topk"):
            return f"{kind} attention at step {step} is stored densely ({k['q_len']} x {k['k_len']}): use /attention"
        return None

    def decode(self, store: Any, entry: Any, kind: str, k: Mapping, with_qk: bool, rows: Optional[tuple],
               cols: Optional[tuple], out: Any, weighting: str = "weights") -> None:
        (r0, r1), (c0, c1) = _span("rows", rows, k["q_len"]), _span("cols", cols, k["k_len"])
        layers = [fmt.decode_attention(store.attention_codes(entry, kind, l))[:, r0:r1] for l in range(k["layers"])]
        if weighting == "value":
            layers = [metrics_mod.value_weighted(a, store.value_norms(entry, kind, l)) for l, a in enumerate(layers)]
        out.attention[kind] = np.stack([a[:, :, c0:c1] for a in layers])
        if with_qk and k.get("has_qk"):
            pairs = [[store.qk(entry, kind, l, h) for h in range(k["heads"])] for l in range(k["layers"])]
            out.queries[kind] = np.array([[q for q, _ in layer] for layer in pairs], dtype=np.float32)
            out.keys[kind] = np.array([[kk for _, kk in layer] for layer in pairs], dtype=np.float32)

    def window(self, store: Any, entry: Any, kind: str, k: Mapping, layer: int, head: int, rows: tuple,
               cols: tuple, weighting: str = "weights") -> np.ndarray:
        (r0, r1), (c0, c1) = rows, cols
        if weighting == "value":  # whole rows: a row is normalised over all its keys
            rows_ = fmt.decode_attention(store.attention_codes(entry, kind, layer, head)[0, r0:r1])
            return metrics_mod.value_weighted(rows_, store.value_norms(entry, kind, layer)[head])[:, c0:c1]
        return fmt.decode_attention(store.attention_codes(entry, kind, layer, head)[0, r0:r1, c0:c1])

    def served_qk(self, store: Any, entry: Any, kind: str, layer: int, head: int) -> tuple:
        return store.qk(entry, kind, layer, head)

    def distribution_side(self, k: Mapping) -> tuple:
        return k["q_len"], k["k_len"]

    def distributions(self, store: Any, entry: Any, kind: str, k: Mapping, layer: int) -> np.ndarray:
        return store.attention_codes(entry, kind, layer, cache=False)


class LongLayout(Layout):
    """Attention too long to store densely (format v3): q/k, log-sum-exp, pyramid, top-k (docs/format.md)."""

    name = fmt.LAYOUT_LONG
    source = "pyramid"
    distribution_name = "pyramid"
    record_type = LongLayer

    def input_layer(self, layer: LongLayer, kind: str, index: int) -> LongLayer:
        where = f"{kind} layer {index}"
        h, n, m = layer.shape
        checks = [
            (layer.lse.shape == (h, n) and np.isfinite(layer.lse).all(), "lse must be (heads, q_len) and finite"),
            (layer.pyramid.ndim == 3 and layer.pyramid.shape == (h, min(n, fmt.PYRAMID_BINS), min(m, fmt.PYRAMID_BINS)),
             "pyramid must be (heads, min(q_len, 512), min(k_len, 512))"),
            (layer.topk_index.shape == layer.topk_value.shape and layer.topk_index.shape[:2] == (h, n)
             and 0 < layer.topk_index.shape[-1] <= m, "topk_index/topk_value must be (heads, q_len, K) with K <= k_len"),
            (layer.qk_dtype in fmt.QK_DTYPES, f"qk_dtype must be one of {sorted(fmt.QK_DTYPES)}"),
            (layer.pyramid_max is None or (np.shape(layer.pyramid_max) == layer.pyramid.shape
                                           and np.isfinite(layer.pyramid_max).all()),
             "pyramid_max must have the pyramid's shape and be finite"),
        ]
        if layer.queries is not None or layer.keys is not None:
            q, k = layer.queries, layer.keys
            checks.append((q is not None and k is not None and q.ndim == 3 and k.ndim == 3 and q.shape[:2] == (h, n)
                           and k.shape[1] == m and q.shape[2] == k.shape[2] and k.shape[0] > 0 and h % k.shape[0] == 0,
                           "queries/keys must be (heads, q_len, d) / (kv_heads, k_len, d), heads a multiple of kv_heads"))
        for ok, what in checks:
            if not ok:
                raise ValueError(f"{where} (long layer {layer.shape}): {what}")
        if layer.topk_index.size and int(layer.topk_index.max()) >= m:
            raise ValueError(f"{where}: a top-k key index is past k_len {m}")
        return LongLayer(**{**layer.__dict__, "info": check_layer_info(layer.info or {}),
                            "value_norms": _input_value_norms(layer, layer.shape, where)})

    def validate(self, kind: str, layers: list, qseq: str, nq: int, kseq: str, nk: int) -> list:
        if not all(self.holds(l) for l in layers):
            raise ValueError(f"{kind} attention mixes long and dense layers: a kind is all one or the other")
        shape0 = layers[0].shape
        for i, layer in enumerate(layers):
            where = f"{kind} attention, layer {i}"
            if layer.shape != shape0 or (layer.queries is None) != (layers[0].queries is None):
                raise ValueError(f"{where} has shape {layer.shape} but layer 0 has {shape0}: all layers of a kind "
                                 "must have the same heads and lengths (and all store q/k or none)")
            if (layer.value_norms is None) != (layers[0].value_norms is None):
                raise ValueError(f"{where}: value norms given for some layers only")
            _, q, k = layer.shape
            if q != nq or k != nk:
                raise ValueError(f"{where} is {q}x{k} (queries x keys) but {length_message(qseq, nq, kseq, nk)}: "
                                 "pass one token per position")
        return fmt.common_qk_dtype(layers)

    def select_heads(self, layer: LongLayer, heads: Optional[list]) -> LongLayer:
        if heads is None:
            return layer
        keys = layer.keys
        if keys is not None:  # each kept head keeps the key head it reads (grouped-query keys expanded if needed)
            group = layer.shape[0] // keys.shape[0]
            keys = keys[[h // group for h in heads]]
        return LongLayer(
            queries=None if layer.queries is None else layer.queries[heads], keys=keys, qk_dtype=layer.qk_dtype,
            lse=layer.lse[heads], k_len=layer.k_len, pyramid=layer.pyramid[heads], topk_index=layer.topk_index[heads],
            topk_value=layer.topk_value[heads], metrics={k: np.asarray(v)[heads] for k, v in layer.metrics.items()},
            info=layer.info, value_norms=None if layer.value_norms is None else layer.value_norms[heads],
            pyramid_max=None if layer.pyramid_max is None else layer.pyramid_max[heads])

    def metrics(self, layers: Sequence[LongLayer], token_ids: Optional[Sequence[str]],
                causal: Optional[bool]) -> dict:
        # computed from the rows while summarizing
        return {name: np.stack([np.asarray(l.metrics.get(name, np.full(l.shape[0], np.nan)), np.float64)
                                for l in layers])
                for name in metrics_mod.METRIC_NAMES}

    def route_problem(self, route: str, kind: str, step: int, k: Mapping) -> Optional[str]:
        if route == "attention":
            return (f"{kind} attention at step {step} is a long layer ({k['q_len']} x {k['k_len']} tokens, not stored "
                    "densely): ask /window for exact values, /pyramid for the pooled head or /topk for each row's "
                    "largest")
        return None

    def window_problem(self, kind: str, layer: int, step: int, k: Mapping) -> Optional[str]:
        if not k.get("exact"):
            return (f"layer {layer} of {kind} at step {step} cannot be rebuilt exactly (no q/k stored, or a learned "
                    "position bias): use /pyramid or /topk")
        return None

    def decode(self, store: Any, entry: Any, kind: str, k: Mapping, with_qk: bool, rows: Optional[tuple],
               cols: Optional[tuple], out: Any, weighting: str = "weights") -> None:
        r, c = _span("rows", rows, k["q_len"]), _span("cols", cols, k["k_len"])
        out.pyramid[kind] = np.stack([[store.pyramid(entry, kind, l, h) for h in range(k["heads"])]
                                      for l in range(k["layers"])])
        if k.get("pyramid_max"):
            out.pyramid_max[kind] = np.stack([[store.pyramid(entry, kind, l, h, agg="max") for h in range(k["heads"])]
                                              for l in range(k["layers"])])
        if rows is not None or cols is not None:
            out.attention[kind] = np.stack([[store.window(entry, kind, l, h, r, c, weighting) for h in range(k["heads"])]
                                            for l in range(k["layers"])])
        if with_qk and k.get("has_qk"):
            group = k["heads"] // k["kv_heads"]
            pairs = [[store.long_qk(entry, kind, l, h) for h in range(k["heads"])] for l in range(k["layers"])]
            out.queries[kind] = np.array([[q for q, _ in layer] for layer in pairs], dtype=np.float32)
            out.keys[kind] = np.array([[layer[g * group][1] for g in range(k["kv_heads"])] for layer in pairs],
                                      dtype=np.float32)

    def window(self, store: Any, entry: Any, kind: str, k: Mapping, layer: int, head: int, rows: tuple,
               cols: tuple, weighting: str = "weights") -> np.ndarray:
        if not k.get("exact"):
            raise KeyError("this long layer cannot be rebuilt exactly (no q/k stored, or a learned position bias): "
                           "use its pyramid or top-k")
        (r0, r1), (c0, c1) = rows, cols
        q, kk = store.long_qk(entry, kind, layer, head)
        info = (k.get("layer_info") or [{}] * k["layers"])[layer]
        lse, offset = store.lse(entry, kind, layer, head), k["k_len"] - k["q_len"]
        if weighting != "value":
            return exact_window(q[r0:r1], kk[c0:c1], lse[r0:r1], info, first_row=r0, first_col=c0, offset=offset)
        # value-weighted: each row's normaliser needs the whole row, rebuilt a block of rows at a time
        norms = store.value_norms(entry, kind, layer)[head]
        out = np.empty((r1 - r0, c1 - c0), np.float32)
        step = max(1, _WHOLE_ROW_VALUES // k["k_len"])
        for a in range(r0, r1, step):
            b = min(r1, a + step)
            whole = exact_window(q[a:b], kk, lse[a:b], info, first_row=a, first_col=0, offset=offset)
            out[a - r0:b - r0] = metrics_mod.value_weighted(whole, norms)[:, c0:c1]
        return out

    def served_qk(self, store: Any, entry: Any, kind: str, layer: int, head: int) -> tuple:
        q, kk = store.long_qk(entry, kind, layer, head)  # float16 on the wire as for dense layers (bfloat16 widened)
        return q.astype(np.float16), kk.astype(np.float16)

    def distribution_side(self, k: Mapping) -> tuple:
        # the pooled pyramid (bins x bins): seconds at any length, each pooled row a distribution
        return tuple(k["pyramid_shape"])

    def distributions(self, store: Any, entry: Any, kind: str, k: Mapping, layer: int) -> np.ndarray:
        return fmt.encode_attention(np.stack([store.pyramid(entry, kind, layer, h) for h in range(k["heads"])]))


DENSE = DenseLayout()
LONG = LongLayout()
_BY_NAME = {"dense": DENSE, LONG.name: LONG}


def of_kind(k: Mapping) -> Layout:
    """The handler of a stored kind (its header entry; ``format.index_problem`` has checked the name)."""
    return _BY_NAME[k.get("layout") or "dense"]


def of_layer(layer: Any) -> Layout:
    """The handler of one input layer record."""
    return LONG if LONG.holds(layer) else DENSE


def of_layers(layers: Sequence[Any]) -> Layout:
    """The handler of one kind's input layers (long if any is: a mix is refused by its ``validate``)."""
    return LONG if any(LONG.holds(l) for l in layers) else DENSE


_WHOLE_ROW_VALUES = 4 << 20  # weights of whole rows rebuilt at once for a value-weighted long window


def _input_value_norms(layer: Any, shape: tuple, where: str) -> Optional[np.ndarray]:
    """A layer's value norms ``(heads, k_len)`` as float32, checked (None when it has none)."""
    norms = getattr(layer, "value_norms", None)
    if norms is None:
        return None
    norms = to_numpy(norms, "value_norms").astype(np.float32, copy=False)
    h, _, k = shape
    if norms.shape != (h, k):
        raise ValueError(f"{where}: value_norms has shape {norms.shape}, expected (heads, k_len) = {(h, k)}")
    if not np.isfinite(norms).all() or (norms < 0).any():
        raise ValueError(f"{where}: value_norms must be finite and >= 0 (norms ||v_j W_O^h|| of each key)")
    return norms


def _span(name: str, span: Optional[tuple], length: int) -> tuple:
    if span is None:
        return 0, length
    a, b = (int(x) for x in span)
    if not 0 <= a < b <= length:
        raise ValueError(f"{name}=({a}, {b}) is not a non-empty range within 0..{length}")
    return a, b


def exact_window(q: np.ndarray, k: np.ndarray, lse: np.ndarray, info: dict, *, first_row: int, first_col: int,
                 offset: int = 0) -> np.ndarray:
    """The one recompute of stored attention (the plugin and ``read_attention`` both use it):
    ``p_ij = exp(s_ij - lse_i)`` with ``s_ij = softcap(scaling * q_i . k_j)`` and ``p_ij = 0`` where the mask
    hides key ``j`` from row ``i`` (causal: ``j > i + offset``; sliding window ``w``: ``i + offset - j >= w``).

    ``q`` are rows ``first_row..``, ``k`` keys ``first_col..`` (float32), ``lse`` the rows' log-sum-exp.
    Computed in float32 in blocks of rows, so memory is the window plus one block.
    """
    scaling = float(info.get("scaling") or 1.0 / np.sqrt(q.shape[-1]))
    softcap = info.get("softcap")
    window = info.get("sliding_window")
    causal = bool(info.get("causal"))
    out = np.empty((q.shape[0], k.shape[0]), np.float32)
    cols = np.arange(first_col, first_col + k.shape[0])
    kt = np.asarray(k, dtype=np.float32).T  # a transposed view: BLAS reads it as it is (no copy of the keys)
    step = max(1, (16 << 20) // max(1, 4 * k.shape[0]))
    for r0 in range(0, q.shape[0], step):
        r1 = min(q.shape[0], r0 + step)
        s = (q[r0:r1].astype(np.float32) @ kt) * np.float32(scaling)
        if softcap:
            s = np.tanh(s / np.float32(softcap)) * np.float32(softcap)
        s -= lse[r0:r1, None]
        np.exp(s, out=s)
        diag = np.arange(first_row + r0, first_row + r1)[:, None] + offset
        if causal:
            s[cols[None, :] > diag] = 0.0
        if window:
            s[diag - cols[None, :] >= window] = 0.0
        out[r0:r1] = s
    return out
