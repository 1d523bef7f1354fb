"""Writing attention: input validation, asset records, index Summary protos, ``AttentionWriter``.

numpy only: torch tensors are accepted (converted with ``.detach().cpu().numpy()``) but torch is never
imported here.
"""

from __future__ import annotations

import glob
import logging
import math
import operator
import os
import queue
import re
import struct
import socket
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from . import format as fmt
from . import metrics as m
from . import ranks, storage
from .metadata import FORMAT_VERSION, PLUGIN_NAME, create_summary_metadata

logger = logging.getLogger(__name__)

MAX_TOKENS = 8192  # per sequence of a dense layer; longer attention is stored as long layers (format v3)
MAX_LONG_TOKENS = fmt.MAX_COUNTS["q_len"]  # per sequence of a long layer
MAX_VALUES = 2**31 - 1  # attention values per example and kind
ROW_SUM_TOLERANCE = 0.01
MAX_STEP = 2**63 - 1  # Event.step is an int64
_TAG_RE = re.compile(r"^[^\x00-\x1f]+$")
_SPECIAL_RE = re.compile(r"^(\[[A-Z]+\]|<\|?[A-Za-z_]+\|?>|</?s>|<unk>|<pad>|<mask>)$")

__all__ = ["AttentionWriter", "BackgroundWriteError", "log_attention"]


class BackgroundWriteError(RuntimeError):
    """Writing an earlier record failed in an ``AttentionWriter``'s background thread (an I/O error: input
    errors are raised at the call). Raised at the next call, ``flush()`` or ``close()``; a record passed to
    the call that raises it was accepted all the same and is written."""


# ------------------------------------------------------------------------------------ normalisation
@dataclass
class _Example:
    """One example, validated and ready to encode."""

    sequences: dict[str, list[str]]
    kinds: dict[str, list[Any]]  # fmt.LayerArrays (dense) or fmt.LongLayer
    kind_sequences: dict[str, tuple[str, str]] = field(default_factory=dict)
    ids: dict[str, dict] = field(default_factory=dict)  # kind -> layer_ids / head_ids kept (layers=, heads=)


def _np(x: Any, what: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor without importing torch
        if getattr(x, "is_meta", False):
            raise ValueError(f"{what} is a tensor on the meta device: it has a shape but no values (was the "
                             "model loaded with device_map='meta' / init_empty_weights?)")
        try:
            x = x.detach().float().cpu().numpy()
        except (RuntimeError, TypeError, NotImplementedError) as e:
            raise ValueError(f"{what} cannot be converted to numpy ({type(x).__name__}): {e}") from None
    try:  # a copy: the caller may reuse its buffers while the background thread encodes
        return np.array(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be a numeric array or tensor, got {type(x).__name__}: {e}") from None


def _qk_array(x: Any, what: str) -> Any:
    """Queries or keys for a long layer, in their own 16-bit type when they have one (stored as they are: a
    float32 copy would be rounded back or stored twice as large); other inputs as float32 numpy."""
    dtype = str(getattr(x, "dtype", ""))
    if hasattr(x, "detach") and dtype in ("torch.float16", "torch.bfloat16") and not getattr(x, "is_meta", False):
        return x.detach().cpu().clone()
    if isinstance(x, np.ndarray) and x.dtype == np.float16:
        return np.array(x)
    return _np(x, what)


def _layers_from_tuple(
    attention: Any, queries: Any, keys: Any, batch_index: int, kind: str
) -> list[fmt.LayerArrays]:
    """Per-layer tensors as transformers returns them (``output_attentions=True``): (batch, H, q, k) each."""
    if attention is None or (isinstance(attention, (tuple, list)) and len(attention) == 0):
        raise ValueError(
            f"no {kind} attention given (empty or None): models running sdpa/flash attention return no "
            "attention weights. Record them with `with capture_attention(model) as cap:` or load the model "
            "with attn_implementation='eager' and pass output_attentions=True."
        )
    if not isinstance(attention, (tuple, list)):
        attention = [attention[i] for i in range(len(attention))] if _np_ndim(attention) == 5 else [attention]
    for name, qk in (("queries", queries), ("keys", keys)):
        if qk is not None and (not isinstance(qk, (tuple, list)) or len(qk) != len(attention)):
            raise ValueError(f"{name} must be a sequence with one tensor per layer ({len(attention)} layers)")
    if (queries is None) != (keys is None):
        raise ValueError("pass both queries and keys, or neither")
    layers = []
    for i, a in enumerate(attention):
        if a is None:
            raise ValueError(f"{kind} attention of layer {i} is None: the model did not return attention weights "
                             "(use capture_attention or attn_implementation='eager')")
        arr = _np(a, f"{kind} attention layer {i}")
        q = k = None
        if queries is not None:
            q, k = _np(queries[i], f"queries layer {i}"), _np(keys[i], f"keys layer {i}")
        if arr.ndim == 4:
            if not 0 <= batch_index < arr.shape[0]:
                raise ValueError(f"batch_index {batch_index} out of range: the batch has {arr.shape[0]} examples")
            arr = arr[batch_index]
            if q is not None:
                if q.ndim != 4 or k.ndim != 4:
                    raise ValueError(f"queries/keys of layer {i} must be (batch, heads, len, head_dim) like the attention")
                q, k = q[batch_index], k[batch_index]
        elif arr.ndim != 3:
            raise ValueError(
                f"{kind} attention of layer {i} has shape {arr.shape}: expected (batch, heads, q_len, k_len) "
                "or (heads, q_len, k_len)"
            )
        layers.append(fmt.LayerArrays(arr, q, k, {}))
    return layers


def _np_ndim(x: Any) -> int:
    return len(getattr(x, "shape", ()))


def _layer_info(info: Mapping) -> dict:
    keep = ("scaling", "causal", "position_bias", "softcap", "sliding_window", "module_name")
    out = {}
    for k in keep:
        v = info.get(k)
        if hasattr(v, "item") and not isinstance(v, str):  # numpy or torch scalar
            v = v.item()
        if isinstance(v, float) and not np.isfinite(v):
            v = None
        if v is not None and not isinstance(v, (bool, int, float, str)):
            raise ValueError(f"layer info {k!r} must be a number, a string or None, got {type(v).__name__}")
        if isinstance(v, str):
            _check_text(v, f"layer info {k!r}")
        out[k] = v
    return out


def _normalise(
    attention: Any,
    tokens: Sequence[str],
    *,
    batch_index: int,
    queries: Any,
    keys: Any,
    key_tokens: Optional[Sequence[str]],
    decoder_tokens: Optional[Sequence[str]],
    kind: Optional[str],
    layer_info: Any = None,
) -> _Example:
    """Turn any accepted ``attention`` input into an ``_Example`` (kinds -> layers, sequences)."""
    positions: Mapping[str, Any] = {}
    if hasattr(attention, "forwards") and not isinstance(attention, Mapping):  # AttentionCapture
        if not attention.forwards:  # (its ``last`` raises IndexError then)
            raise ValueError("the capture recorded no forward pass: run the model inside `with capture_attention(model)`")
        attention = attention.forwards[-1]
    if hasattr(attention, "example") and callable(attention.example):  # CapturedForward
        n = getattr(attention, "batch_size", None)
        if n is not None and not 0 <= batch_index < n:
            raise ValueError(f"batch_index {batch_index} out of range: the captured batch has {n} examples")
        attention = attention.example(batch_index)
    if hasattr(attention, "kinds") and isinstance(attention.kinds, Mapping):  # ExampleAttention
        if queries is not None or keys is not None:
            raise ValueError("queries/keys come with the capture: do not pass them separately")
        positions = getattr(attention, "positions", {}) or {}
        kinds = {
            k: [_long_layer(l, f"{k} layer {i}") if fmt.is_long(l) else
                fmt.LayerArrays(_np(l.attention, f"{k} attention"),
                                None if l.queries is None else _np(l.queries, "queries"),
                                None if l.keys is None else _np(l.keys, "keys"),
                                _layer_info(l.info or {})) for i, l in enumerate(layers)]
            for k, layers in attention.kinds.items() if layers
        }
        if not kinds:
            raise ValueError("the capture recorded no attention layers: does the model route attention through "
                             "transformers' attention interface? (see README: supported models)")
    elif isinstance(attention, Mapping):
        kinds = {}
        for k, v in attention.items():
            if isinstance(v, (list, tuple)) and v and all(fmt.is_long(l) for l in v):
                kinds[k] = [_long_layer(l, f"{k} layer {i}") for i, l in enumerate(v)]
                continue
            q = None if queries is None else queries.get(k)
            kk = None if keys is None else keys.get(k)
            kinds[k] = _layers_from_tuple(v, q, kk, batch_index, k)
    elif attention is None and queries is not None:  # queries and keys only: long layers summarized from them
        if kind is None:
            kind = "cross" if key_tokens is not None else "encoder"
        kinds = {kind: _LongFromQK(queries, keys, batch_index, kind, layer_info)}
    else:
        if kind is None:
            kind = "cross" if key_tokens is not None else "encoder"
        kinds = {kind: _layers_from_tuple(attention, queries, keys, batch_index, kind)}

    for k in kinds:
        if k not in fmt.KINDS:
            raise ValueError(f"unknown attention kind {k!r}: expected one of {', '.join(fmt.KINDS)}")

    tokens = _tokens(tokens, "tokens")
    two_stacks = "cross" in kinds or decoder_tokens is not None
    if "cross" in kinds and "encoder" not in kinds and "decoder" not in kinds and key_tokens is not None:
        # Only cross attention given: `tokens` are the decoder (query) tokens, `key_tokens` the encoder's.
        sequences = {"input": _tokens(key_tokens, "key_tokens"), "output": tokens}
    else:
        sequences = {"input": tokens}
        if two_stacks:
            if decoder_tokens is None:
                raise ValueError("encoder-decoder attention needs decoder_tokens (the decoder's input tokens)")
            sequences["output"] = _tokens(decoder_tokens, "decoder_tokens")
        elif key_tokens is not None:
            raise ValueError("key_tokens is only for cross attention (pass kind='cross' or a capture with cross layers)")
    for name, pos in positions.items():  # capture trimmed padding: trim full-length token lists the same way
        seq = sequences.get(name)
        pos = np.asarray(pos)
        if seq is not None and len(seq) != len(pos) and pos.size and len(seq) > int(pos.max()):
            sequences[name] = [seq[int(i)] for i in pos]
    kind_sequences = {
        "encoder": ("input", "input"),
        "decoder": ("output", "output") if two_stacks else ("input", "input"),
        "cross": ("output", "input"),
    }
    kind_sequences = {k: kind_sequences[k] for k in kinds}
    for k, layers in kinds.items():
        if isinstance(layers, _LongFromQK):  # now that the tokens are known (the induction metric reads them)
            kinds[k] = layers.summarize(sequences[kind_sequences[k][0]] if k != "cross" else None)
    return _Example(sequences, kinds, kind_sequences)


class _LongFromQK:
    """Per-layer queries/keys given without attention (``log_attention(writer, tag, None, tokens, step,
    queries=..., keys=..., layer_info=...)``): checked now, summarized as long layers once the tokens are
    known (``long_layers.summarize``, torch imported only then)."""

    def __init__(self, queries: Any, keys: Any, batch_index: int, kind: str, layer_info: Any):
        if keys is None:
            raise ValueError("queries without keys: pass both (per layer), or the attention probabilities")
        if not isinstance(queries, (list, tuple)) or not isinstance(keys, (list, tuple)) or len(queries) != len(keys) \
                or not queries:
            raise ValueError("queries and keys must be sequences with one tensor per layer, of the same length")
        infos = layer_info if isinstance(layer_info, (list, tuple)) else [layer_info or {}] * len(queries)
        if len(infos) != len(queries) or not all(isinstance(i, Mapping) for i in infos):
            raise ValueError("layer_info must be a dict (for every layer) or one dict per layer")
        self.layers = []
        for i, (q, k, info) in enumerate(zip(queries, keys, infos)):
            q, k = _qk_array(q, f"queries layer {i}"), _qk_array(k, f"keys layer {i}")
            if q.ndim == 4 and k.ndim == 4:
                if not 0 <= batch_index < q.shape[0]:
                    raise ValueError(f"batch_index {batch_index} out of range: the batch has {q.shape[0]} examples")
                q, k = q[batch_index], k[batch_index]
            if q.ndim != 3 or k.ndim != 3 or q.shape[2] != k.shape[2] or q.shape[0] % max(1, k.shape[0]) \
                    or 0 in q.shape or 0 in k.shape:
                raise ValueError(f"{kind} layer {i}: queries {q.shape} / keys {k.shape} must be (heads, q_len, "
                                 "head_dim) / (kv_heads, k_len, head_dim), heads a multiple of kv_heads")
            if not (_all_finite(q) and _all_finite(k)):
                raise ValueError(f"{kind} layer {i}: queries or keys contain NaN or Inf")
            unknown = set(info) - {"scaling", "causal", "sliding_window", "softcap", "module_name"}
            if unknown:
                raise ValueError(f"layer_info: unknown keys {sorted(unknown)} (scaling, causal, sliding_window, "
                                 "softcap, module_name)")
            facts = _layer_info(info)
            window = facts.get("sliding_window")
            if window is not None and (not _is_int(window) or window < 1):
                raise ValueError(f"layer_info sliding_window must be a positive integer, got {window!r}")
            scaling = facts.get("scaling")
            if scaling is not None and not (isinstance(scaling, (int, float)) and math.isfinite(scaling) and scaling > 0):
                raise ValueError(f"layer_info scaling must be a positive number, got {scaling!r}")
            facts["causal"] = bool(facts.get("causal")) if facts.get("causal") is not None else kind == "decoder"
            if facts["causal"] and q.shape[1] > k.shape[1]:
                raise ValueError(f"{kind} layer {i}: causal attention needs q_len <= k_len, got {q.shape[1]} > {k.shape[1]}")
            self.layers.append((q, k, facts))
        shape0 = (self.layers[0][0].shape, self.layers[0][1].shape)
        if any((q.shape, k.shape) != shape0 for q, k, _ in self.layers):
            raise ValueError(f"{kind}: every layer's queries/keys must have the shapes of layer 0's {shape0}")

    def summarize(self, token_ids: Optional[Sequence[str]]) -> list:
        from . import long_layers

        out = []
        for q, k, facts in self.layers:
            if token_ids is not None and len(token_ids) != q.shape[1]:
                raise ValueError(f"queries have {q.shape[1]} positions but there are {len(token_ids)} tokens: pass one "
                                 "token per position")
            scaling = facts.get("scaling") or 1.0 / math.sqrt(q.shape[-1])
            out.append(long_layers.summarize_numpy(
                q, k, scaling=scaling, causal=facts["causal"], sliding_window=facts.get("sliding_window"),
                softcap=facts.get("softcap"), token_ids=token_ids if q.shape[1] == k.shape[1] else None,
                info={"module_name": facts.get("module_name"), "position_bias": False}))
        return out


def _all_finite(x: Any) -> bool:
    return bool(x.isfinite().all()) if hasattr(x, "isfinite") else bool(np.isfinite(x).all())


def _long_layer(layer: fmt.LongLayer, where: str) -> fmt.LongLayer:
    """A LongLayer given to the writer (from a capture, or built by the user), its arrays checked."""
    h, n, m = layer.shape
    checks = [
        (layer.lse.shape == (h, n) and np.isfinite(layer.lse).all(), "lse must be (heads, q_len) and finite"),
        (layer.pyramid.ndim == 3 and layer.pyramid.shape == (h, min(n, fmt.PYRAMID_BINS), min(m, fmt.PYRAMID_BINS)),
         "pyramid must be (heads, min(q_len, 512), min(k_len, 512))"),
        (layer.topk_index.shape == layer.topk_value.shape and layer.topk_index.shape[:2] == (h, n)
         and 0 < layer.topk_index.shape[-1] <= m, "topk_index/topk_value must be (heads, q_len, K) with K <= k_len"),
        (layer.qk_dtype in fmt.QK_DTYPES, f"qk_dtype must be one of {sorted(fmt.QK_DTYPES)}"),
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
    return fmt.LongLayer(**{**layer.__dict__, "info": _layer_info(layer.info or {})})


def _select(ex: _Example, layers: Optional[Sequence[int]], heads: Optional[Sequence[int]]) -> dict:
    """Keep only ``layers`` / ``heads`` (model indices) of every kind; returns the ids kept per kind."""
    ids: dict = {}
    for kind, items in list(ex.kinds.items()):
        n_layers, n_heads = len(items), items[0].shape[0] if fmt.is_long(items[0]) else items[0].attention.shape[0]
        keep_l = _indices(layers, n_layers, "layers")
        keep_h = _indices(heads, n_heads, "heads")
        if keep_l is None and keep_h is None:
            continue
        keep_l = keep_l if keep_l is not None else list(range(n_layers))
        ex.kinds[kind] = [_heads_of(items[i], keep_h) for i in keep_l]
        ids[kind] = {"layer_ids": keep_l, "head_ids": keep_h if keep_h is not None else list(range(n_heads))}
    return ids


def _indices(chosen: Optional[Sequence[int]], count: int, what: str) -> Optional[list]:
    if chosen is None:
        return None
    out = list(chosen)
    if not out or not all(_is_int(i) and 0 <= i < count for i in out) or len(set(out)) != len(out):
        raise ValueError(f"{what}= must be distinct indices in 0..{count - 1}, got {chosen!r}")
    return [int(i) for i in out]


def _heads_of(layer: Any, heads: Optional[list]) -> Any:
    if heads is None:
        return layer
    if not fmt.is_long(layer):
        return fmt.LayerArrays(layer.attention[heads], None if layer.queries is None else layer.queries[heads],
                               None if layer.keys is None else layer.keys[heads], layer.info)
    keys = layer.keys
    if keys is not None:  # each kept head keeps the key head it reads (grouped-query keys expanded if needed)
        group = layer.shape[0] // keys.shape[0]
        keys = keys[[h // group for h in heads]]
    return fmt.LongLayer(
        queries=None if layer.queries is None else layer.queries[heads], keys=keys, qk_dtype=layer.qk_dtype,
        lse=layer.lse[heads], k_len=layer.k_len, pyramid=layer.pyramid[heads], topk_index=layer.topk_index[heads],
        topk_value=layer.topk_value[heads], metrics={k: np.asarray(v)[heads] for k, v in layer.metrics.items()},
        info=layer.info)


def _tokens(tokens: Any, what: str) -> list[str]:
    if isinstance(tokens, str) or not isinstance(tokens, Sequence) and not hasattr(tokens, "__iter__"):
        raise ValueError(f"{what} must be a list of token strings (e.g. tokenizer.convert_ids_to_tokens(ids)), "
                         f"got {type(tokens).__name__}")
    out = list(tokens)
    if not all(isinstance(t, str) for t in out):
        bad = next(t for t in out if not isinstance(t, str))
        raise ValueError(f"{what} must be strings; got {type(bad).__name__} {bad!r} "
                         "(convert ids with tokenizer.convert_ids_to_tokens)")
    if not out:
        raise ValueError(f"{what} is empty")
    if len(out) > MAX_LONG_TOKENS:
        raise ValueError(f"{what} has {len(out)} tokens; at most {MAX_LONG_TOKENS} are supported per sequence")
    return out


def _length_message(qseq: str, nq: int, kseq: str, nk: int) -> str:
    if qseq == kseq:
        return f"there are {nq} {qseq} tokens"
    return f"there are {nq} {qseq} tokens and {nk} {kseq} tokens"


def _validate(ex: _Example, sentence_b_start: Optional[int]) -> None:
    """Check shapes, token counts and values; raises ValueError saying what is wrong and how to fix it."""
    for kind, layers in ex.kinds.items():
        qseq, kseq = ex.kind_sequences[kind]
        nq, nk = len(ex.sequences[qseq]), len(ex.sequences[kseq])
        if any(fmt.is_long(l) for l in layers):
            _validate_long(kind, layers, qseq, nq, kseq, nk)
            ex.kinds[kind] = fmt.common_qk_dtype(layers)
            continue
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
                    f"{where} is {q}x{k} (queries x keys) but {_length_message(qseq, nq, kseq, nk)}: pass one "
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
    if sentence_b_start is not None:
        n = len(ex.sequences["input"])
        if not isinstance(sentence_b_start, (int, np.integer)) or isinstance(sentence_b_start, bool) \
                or not 0 < sentence_b_start < n:
            raise ValueError(f"sentence_b_start must be an index in 1..{n - 1} (the first token of sentence B), "
                             f"got {sentence_b_start!r}")


def _validate_long(kind: str, layers: list, qseq: str, nq: int, kseq: str, nk: int) -> None:
    if not all(fmt.is_long(l) for l in layers):
        raise ValueError(f"{kind} attention mixes long and dense layers: a kind is all one or the other")
    shape0 = layers[0].shape
    for i, layer in enumerate(layers):
        where = f"{kind} attention, layer {i}"
        if layer.shape != shape0 or (layer.queries is None) != (layers[0].queries is None):
            raise ValueError(f"{where} has shape {layer.shape} but layer 0 has {shape0}: all layers of a kind must "
                             "have the same heads and lengths (and all store q/k or none)")
        _, q, k = layer.shape
        if q != nq or k != nk:
            raise ValueError(f"{where} is {q}x{k} (queries x keys) but {_length_message(qseq, nq, kseq, nk)}: pass "
                             "one token per position")


def _check_text(s: str, what: str) -> None:
    """Event files and the asset header hold UTF-8: a lone surrogate (e.g. from a bad decode) cannot be written."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what} {s!r} is not valid Unicode (a lone surrogate at index {e.start}): it cannot be "
                         "written as UTF-8") from None


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_names(tag: Any, example: Any, step: Any) -> None:
    if not isinstance(tag, str) or not tag or not _TAG_RE.match(tag):
        raise ValueError(f"tag must be a non-empty string without control characters, got {tag!r}")
    _check_text(tag, "tag")
    if not isinstance(example, str) or not example or "/" in example or not _TAG_RE.match(example):
        raise ValueError(f"example must be a non-empty name without '/' or control characters, got {example!r}")
    _check_text(example, "example")
    if not _is_int(step) or not 0 <= step <= MAX_STEP:
        raise ValueError(f"step must be an integer in 0..2**63-1 (TensorBoard's int64 step), got {step!r}")


def _check_wall_time(wall_time: Any) -> float:
    if wall_time is None:
        return time.time()
    if isinstance(wall_time, (bool, np.bool_)) or not isinstance(wall_time, (int, float, np.integer, np.floating)):
        raise ValueError(f"wall_time must be seconds since the epoch (a number), got {wall_time!r}")
    if not math.isfinite(float(wall_time)):
        raise ValueError(f"wall_time must be finite, got {wall_time!r}")
    return float(wall_time)


def _check_model_name(model_name: Any) -> Optional[str]:
    if model_name is None:
        return None
    if not isinstance(model_name, str):
        raise ValueError(f"model_name must be a string or None, got {type(model_name).__name__} {model_name!r}")
    _check_text(model_name, "model_name")
    return str(model_name)


def _special_tokens(special_tokens: Any, sequences: Mapping[str, list[str]]) -> dict[str, list[int]]:
    """``special_tokens`` checked against the sequences (or detected from the tokens when None)."""
    if special_tokens is None:
        return {name: [i for i, t in enumerate(seq) if _SPECIAL_RE.match(t)] for name, seq in sequences.items()}
    if not isinstance(special_tokens, Mapping):
        raise ValueError(f"special_tokens must map a sequence name ({', '.join(map(repr, sequences))}) to token "
                         f"indices, e.g. {{'input': [0, 5]}}; got {type(special_tokens).__name__}")
    out = {}
    for name, indices in special_tokens.items():
        if name not in sequences:
            raise ValueError(f"special_tokens: unknown sequence {name!r}; this example has "
                             f"{', '.join(map(repr, sequences))}")
        if isinstance(indices, (str, bytes)) or not hasattr(indices, "__iter__"):
            raise ValueError(f"special_tokens[{name!r}] must be a list of token indices, got {indices!r}")
        n = len(sequences[name])
        out[name] = []
        for i in indices:
            try:
                if isinstance(i, (bool, np.bool_)):
                    raise TypeError
                j = operator.index(i)  # ints, numpy and torch integer scalars; not floats
            except TypeError:
                raise ValueError(f"special_tokens[{name!r}] must hold integer indices, got {i!r}") from None
            if not 0 <= j < n:
                raise ValueError(f"special_tokens[{name!r}]: index {j} out of range for {n} {name} tokens")
            out[name].append(j)
    return out


# ------------------------------------------------------------------------------------------ writing
def build_record(
    tag: str,
    example: str,
    ex: _Example,
    *,
    step: int,
    wall_time: float,
    model_name: Optional[str],
    sentence_b_start: Optional[int],
    special_tokens: Optional[Mapping[str, Sequence[int]]],
    metrics: Optional[dict],
) -> tuple[dict, bytes]:
    """The record header and the encoded asset record for a validated example."""
    special_tokens = _special_tokens(special_tokens, ex.sequences)
    header = {
        "version": FORMAT_VERSION,
        "tag": tag,
        "example": example,
        "step": int(step),
        "wall_time": float(wall_time),
        "model": model_name,
        "sequences": ex.sequences,
        "sentence_b_start": None if sentence_b_start is None else int(sentence_b_start),
        "special_tokens": special_tokens,
        "kinds": {k: dict(fmt.describe_kind(layers, *ex.kind_sequences[k]), **ex.ids.get(k, {}))
                  for k, layers in ex.kinds.items()},
        "metrics": metrics or {},
    }
    return header, fmt.encode_record(header, ex.kinds)


def _index_summary(tag: str, example: str, payload: bytes) -> summary_pb2.Summary:
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, tensor_shape=tensor_shape_pb2.TensorShapeProto(), string_val=[payload]
    )
    value = summary_pb2.Summary.Value(
        tag=f"{tag}/{example}", metadata=create_summary_metadata(tag, example), tensor=tensor
    )
    return summary_pb2.Summary(value=[value])


def _new_asset_name() -> str:
    return f"{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}{fmt.ASSET_SUFFIX}"


# --------------------------------------------------------------------------- steps going backwards
_RECORD_HEAD = struct.Struct("<QI")  # TFRecord: length, masked CRC of the length; then data, masked CRC
_PLUGIN_NAME_BYTES = PLUGIN_NAME.encode()
_SCAN_CHUNK = 1 << 24  # event files are read in pieces: a large run's loss file is never held whole


class _StepGuard:
    """Where each attention tag's steps are in a run's event files, to warn before a write that TensorBoard's
    fast loader would take for a restart (docs/writers.md).

    ``--load_fast=true`` (the Rust data server) keeps one reservoir per run and tag, and a record it reads at
    step s drops that tag's records with step >= s read before it. It reads a run's event files in name order,
    each to its end, every reload. So writing step s to file F loses data (now or at the next cold start) when
    the tag already has a step > s anywhere (read before s, at least on a live reload), or a step < s in a
    file named after F (read after s at a cold start). The run's local event files are read incrementally
    (only what was appended since the last check), so another writer on the same run is seen too; a remote
    run's event files are read once, at the first check (what earlier or other writers left), then only this
    writer's own steps count (no listing per record).
    """

    def __init__(self, logdir: str, own_file: Callable[[], Optional[str]] = lambda: None):
        self.logdir = logdir
        self._own_file = own_file  # this writer's event file, if known
        self.ranges: dict[str, dict[str, list[int]]] = {}  # tag -> event file name -> [min step, max step]
        self.steps: dict[str, set[int]] = {}  # every step of each attention tag found in the files
        self._offsets: dict[str, int] = {}
        self._remote_scanned = False
        self._written: set[tuple[str, int]] = set()  # (tag, step) this writer wrote
        self._warned = self._warned_twice = False
        self._lock = threading.Lock()

    def scan(self) -> dict[str, dict[str, list[int]]]:
        """Read what was appended to the run's event files; returns ``ranges``."""
        if not storage.is_local(self.logdir):
            if not self._remote_scanned:
                self._remote_scanned = True
                try:
                    names = storage.list_dir(self.logdir)
                except OSError as e:
                    logger.debug("attention: not checking steps already in %s: %s", self.logdir, e)
                    names = []
                for name in sorted(n for n in names if "tfevents" in n):
                    try:
                        self._scan_file(storage.join_path(self.logdir, name))
                    except OSError:
                        continue
            return self.ranges
        pattern = os.path.join(glob.escape(storage.local_path(self.logdir)), "*tfevents*")
        for path in sorted(glob.glob(pattern)):
            try:
                self._scan_file(path)
            except OSError:
                continue  # removed or unreadable: TensorBoard cannot read it either
        return self.ranges

    def _note(self, tag: str, file: str, step: int) -> None:
        r = self.ranges.setdefault(tag, {}).setdefault(file, [step, step])
        r[0], r[1] = min(r[0], step), max(r[1], step)

    def _scan_file(self, path: str) -> None:
        offset = self._offsets.get(path, 0)
        name = os.path.basename(path)
        buf = b""
        with storage.open_read(path) as f:
            f.seek(offset)
            while True:
                chunk = f.read(_SCAN_CHUNK)
                if not chunk:
                    break
                buf += chunk
                used = self._scan_records(buf, name)
                offset += used
                buf = buf[used:]
        self._offsets[path] = offset  # a record still being appended is read again next time

    def _scan_records(self, data: bytes, name: str) -> int:
        """Note the attention records among the complete TFRecords in ``data``; returns the bytes consumed."""
        pos = 0
        while pos + _RECORD_HEAD.size <= len(data):
            n, _ = _RECORD_HEAD.unpack_from(data, pos)
            end = pos + _RECORD_HEAD.size + n + 4
            if end > len(data):
                break
            body = data[pos + _RECORD_HEAD.size: end - 4]
            pos = end
            if _PLUGIN_NAME_BYTES not in body:  # cheap: only events of our plugin are parsed
                continue
            try:
                event = event_pb2.Event.FromString(body)
            except Exception:  # noqa: BLE001 - a damaged record: TensorBoard skips it too
                continue
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == PLUGIN_NAME:
                    self._note(value.tag, name, event.step)
                    self.steps.setdefault(value.tag, set()).add(event.step)
        return pos

    def check(self, index_tag: str, step: int) -> None:
        """Note that ``step`` of ``index_tag`` (``<tag>/<example>``) is about to be written by this writer;
        warn (once per writer) if the fast loader would drop records of that tag because of it."""
        own = self._own_file() or ""
        with self._lock:
            twice = (index_tag, step) in self._written and not self._warned_twice
            self._written.add((index_tag, step))
            self._warned_twice |= twice
            files = self.scan().get(index_tag, {})
            higher = max((r[1] for r in files.values() if r[1] > step), default=None)
            lower_after = min((r[0] for f, r in files.items() if own and f > own and r[0] < step), default=None)
            self._note(index_tag, own, step)
            warn = (higher is not None or lower_after is not None) and not self._warned
            self._warned |= warn
        if twice:
            logger.warning("attention %r is logged twice at step %d by one writer: readers show the later record "
                           "only (give each example its own name with example=). Warned once per writer.",
                           index_tag, step)
        if not warn:
            return
        if higher is not None:
            why = (f"step {higher} of the same tag is already in run {self.logdir}: when it reads step {step} "
                   f"after it, TensorBoard's default loader (--load_fast=true) drops every step >= {step} of that "
                   "tag it has read before")
        else:
            why = (f"another writer's event file in run {self.logdir}, named after this writer's, holds step "
                   f"{lower_after} of the same tag: TensorBoard's default loader (--load_fast=true) reads files in "
                   f"name order, so at its next start that step will drop this step {step} and everything above it")
        logger.warning(
            "attention %r at step %d: %s (it takes steps going backwards for a restart; --load_fast=false keeps "
            "them). Expected when training resumed from a checkpoint; otherwise give each writer its own tag or "
            "run directory (docs/writers.md). Warned once per writer.", index_tag, step, why)


# ------------------------------------------------------------------------------------------ writer
class AttentionWriter:
    """Writes attention records into a TensorBoard run directory.

    Index records go to the run's event files (through TensorBoard's own ``EventFileWriter``), arrays to
    an append-only file in ``<logdir>/plugins/attention/``. Use as a context manager or call ``close()``;
    a closed writer refuses further writes (``ValueError``).
    """

    def __init__(self, logdir: str, *, background: bool = True, max_pending: int = 4, max_queue: int = 10,
                 flush_secs: int = 120, filename_suffix: str = "", any_rank: bool = False):
        """Args:
          logdir: the run directory.
          background: encode and write in a background thread, so ``add_attention`` returns once the input
            is validated (errors in input are still raised at the call; I/O errors in the thread at the next
            call, at ``flush()`` or ``close()``, as ``BackgroundWriteError``; every accepted record is still
            attempted). At most ``max_pending`` examples wait; more block the caller.
          any_rank: allow a writer on a distributed rank other than 0 (for a run directory of its own; by
            default such a writer raises ``RuntimeError`` before writing anything).
        """
        ranks.check_writer_rank("AttentionWriter", any_rank)
        self.logdir = str(logdir)
        self._events = storage.event_file_writer(self.logdir, max_queue, flush_secs, filename_suffix)
        self._asset: Optional[storage.AssetFile] = None
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()  # closing vs. submitting
        self._closed = False
        self._steps = _StepGuard(self.logdir, lambda: _event_file_name(self._events))
        self._jobs: Optional["queue.Queue[Optional[tuple[Callable[[], None], str]]]"] = None
        self._failed: list[tuple[str, BaseException]] = []  # (what, error) of background jobs, oldest first
        if background:
            self._jobs = queue.Queue(maxsize=max_pending)
            self._thread = threading.Thread(target=self._work, name="attention-writer", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        assert self._jobs is not None
        while True:
            item = self._jobs.get()
            try:
                if item is None:
                    return
                job, what = item
                job()  # every job runs, also after an earlier one failed: a failure costs only its own record
            except BaseException as e:  # kept and re-raised in the caller's thread
                with self._lock:
                    self._failed.append((what, e))
            finally:
                self._jobs.task_done()

    def _raise_pending_error(self, accepted: Optional[str] = None) -> None:
        with self._lock:
            failed, self._failed = self._failed, []
        if failed:
            what, e = failed[0]
            more = f" (and {len(failed) - 1} later records)" if len(failed) > 1 else ""
            msg = f"writing attention to {self.logdir} failed for {what}{more}: {type(e).__name__}: {e}"
            if accepted:
                msg += f" ({accepted} of this call was accepted and will be written)"
            raise BackgroundWriteError(msg) from e

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"this AttentionWriter ({self.logdir}) is closed: create a new one to write more")

    def _submit(self, job: Callable[[], None], what: str = "a record") -> None:
        if self._jobs is None:
            self._check_open()
            job()
            return
        with self._state_lock:  # no job may land behind close()'s end marker
            self._check_open()
            self._jobs.put((job, what))
        self._raise_pending_error(accepted=what)

    # the two operations log_attention needs from any writer
    def _append_asset(self, record: bytes) -> tuple[str, int]:
        with self._lock:
            if self._asset is None:
                self._asset = storage.AssetFile(self.logdir, _new_asset_name())
            return self._asset.write(record)

    def _add_summary(self, summary: summary_pb2.Summary, step: int, wall_time: float) -> None:
        self._events.add_event(event_pb2.Event(summary=summary, step=int(step), wall_time=wall_time))

    def add_attention(self, tag: str, attention: Any, tokens: Sequence[str], step: int, **kwargs: Any) -> None:
        """Same as ``log_attention(self, tag, attention, tokens, step, **kwargs)``."""
        log_attention(self, tag, attention, tokens, step, **kwargs)

    def add_scalar(self, tag: str, value: float, step: int, wall_time: Optional[float] = None) -> None:
        """A plain TensorBoard scalar in the same run (e.g. the loss of a plain training loop)."""
        from tensorboard.plugins.scalar import summary_v2 as scalar_summary

        self._check_open()
        _check_names(tag, "scalar", step)
        pb = scalar_summary.scalar_pb(tag, float(value))
        self._add_summary(pb, step, _check_wall_time(wall_time))

    def flush(self) -> None:
        """Wait until every pending example is written, then flush the event file."""
        self._check_open()
        if self._jobs is not None:
            self._jobs.join()
        self._events.flush()
        self._raise_pending_error()

    def close(self) -> None:
        """Write what is pending and close the files; raises ``BackgroundWriteError`` if a background write
        failed since the last call. Closing again does nothing."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            if self._jobs is not None:
                self._jobs.put(None)
        if self._jobs is not None:
            self._thread.join()
        self._events.close()
        with self._lock:
            if self._asset is not None:
                self._asset.close()
                self._asset = None
        self._raise_pending_error()

    def __enter__(self) -> "AttentionWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _SummaryWriterAdapter:
    """Lets ``log_attention`` write through a ``torch.utils.tensorboard.SummaryWriter`` (duck-typed)."""

    _assets: "weakref.WeakKeyDictionary[Any, storage.AssetFile]" = weakref.WeakKeyDictionary()
    _guards: "weakref.WeakKeyDictionary[Any, _StepGuard]" = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def __init__(self, writer: Any):
        self.writer = writer
        self.logdir = writer.get_logdir() if hasattr(writer, "get_logdir") else writer.log_dir
        with self._lock:
            guard = self._guards.get(writer)
            if guard is None:
                guard = self._guards[writer] = _StepGuard(
                    str(self.logdir), lambda: _event_file_name(getattr(writer._get_file_writer(), "event_writer", None)))
        self._steps = guard

    def _check_open(self) -> None:
        pass  # a closed SummaryWriter reopens its file on the next write

    def _append_asset(self, record: bytes) -> tuple[str, int]:
        with self._lock:
            asset = self._assets.get(self.writer)
            if asset is None:
                asset = self._assets[self.writer] = storage.AssetFile(self.logdir, _new_asset_name())
            return asset.write(record)

    def _submit(self, job: Callable[[], None], what: str = "a record") -> None:
        job()  # SummaryWriter users get synchronous writes: their writer has no background thread of ours

    def _add_summary(self, summary: summary_pb2.Summary, step: int, wall_time: float) -> None:
        self.writer._get_file_writer().add_summary(summary, int(step), wall_time)


def _event_file_name(events: Any) -> Optional[str]:
    """The file name of a TensorBoard ``EventFileWriter`` (a private attribute: None if it is not there)."""
    name = getattr(events, "_file_name", None)
    return os.path.basename(name) if isinstance(name, str) else None


def _sink(writer: Any):
    if isinstance(writer, AttentionWriter):
        return writer
    if hasattr(writer, "_get_file_writer") and (hasattr(writer, "get_logdir") or hasattr(writer, "log_dir")):
        ranks.check_writer_rank("log_attention through a SummaryWriter")
        return _SummaryWriterAdapter(writer)
    raise ValueError(
        f"writer must be an AttentionWriter or a torch.utils.tensorboard.SummaryWriter, got {type(writer).__name__}"
    )


def log_attention(
    writer: Union[AttentionWriter, Any],
    tag: str,
    attention: Any,
    tokens: Sequence[str],
    step: int,
    *,
    example: Optional[str] = None,
    batch_index: int = 0,
    queries: Any = None,
    keys: Any = None,
    sentence_b_start: Optional[int] = None,
    key_tokens: Optional[Sequence[str]] = None,
    decoder_tokens: Optional[Sequence[str]] = None,
    kind: Optional[str] = None,
    model_name: Optional[str] = None,
    special_tokens: Optional[Mapping[str, Sequence[int]]] = None,
    wall_time: Optional[float] = None,
    metrics: bool = True,
    metric_scalars: bool = True,
    layers: Optional[Sequence[int]] = None,
    heads: Optional[Sequence[int]] = None,
    layer_info: Any = None,
) -> None:
    """Log one example's attention (and optionally queries/keys) at ``step``.

    Args:
      writer: an ``AttentionWriter`` or a ``torch.utils.tensorboard.SummaryWriter``.
      tag: groups examples (e.g. ``"probes"``); the TensorBoard tag is ``<tag>/<example>``.
      attention: what ``capture_attention`` recorded (the capture, one forward, or one example), or
        per-layer tensors as transformers returns them with ``output_attentions=True``
        (``(batch, heads, q, k)`` or ``(heads, q, k)`` each; torch or numpy), or a dict
        ``{"encoder"|"decoder"|"cross": per-layer tensors}`` for encoder-decoder models.
      tokens: token strings of the (encoder) input, one per position.
      step: the training step (checkpoint) this attention belongs to.
      example: the example's name (default: ``str(batch_index)``; for one example taken from a batch, such
        as ``cap.last.example(i)`` or ``generation_attention(cap, i)``, its index ``i``).
      batch_index: which example of a batched input to log.
      queries, keys: per-layer ``(batch, heads, len, head_dim)`` tensors, for raw attention input only.
      sentence_b_start: index of the first token of sentence B, for sentence pairs.
      key_tokens: key tokens of cross attention given alone (``tokens`` are then the decoder's).
      decoder_tokens: the decoder's tokens for encoder-decoder models.
      kind: ``"encoder"`` (default), ``"decoder"`` or ``"cross"`` for raw per-layer input.
      model_name: shown in the tab.
      special_tokens: ``{"input": [indices]}`` to override special-token detection.
      metrics: compute per-head metrics (docs/metrics.md) into the record header.
      metric_scalars: also write each layer's strongest head per metric as ordinary TensorBoard scalars
        (tag ``attention_metrics/<tag>/<example>/<metric>/<kind>_layer<l>``, max over heads; for entropy
        the min), so the Scalars tab plots them.
      layers, heads: log only these layers / heads (model indices, kept in the header as ``layer_ids`` /
        ``head_ids``), for big models.
      layer_info: with ``attention=None`` and per-layer ``queries`` ``(heads, n, d)`` / ``keys``
        ``(kv_heads, m, d)`` (grouped-query keys once per key/value head): the score function, a dict for every
        layer or one per layer: ``scaling`` (default ``head_dim ** -0.5``), ``causal`` (default: true for
        ``kind="decoder"``), ``sliding_window``, ``softcap``. The layers are then stored long (format v3): q/k,
        each row's log-sum-exp, a pooled pyramid, per-row top-k and the metrics, computed here chunked
        (torch is needed); any window is rebuilt exactly when read.

    Attention longer than ``MAX_TOKENS`` cannot be given as probabilities; ``capture_attention`` records
    long layers itself above its dense limit, and those are logged as they are.

    Raises ``ValueError`` for bad input, and for a closed writer, before anything is written. With an
    ``AttentionWriter`` (in its default background mode) encoding and writing happen in its writer thread:
    ``flush()`` waits for them; an I/O error there is raised as ``BackgroundWriteError`` at the next call (whose
    own record is still written), ``flush()`` or ``close()``.

    Steps of one ``tag``/``example`` should not go backwards within a run: TensorBoard's default loader
    (``--load_fast=true``) treats a lower step as a restart and drops the higher ones it read before (see
    docs/writers.md). The writer warns once when it is about to.
    """
    # Everything that can be wrong with the input is checked here, in the caller's thread, before anything is
    # written: the background job can then only fail on I/O, and never leaves a half-written record behind.
    sink = _sink(writer)
    sink._check_open()
    if not _is_int(batch_index):
        raise ValueError(f"batch_index must be an integer, got {batch_index!r}")
    own_index = getattr(attention, "batch_index", None) if hasattr(attention, "kinds") else None
    if own_index is not None:  # one example already taken from its batch (cap.last.example(i), generation_attention)
        if batch_index not in (0, own_index):
            raise ValueError(f"batch_index={batch_index} but the attention given is example {own_index} of its "
                             "batch: leave batch_index out")
        batch_index = own_index
    example = str(batch_index) if example is None else example
    _check_names(tag, example, step)
    step = int(step)
    wall_time = _check_wall_time(wall_time)
    model_name = _check_model_name(model_name)
    ex = _normalise(attention, tokens, batch_index=int(batch_index), queries=queries, keys=keys,
                    key_tokens=key_tokens, decoder_tokens=decoder_tokens, kind=kind, layer_info=layer_info)
    _validate(ex, sentence_b_start)
    ex.ids = _select(ex, layers, heads)
    special = _special_tokens(special_tokens, ex.sequences)

    def write() -> None:
        header, record = build_record(
            tag, example, ex, step=step, wall_time=wall_time, model_name=model_name,
            sentence_b_start=sentence_b_start, special_tokens=special,
            metrics=_metrics(ex) if metrics else None,
        )
        name, offset = sink._append_asset(record)  # the bytes first, then the index record pointing to them
        sink._add_summary(_index_summary(tag, example, fmt.index_payload(header, name, offset, len(record))),
                          step, wall_time)
        if metrics and metric_scalars and header["metrics"]:
            sink._add_summary(_metric_scalars(tag, example, header["metrics"]), step, wall_time)

    sink._steps.check(f"{tag}/{example}", step)
    sink._submit(write, f"{tag}/{example} at step {step}")


def _metric_scalars(tag: str, example: str, metrics: dict) -> summary_pb2.Summary:
    """One scalar per kind, layer and metric: the strongest head (lowest entropy, highest otherwise)."""
    from tensorboard.plugins.scalar import summary_v2 as scalar_summary

    values = []
    for kind, by_name in metrics.items():
        for name, layers in by_name.items():
            pick = min if name == "entropy" else max
            for l, heads in enumerate(layers):
                finite = [v for v in heads if v is not None]
                if finite:
                    values.extend(scalar_summary.scalar_pb(
                        f"attention_metrics/{tag}/{example}/{name}/{kind}_layer{l}", pick(finite)).value)
    return summary_pb2.Summary(value=values)


def _metrics(ex: _Example) -> dict:
    """Per-head metrics per kind (``{kind: {name: [[per head] per layer]}}``), NaN as null."""
    out: dict = {}
    for kind, layers in ex.kinds.items():
        qseq, _ = ex.kind_sequences[kind]
        ids = ex.sequences[qseq] if kind != "cross" else None
        causal = None
        if layers and layers[0].info and layers[0].info.get("causal") is not None:
            causal = bool(layers[0].info["causal"])
        if fmt.is_long(layers[0]):  # computed from the rows while summarizing
            values = {name: np.stack([np.asarray(l.metrics[name], np.float64) for l in layers])
                      for name in m.METRIC_NAMES}
        else:
            values = m.layer_metrics([l.attention for l in layers], ids, causal=causal)
        out[kind] = {name: [[None if not np.isfinite(v) else round(float(v), 6) for v in row] for row in arr]
                     for name, arr in values.items()}
    return out
